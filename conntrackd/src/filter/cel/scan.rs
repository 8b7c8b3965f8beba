//! A cheap scan of a CEL rule before the `cel` crate parses it: the crate's
//! parser and interpreter recurse once per level of the expression (about
//! 4–8 KiB of stack per level, optimized), so a rule like `((((…` or
//! `1 + 1 + 1 …` would overflow the stack. The scan bounds the depth at
//! [`MAX_NESTING`] levels and reports the column of the token past it.
//!
//! Levels are counted conservatively, per bracket: each `(`, `[`, `{` opens
//! one (two for a macro call such as `.exists(`, whose expansion nests
//! deeper), each `!` and unary `-` one until the next `&&`, `||`, `?`, `:` or
//! `,`, each `?` one until the bracket closes, and a chain of binary operators
//! or `.` selections `a + b + c` one per operator past the first (the parse
//! tree of a chain is as deep as it is long). `&&` and `||` chains are
//! balanced by the parser and cost nothing.
//!
//! The scan also tells whether a rule uses CEL-only syntax ([`looks_like_cel`]).
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use crate::filter::{ParseError, MAX_NESTING};

/// The open levels of one bracket.
#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    base: usize,
    unary: usize,
    chain: usize,
    ternary: usize,
}

impl Frame {
    fn depth(&self) -> usize {
        self.base + self.unary + self.chain.saturating_sub(1) + self.ternary
    }

    fn end_segment(&mut self) {
        self.unary = 0;
        self.chain = 0;
    }
}

const MACROS: [&str; 5] = ["all", "exists", "exists_one", "map", "filter"];

/// Checks the nesting of `text`, whose first character is at column `base`.
pub(crate) fn check_nesting(text: &str, base: usize) -> Result<(), ParseError> {
    let chars: Vec<char> = text.chars().collect();
    // The innermost bracket's frame, and those of the brackets around it.
    let (mut frame, mut outer) = (Frame::default(), Vec::<Frame>::new());
    let (mut i, mut operand_ended, mut after_dot_ident) = (0, false, None::<usize>);
    let too_deep = |column: usize| ParseError { column: base + column, message: format!("nesting deeper than {MAX_NESTING} levels") };
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        let start = i;
        let mut ends_operand = false;
        match c {
            _ if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '/' if next == Some('/') => {
                while chars.get(i).is_some_and(|&c| c != '\n') {
                    i += 1;
                }
                continue;
            }
            '"' | '\'' => {
                i = skip_string(&chars, i, false);
                ends_operand = true;
            }
            'r' | 'R' | 'b' | 'B' if is_string_prefix(&chars, i) => {
                let raw = from(&chars, i).iter().take_while(|c| !matches!(c, '"' | '\'')).any(|c| matches!(c, 'r' | 'R'));
                while chars.get(i).is_some_and(|c| !matches!(c, '"' | '\'')) {
                    i += 1;
                }
                i = skip_string(&chars, i, raw);
                ends_operand = true;
            }
            _ if c.is_ascii_alphabetic() || c == '_' => {
                while chars.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                    i += 1;
                }
                let word: String = chars.get(start..i).unwrap_or_default().iter().collect();
                if word == "in" && operand_ended {
                    frame.chain += 1;
                } else {
                    ends_operand = true;
                }
            }
            _ if c.is_ascii_digit() => {
                while let Some(&d) = chars.get(i) {
                    let exponent_sign = matches!(d, '+' | '-') && matches!(chars.get(i.wrapping_sub(1)), Some('e' | 'E')) && !is_hex(&chars, start);
                    if !(d.is_ascii_alphanumeric() || d == '.' || exponent_sign) {
                        break;
                    }
                    i += 1;
                }
                ends_operand = true;
            }
            '(' | '[' | '{' => {
                let extra = usize::from(macro_call_at(&chars, i, after_dot_ident));
                let base = frame.depth() + 1 + extra;
                if base > MAX_NESTING {
                    return Err(too_deep(i));
                }
                outer.push(std::mem::replace(&mut frame, Frame { base, ..Frame::default() }));
                i += 1;
                operand_ended = false;
                continue;
            }
            ')' | ']' | '}' => {
                // A closing bracket with none open is the parser's error to report.
                if let Some(enclosing) = outer.pop() {
                    frame = enclosing;
                }
                i += 1;
                operand_ended = true;
                continue;
            }
            _ => {
                let two: String = from(&chars, i).iter().take(2).collect();
                i += match two.as_str() {
                    "&&" | "||" => {
                        frame.end_segment();
                        2
                    }
                    "==" | "!=" | "<=" | ">=" => {
                        frame.chain += 1;
                        2
                    }
                    _ => {
                        match c {
                            '!' => frame.unary += 1,
                            '-' if !operand_ended => frame.unary += 1,
                            '-' | '+' | '*' | '/' | '%' | '<' | '>' => frame.chain += 1,
                            '.' if operand_ended => {
                                frame.chain += 1;
                                after_dot_ident = Some(i + 1 + from(&chars, i + 1).iter().take_while(|c| c.is_whitespace()).count());
                            }
                            '?' => {
                                frame.end_segment();
                                frame.ternary += 1;
                            }
                            ',' | ':' => frame.end_segment(),
                            _ => {}
                        }
                        1
                    }
                };
                if frame.depth() > MAX_NESTING {
                    return Err(too_deep(start));
                }
                operand_ended = false;
                continue;
            }
        }
        operand_ended = ends_operand;
    }
    Ok(())
}

