//! CEL rules: the whole language, parsed and interpreted by the `cel` crate
//! (cel-rust) with the standard library, plus our variables (`vars.rs`) and
//! functions `is_network`, `in_cidr`, `in_range` (`runtime.rs`).
//!
//! A rule goes through four steps, each error naming the rule's column:
//! 1. `scan.rs` bounds the nesting before the crate's recursive parser sees
//!    the text ([`MAX_NESTING`](super::MAX_NESTING) levels);
//! 2. the crate parses it (macros expanded);
//! 3. `check.rs` infers types and rejects what fails or never matches for
//!    every event (`destination.port == "443"`, unknown functions, a bad
//!    CIDR, class or regular expression);
//! 4. `lower.rs` compiles what the fast tree can express into it (so most
//!    rules evaluate without allocating and the kernel pre-filter can reason
//!    about them) and leaves the rest to the interpreter as [`Opaque`] nodes.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
mod check;
mod lower;
mod runtime;
mod scan;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_conformance;
#[cfg(test)]
mod textproto;
mod types;
mod vars;

use cel::{common::ast::SourceInfo, IdedExpr};

use self::{
    check::{Checker, Positions},
    types::Ty,
    vars::Var,
};
pub(crate) use self::{
    runtime::{EvalError, Opaque},
    scan::looks_like_cel,
};
use super::{ast::Expr, ParseError, MAX_NESTING};

/// Compiles the expression of a CEL rule; `base` is the rule column of its first character.
pub(crate) fn compile(text: &str, base: usize) -> Result<Expr, ParseError> {
    let (expr, info) = parse(text, base)?;
    let pos = Positions { info: &info, text, base };
    let lookup = |name: &str| Var::lookup(name).map(Var::ty);
    let ty = Checker::new(&pos, &lookup).check(&expr)?;
    if !matches!(ty, Ty::Bool | Ty::Dyn) {
        let found = match check::qualified_name(&expr.expr) {
            Some(name) => format!("'{name}' ({})", check::with_article(&ty)),
            None => format!("a value of type {ty}"),
        };
        let column = base + text.chars().take_while(|c| c.is_whitespace()).count();
        return Err(ParseError { column, message: format!("expected a condition, found {found}") });
    }
    lower::Lower { pos: &pos }.condition(&expr)
}

/// Parses with the crate after the nesting scan; a syntax error names its column.
pub(crate) fn parse(text: &str, base: usize) -> Result<(IdedExpr, SourceInfo), ParseError> {
    scan::check_nesting(text, base)?;
    let parser = runtime::ENV.parser().max_recursion_depth(u16::try_from(2 * MAX_NESTING).unwrap_or(u16::MAX));
    parser.parse_with_source_info(text).map_err(|errors| {
        let Some(first) = errors.errors.first() else { return ParseError { column: base, message: "syntax error".into() } };
        let (line, col) = (usize::try_from(first.pos.0).unwrap_or(1).max(1), usize::try_from(first.pos.1).unwrap_or(1).max(1));
        let before: usize = text.split_inclusive('\n').take(line - 1).map(|l| l.chars().count()).sum();
        ParseError { column: base + before + col - 1, message: syntax_message(&first.msg) }
    })
}

/// The parser's message, in the words of the rest of the rule errors.
fn syntax_message(msg: &str) -> String {
    let msg = msg.strip_prefix("Syntax error: ").unwrap_or(msg);
    let msg = msg.replace("'<EOF>'", "end of rule").replace("<EOF>", "end of rule");
    if let Some((found, expecting)) = msg.strip_prefix("mismatched input ").and_then(|m| m.split_once(" expecting ")) {
        let expected = if expecting.contains("IDENTIFIER") && expecting.contains("NUM_INT") {
            "a value, a variable, '(' or '!'".to_string()
        } else {
            expecting.to_string()
        };
        return format!("syntax error: expected {expected}, found {found}");
    }
    if let Some(ch) = msg.strip_prefix("token recognition error at: ") {
        return format!("syntax error: unexpected character {ch}");
    }
    format!("syntax error: {msg}")
}
