//! Rules: which events are logged (README "Rules", docs/rules.md).
//!
//! Each rule is `log|drop <expression>` in the keyword language or in CEL,
//! detected per rule; both compile into the typed tree of `ast.rs` (CEL
//! subtrees it cannot express stay CEL, for the interpreter). The first
//! matching rule decides; an event no rule matches is logged; no rules = log
//! everything. `prefilter.rs` derives from the rules what the kernel may drop.
//! A CEL rule that fails on an event does not match it (`errors.rs` counts).
//!
//! Limits (docs/rules.md "Limits"): a rule is at most [`MAX_RULE_BYTES`] long
//! and nests at most [`MAX_NESTING`] levels deep. The parsers are recursive
//! descent, so without the bound a rule like `log ((((…` would overflow the
//! stack; with it, a rule past the limit is an ordinary error naming the rule
//! and the column. The compiled tree is no deeper than about twice the
//! nesting (`and`/`or` chains are flat lists), so evaluating it, deriving the
//! kernel table from it and dropping it recurse a bounded depth too. Rules
//! are compiled on a thread of their own with a large stack ([`COMPILE_STACK`]):
//! the `cel` crate's parser needs several KiB per level. A CEL part left to
//! the interpreter is at most `cel::MAX_INTERPRETED_DEPTH` (100) levels deep,
//! so evaluating it fits the daemon's stack (its main thread's 8 MiB; an
//! optimized build needs a few KiB per level).
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
pub(crate) mod ast;
mod cel;
mod errors;
mod fast;
mod keyword;
pub(crate) mod lexer;
pub(crate) mod prefilter;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_limits;
pub(crate) mod text;

use std::{fmt, sync::Arc};

pub(crate) use self::errors::EvalErrors;
use self::fast::Program;
use self::{
    ast::{Action, Expr},
    lexer::tokenize,
};
pub(crate) use crate::event::prefilter::Prefilter;
use crate::event::Event;

/// The rules of the built-in default (contrib/conntrackd.toml); a test checks they agree.
#[cfg(test)]
pub(crate) const DEFAULT_RULES: [&str; 2] = ["log protocol tcp and destination network public", "drop any"];

/// How many levels a rule may nest. Each `(`, `not`, `!` and CEL function
/// call opens a level until its operand ends.
pub(crate) const MAX_NESTING: usize = 256;

/// The longest rule accepted, in bytes of UTF-8.
pub(crate) const MAX_RULE_BYTES: usize = 65_536;

/// The stack of the thread rules are compiled on (reserved, touched only as deep as parsing goes).
pub(crate) const COMPILE_STACK: usize = 64 << 20;

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
        self.0 = self.0.saturating_sub(1);
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
        Some((end, _)) => format!("{}…", text.get(..end).unwrap_or(text)).into(),
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
    /// The expression has CEL subtrees, which can fail on an event.
    pub fallible: bool,
}

/// A compiled rule list and the counters of its evaluation errors.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    pub rules: Vec<Rule>,
    errors: Arc<EvalErrors>,
    /// The rules as the decide loop runs them (`fast/`).
    program: Arc<Program>,
}

impl PartialEq for Rules {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
    }
}

impl Eq for Rules {}

impl Rules {
    /// Compiles every rule; reports every broken rule, not just the first.
    pub fn compile<S: AsRef<str> + Sync>(texts: &[S]) -> Result<Self, RulesError> {
        let work = || compile_all(texts);
        let spawned = std::thread::scope(|scope| std::thread::Builder::new().stack_size(COMPILE_STACK).spawn_scoped(scope, work).map(|h| h.join()));
        match spawned {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(err) => {
                tracing::warn!(error = %err, "cannot start the thread rules are compiled on; compiling on this one");
                compile_all(texts)
            }
        }
    }

    /// The built-in default rules.
    #[cfg(test)]
    pub fn defaults() -> Self {
        Self::compile(&DEFAULT_RULES).unwrap_or_default()
    }

    /// First match wins; no match logs. Never allocates, but in CEL subtrees.
    #[inline]
    pub fn logs(&self, ev: &Event) -> bool {
        self.decide(ev).0
    }

    /// Whether the event is logged, and the index (0-based) of the rule that decided, if one matched.
    #[inline]
    pub fn decide(&self, ev: &Event) -> (bool, Option<usize>) {
        let matched = self.program.decide(ev, |i, err| self.errors.record(i, self.rules.get(i).map_or("", |r| r.text.as_str()), err));
        (matched.is_none_or(|i| self.program.logs(i)), matched)
    }

    /// [`Rules::decide`] by evaluating every rule's tree in order, as the
    /// language defines it (no error is counted): what the fast path must agree with.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn decide_by_tree(&self, ev: &Event) -> (bool, Option<usize>) {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.expr.eval(ev).unwrap_or(false) {
                return (rule.action == Action::Log, Some(i));
            }
        }
        (true, None)
    }

    /// Every rule's fast form evaluated on the event (for the recursion tests).
    #[cfg(test)]
    pub fn eval_each(&self, ev: &Event) -> Vec<Result<bool, cel::EvalError>> {
        self.program.eval_each(ev)
    }

    /// The evaluation error counters (for `/metrics`).
    pub fn errors(&self) -> Arc<EvalErrors> {
        Arc::clone(&self.errors)
    }
}

fn compile_all<S: AsRef<str>>(texts: &[S]) -> Result<Rules, RulesError> {
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
        Ok(Rules { errors: Arc::new(EvalErrors::new(rules.len())), program: Arc::new(Program::new(&rules)), rules })
    } else {
        Err(RulesError(errors))
    }
}

/// Parses `log|drop <expression>`.
fn compile_rule(text: &str) -> Result<Rule, ParseError> {
    if text.len() > MAX_RULE_BYTES {
        let column = text.get(..text.floor_char_boundary(MAX_RULE_BYTES)).map_or(0, |head| head.chars().count()) + 1;
        return Err(ParseError { column, message: format!("the rule is {} bytes long, more than the limit of {MAX_RULE_BYTES}", text.len()) });
    }
    let trimmed = text.trim_start();
    let lead = text.len() - trimmed.len();
    // The first word: up to the first whitespace (`split` yields at least one piece).
    let word = trimmed.split(char::is_whitespace).next().unwrap_or(trimmed);
    let action = match word.to_ascii_lowercase().as_str() {
        "log" => Action::Log,
        "drop" => Action::Drop,
        _ => {
            let found = if trimmed.is_empty() { "an empty rule".to_string() } else { format!("'{word}'") };
            return Err(ParseError { column: lead + 1, message: format!("expected 'log' or 'drop', found {found}") });
        }
    };
    // `lead + word.len()` ends the word, a character boundary.
    let (head, rest) = text.split_at_checked(lead + word.len()).unwrap_or((text, ""));
    let base = head.chars().count() + 1;
    let end_column = text.chars().count() + 1;
    let (language, expr) = if cel::looks_like_cel(rest) {
        (Language::Cel, cel::compile(rest, base)?)
    } else {
        let tokens = tokenize(rest, base).map_err(|e| ParseError { column: e.column, message: e.message })?;
        (Language::Keyword, keyword::parse(&tokens, end_column)?)
    };
    let fallible = expr.fallible();
    Ok(Rule { action, expr, language, text: text.to_string(), fallible })
}
