//! Rules: which events are logged (PRODUCT.md "Rules").
//!
//! Each rule is `log|drop <expression>` in the keyword language or in CEL,
//! detected per rule; both compile into the typed tree of `ast.rs`. The first
//! matching rule decides; an event no rule matches is logged; no rules = log
//! everything. `prefilter.rs` derives from the rules what the kernel may drop.
//!
//! Limits (docs/rules.md "Limits"): a rule is at most [`MAX_RULE_BYTES`] long
//! and nests at most [`MAX_NESTING`] levels deep. Both parsers are recursive
//! descent for parentheses and CEL calls (negations and `and`/`or` chains are
//! loops), so without the bound a rule like `log ((((…` would overflow the
//! stack; with it, a rule past the limit is an ordinary error naming the rule
//! and the column. The compiled tree is no deeper than about twice the
//! nesting (`and`/`or` chains are flat lists), so evaluating it, deriving the
//! kernel table from it, cloning and dropping it recurse a bounded depth too.
pub(crate) mod ast;
mod cel;
mod keyword;
pub(crate) mod lexer;
pub(crate) mod network;
pub(crate) mod prefilter;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_limits;

use std::fmt;

pub(crate) use self::prefilter::Prefilter;
use self::{
    ast::{Action, Expr},
    lexer::{tokenize, Tok, Token},
};
use crate::event::Event;

/// The rules of the built-in default (contrib/conntrackd.toml); a test checks they agree.
#[cfg(test)]
pub(crate) const DEFAULT_RULES: [&str; 2] = ["log protocol tcp and destination network public", "drop any"];

/// How many levels a rule may nest. Each `(`, `not`, `!` and CEL function
/// call opens a level until its operand ends.
pub(crate) const MAX_NESTING: usize = 256;

/// The longest rule accepted, in bytes of UTF-8.
pub(crate) const MAX_RULE_BYTES: usize = 65_536;

/// The open nesting levels while a rule is parsed (both parsers share it).
#[derive(Debug, Default)]
pub(crate) struct Nesting(usize);

impl Nesting {
    /// Opens a level at the token at `column`; an error past [`MAX_NESTING`].
    pub fn enter(&mut self, column: usize) -> Result<(), ParseError> {
        if self.0 == MAX_NESTING {
            return Err(ParseError { column, message: format!("nesting deeper than {MAX_NESTING} levels") });
        }
        self.0 += 1;
        Ok(())
    }

    /// Closes the level opened last.
    pub fn leave(&mut self) {
        self.0 -= 1;
    }
}

/// A parse error inside one rule: the column and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub column: usize,
    pub message: String,
}

/// An error in one rule, naming the rule by index (1-based) and text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {index} {:?}, column {column}: {message}", quoted(text))]
pub(crate) struct RuleError {
    pub index: usize,
    pub text: String,
    pub column: usize,
    pub message: String,
}

/// Characters of a rule an error quotes; a longer rule is cut with "…".
const QUOTED_CHARS: usize = 60;

/// The rule as an error quotes it: whole, or its first [`QUOTED_CHARS`] characters and "…".
fn quoted(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]).into(),
        None => text.into(),
    }
}

/// Every error of a rule list, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) struct RulesError(pub Vec<RuleError>);

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// Which language a rule is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Language {
    Keyword,
    Cel,
}

/// One compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub action: Action,
    pub expr: Expr,
    pub language: Language,
    pub text: String,
}

/// A compiled rule list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Rules {
    pub rules: Vec<Rule>,
}

impl Rules {
    /// Compiles every rule; reports every broken rule, not just the first.
    pub fn compile<S: AsRef<str>>(texts: &[S]) -> Result<Self, RulesError> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let text = text.as_ref();
            match compile_rule(text) {
                Ok(rule) => rules.push(rule),
                Err(e) => errors.push(RuleError { index: i + 1, text: text.to_string(), column: e.column, message: e.message }),
            }
        }
        if errors.is_empty() {
            Ok(Self { rules })
        } else {
            Err(RulesError(errors))
        }
    }

    /// The built-in default rules.
    #[cfg(test)]
    pub fn defaults() -> Self {
        Self::compile(&DEFAULT_RULES).unwrap_or_default()
    }

    /// First match wins; no match logs. Never allocates.
    pub fn logs(&self, ev: &Event) -> bool {
        self.rules.iter().find(|r| r.expr.matches(ev)).is_none_or(|r| r.action == Action::Log)
    }
}

/// Parses `log|drop <expression>`.
fn compile_rule(text: &str) -> Result<Rule, ParseError> {
    if text.len() > MAX_RULE_BYTES {
        let column = text[..text.floor_char_boundary(MAX_RULE_BYTES)].chars().count() + 1;
        return Err(ParseError { column, message: format!("the rule is {} bytes long, more than the limit of {MAX_RULE_BYTES}", text.len()) });
    }
    let trimmed = text.trim_start();
    let lead = text.len() - trimmed.len();
    let word_end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
    let action = match trimmed[..word_end].to_ascii_lowercase().as_str() {
        "log" => Action::Log,
        "drop" => Action::Drop,
        _ => {
            let found = if trimmed.is_empty() { "an empty rule".to_string() } else { format!("'{}'", &trimmed[..word_end]) };
            return Err(ParseError { column: lead + 1, message: format!("expected 'log' or 'drop', found {found}") });
        }
    };
    let rest_start = lead + word_end;
    let base = text[..rest_start].chars().count() + 1;
    let end_column = text.chars().count() + 1;
    let tokens = tokenize(&text[rest_start..], base).map_err(|e| ParseError { column: e.column, message: e.message })?;
    let language = detect(&tokens);
    let expr = match language {
        Language::Cel => cel::parse(&tokens, end_column)?,
        Language::Keyword => keyword::parse(&tokens, end_column)?,
    };
    Ok(Rule { action, expr, language, text: text.to_string() })
}

/// CEL uses operators, quoted strings, dotted variables or function calls;
/// the keyword language uses none of them.
fn detect(tokens: &[Token<'_>]) -> Language {
    let cel = tokens.iter().enumerate().any(|(i, t)| match &t.kind {
        Tok::Op(_) | Tok::Str(_) => true,
        Tok::Word(w) => {
            let dotted = w.starts_with(|c: char| c.is_ascii_alphabetic()) && w.contains('.') && ast::Cidr::parse(w).is_none();
            let call = matches!(*w, "is_network" | "in_cidr" | "in_range") && tokens.get(i + 1).is_some_and(|n| n.kind == Tok::LParen);
            dotted || call || matches!(*w, "true" | "false")
        }
        _ => false,
    });
    if cel {
        Language::Cel
    } else {
        Language::Keyword
    }
}