/// True if the `(` at `open` calls a macro: `.exists (`.
fn macro_call_at(chars: &[char], open: usize, after_dot_ident: Option<usize>) -> bool {
    let Some(start) = after_dot_ident else { return false };
    if chars.get(open) != Some(&'(') || start >= open {
        return false;
    }
    let word: String = chars.get(start..open).unwrap_or_default().iter().collect();
    MACROS.contains(&word.trim_end())
}

/// The characters from `i` on (none past the end).
fn from(chars: &[char], i: usize) -> &[char] {
    chars.get(i..).unwrap_or_default()
}

fn is_hex(chars: &[char], start: usize) -> bool {
    chars.get(start) == Some(&'0') && matches!(chars.get(start + 1), Some('x' | 'X'))
}

/// `r"`, `b'`, `rb"`, `BR'`…: a string prefix right before a quote.
fn is_string_prefix(chars: &[char], i: usize) -> bool {
    let prefix: String = from(chars, i).iter().take_while(|c| matches!(c, 'r' | 'R' | 'b' | 'B')).collect();
    let before_ok = i.checked_sub(1).and_then(|j| chars.get(j)).is_none_or(|&c| !c.is_ascii_alphanumeric() && c != '_');
    before_ok && prefix.len() <= 2 && matches!(chars.get(i + prefix.len()), Some('"' | '\''))
}

/// The index after the string literal opening at `i` (or the end of the text).
fn skip_string(chars: &[char], i: usize, raw: bool) -> usize {
    let Some(&quote) = chars.get(i) else { return chars.len() };
    let triple = chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote);
    let mut j = i + if triple { 3 } else { 1 };
    while let Some(&c) = chars.get(j) {
        if c == '\\' && !raw {
            j += 2;
            continue;
        }
        if c == quote && (!triple || (chars.get(j + 1) == Some(&quote) && chars.get(j + 2) == Some(&quote))) {
            return j + if triple { 3 } else { 1 };
        }
        if c == '\n' && !triple {
            return j;
        }
        j += 1;
    }
    j
}

