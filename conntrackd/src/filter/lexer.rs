//! Splits a rule into tokens with their columns; shared by both languages.
//!
//! Words keep the characters of addresses, CIDRs, port ranges and dotted
//! CEL variables (`.`, `:`, `/`, `-`), so `10.0.0.0/8`, `fe80::/10`,
//! `1024-65535` and `source.address` are single tokens.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]

/// One token and the 1-based column (in characters) where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub kind: Tok<'a>,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok<'a> {
    Word(&'a str),
    /// A quoted string literal, without its quotes (no escapes are needed by the grammar).
    Str(&'a str),
    Comma,
    LParen,
    RParen,
    Bang,
    /// `== != < <= > >= && ||`
    Op(&'static str),
}

impl Tok<'_> {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Comma => "','".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Bang => "'!'".into(),
            Tok::Op(op) => format!("'{op}'"),
        }
    }
}

/// A lexical error: column and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    pub column: usize,
    pub message: String,
}

/// Tokenizes `text`; `base` is the column of its first character. Linear in
/// the length of the rule (columns are counted as the scan goes).
pub(crate) fn tokenize(text: &str, base: usize) -> Result<Vec<Token<'_>>, LexError> {
    let mut tokens = Vec::new();
    let (mut i, mut col) = (0, base);
    // `i` is always a character boundary: it moves by whole tokens.
    while let Some(rest) = text.get(i..) {
        let Some(c) = rest.chars().next() else { break };
        let (kind, len) = if c.is_whitespace() {
            (None, c.len_utf8())
        } else if let Some(op) = operator(rest) {
            (Some(Tok::Op(op)), op.len())
        } else if let Some(single) = match c {
            ',' => Some(Tok::Comma),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '!' => Some(Tok::Bang),
            _ => None,
        } {
            (Some(single), 1)
        } else if c == '"' || c == '\'' {
            // The quote is one byte.
            let Some((inside, _)) = rest.get(1..).and_then(|body| body.split_once(c)) else {
                return Err(LexError { column: col, message: format!("unterminated string starting with {c}") });
            };
            (Some(Tok::Str(inside)), inside.len() + 2)
        } else if is_word_char(c) {
            let word = rest.split(|ch: char| !is_word_char(ch)).next().unwrap_or(rest);
            (Some(Tok::Word(word)), word.len())
        } else {
            return Err(LexError { column: col, message: format!("unexpected character '{c}'") });
        };
        if let Some(kind) = kind {
            tokens.push(Token { kind, column: col });
        }
        col += rest.get(..len).map_or(0, |token| token.chars().count());
        i += len;
    }
    Ok(tokens)
}

/// The operator `rest` starts with: `== != < <= > >= && ||`. Byte tests,
/// not string compares: this runs once per character of the rule.
fn operator(rest: &str) -> Option<&'static str> {
    let b = rest.as_bytes();
    let pair = |op: &'static str| (b.get(1) == op.as_bytes().get(1)).then_some(op);
    match b.first()? {
        b'=' => pair("=="),
        b'!' => pair("!="),
        b'<' => pair("<=").or(Some("<")),
        b'>' => pair(">=").or(Some(">")),
        b'&' => pair("&&"),
        b'|' => pair("||"),
        _ => None,
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '-' | '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Tok<'_>> {
        tokenize(text, 1).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn words_keep_addresses_ranges_and_dotted_names() {
        assert_eq!(
            kinds("dst address 10.0.0.0/8,fe80::/10 on port 1024-65535"),
            vec![
                Tok::Word("dst"),
                Tok::Word("address"),
                Tok::Word("10.0.0.0/8"),
                Tok::Comma,
                Tok::Word("fe80::/10"),
                Tok::Word("on"),
                Tok::Word("port"),
                Tok::Word("1024-65535"),
            ]
        );
        assert_eq!(
            kinds("!is_network(source.address, \"PUBLIC\") && x != 'a'"),
            vec![
                Tok::Bang,
                Tok::Word("is_network"),
                Tok::LParen,
                Tok::Word("source.address"),
                Tok::Comma,
                Tok::Str("PUBLIC"),
                Tok::RParen,
                Tok::Op("&&"),
                Tok::Word("x"),
                Tok::Op("!="),
                Tok::Str("a"),
            ]
        );
    }

    #[test]
    fn every_operator_and_lone_symbols() {
        let ops: Vec<Tok<'_>> = kinds("a<=1<2>=3>4==5!=6&&7||8 !x").into_iter().filter(|t| !matches!(t, Tok::Word(_))).collect();
        let want = ["<=", "<", ">=", ">", "==", "!=", "&&", "||"].map(Tok::Op).into_iter().chain([Tok::Bang]).collect::<Vec<_>>();
        assert_eq!(ops, want);
        for lone in ["a & b", "a | b", "a = b"] {
            assert_eq!(tokenize(lone, 1).unwrap_err().column, 3, "{lone}");
        }
    }

    #[test]
    fn columns_and_errors() {
        let toks = tokenize("type  NEW", 5).unwrap();
        assert_eq!((toks[0].column, toks[1].column), (5, 11));
        assert_eq!(tokenize("a \"open", 1).unwrap_err().column, 3);
        assert_eq!(tokenize("a ; b", 1).unwrap_err(), LexError { column: 3, message: "unexpected character ';'".into() });
    }
}