/// Whether an expression uses syntax only CEL has: quotes, comparison,
/// arithmetic or logic operators, brackets, `?:`, comments, `true`/`false`,
/// dotted variables (`source.port`, not an address) or calls (`size(x)`, not
/// the keyword language's `not (…)`).
pub(crate) fn looks_like_cel(text: &str) -> bool {
    if text.contains(['"', '\'', '=', '<', '>', '&', '|', '[', ']', '{', '}', '+', '*', '%', '?']) || text.contains("//") {
        return true;
    }
    let word_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '-' | '_');
    let mut rest = text;
    // `find` answers character boundaries, so every split succeeds.
    while let Some((_, from_word)) = rest.find(word_char).and_then(|start| rest.split_at_checked(start)) {
        let (word, after) = from_word.split_at_checked(from_word.find(|c: char| !word_char(c)).unwrap_or(from_word.len())).unwrap_or((from_word, ""));
        rest = after;
        // `source.port`, not an address or a dotted process name (`process comm python3.11`).
        let dotted = word.split_once('.').is_some_and(|(first, _)| super::vars::NAMESPACES.contains(&first));
        let lower = word.to_ascii_lowercase();
        let call = rest.starts_with('(') && !matches!(lower.as_str(), "not" | "and" | "or");
        if dotted || call || word == "true" || word == "false" {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(text: &str) -> Option<usize> {
        check_nesting(text, 1).err().map(|e| e.column)
    }

    #[test]
    fn brackets_unary_chains_and_ternaries_are_levels() {
        let n = MAX_NESTING;
        assert_eq!(depth_error(&format!("{}1{}", "(".repeat(n), ")".repeat(n))), None);
        assert_eq!(depth_error(&format!("{}1{}", "(".repeat(n + 1), ")".repeat(n + 1))), Some(n + 1));
        assert_eq!(depth_error(&format!("{}true", "!".repeat(n + 5))), Some(n + 1));
        assert_eq!(depth_error(&format!("{}1", "-".repeat(n + 5))), Some(n + 1));
        // `1 - 1`: the second `-` is binary.
        // The 258th binary `-` is the 257th level.
        assert_eq!(depth_error(&"1 - 1 ".repeat(1000)), Some(1 + 6 * (n + 1) + 2), "a subtraction chain");
        assert_eq!(depth_error(&format!("1{}", " + 1".repeat(n))), None, "a chain of n operators is n - 1 levels");
        assert_eq!(depth_error(&format!("1{}", " + 1".repeat(n + 2))), Some(3 + 4 * (n + 1)));
        assert_eq!(depth_error(&format!("x{}", ".a".repeat(n + 2))), Some(2 + 2 * (n + 1)));
        assert_eq!(depth_error(&"true ? 1 : ".repeat(n + 1)), Some(6 + 11 * n));
        assert_eq!(depth_error(&["x == 1"; 5000].join(" && ")), None, "&& chains are balanced");
        assert_eq!(depth_error(&["a + b"; 5000].join(" || ")), None);
        // A macro call is two levels.
        let macros = format!("{}true{}", "[1].exists(x, ".repeat(n / 2 + 1), ")".repeat(n / 2 + 1));
        assert!(depth_error(&macros).is_some());
        let macros = format!("{}true{}", "[1].exists(x, ".repeat(n / 2), ")".repeat(n / 2));
        assert_eq!(depth_error(&macros), None);
    }

    #[test]
    fn strings_and_comments_are_skipped() {
        let deep = "(".repeat(MAX_NESTING + 1);
        for text in
            [format!("'{deep}'"), format!("\"{deep}\""), format!("r'{deep}'"), format!("'''{deep}\n'''"), format!("1 // {deep}\n"), format!("'\\'{deep}'")]
        {
            assert_eq!(depth_error(&text), None, "{text}");
        }
        // `1e-5` is a number, not a subtraction: the parentheses alone are too deep.
        assert_eq!(depth_error(&format!("\"\" + 1e-5 {deep}")), Some(11 + MAX_NESTING));
    }

    #[test]
    fn cel_is_told_apart_from_the_keyword_language() {
        for cel in ["destination.port in [80, 443]", "size(x) > 1", "true", "a + b", "'x'", "x // c", "f(1)", "!source.x", "process.comm.startsWith(\"a\")"] {
            assert!(looks_like_cel(cel), "{cel}");
        }
        for keyword in [
            "any",
            "not (type NEW)",
            "not(type NEW)",
            "dst address 10.0.0.0/8,fe80::1.2.3.4",
            "on port 1024-65535",
            "process comm curl",
            "frob",
            "src address ::ffff:10.0.0.0/104",
        ] {
            assert!(!looks_like_cel(keyword), "{keyword}");
        }
    }
}
