//! The keyword rule language of the original (1.0–1.3), case-insensitive:
//!
//! ```text
//! expr      := and (("or" | ",") and)*
//! and       := unary ("and" unary)*
//! unary     := ("not" | "!") unary | "(" expr ")" | predicate
//! predicate := "any" | "type" TYPE,… | "protocol" PROTO,…
//!            | DIR "address" CIDR,… ["on" "port" PORTS] | DIR "network" CLASS,…
//!            | DIR "port" PORTS | "on" "port" PORTS
//!            | "process" ("comm" | "user" | "exe") VALUE,…
//! DIR       := source | src | destination | dst | dest
//! PORTS     := (N | N-M),…
//! ```
//! A comma continues a list when the next token can be a list element and
//! is an `or` between predicates otherwise. Each `not`, `!` and `(` opens a
//! nesting level, at most [`MAX_NESTING`](super::MAX_NESTING).
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use super::{
    ast::{class_bit, Bits, Cidr, Expr, PortSet, ProcessField, Side},
    lexer::{Tok, Token},
    text::{TextField, TextTest},
    Nesting, ParseError,
};
use crate::event::network::NetworkClass;

/// Parses a whole keyword expression.
pub(crate) fn parse(tokens: &[Token<'_>], end_column: usize) -> Result<Expr, ParseError> {
    let mut p = Parser { toks: tokens, pos: 0, end_column, nesting: Nesting::default() };
    let expr = p.expr("the action")?;
    match p.peek() {
        None => Ok(expr),
        Some(Tok::RParen) => Err(p.error_here("unbalanced ')': no '(' is open")),
        Some(_) => Err(p.expected("'and', 'or' or the end of the rule")),
    }
}

struct Parser<'t, 'a> {
    toks: &'t [Token<'a>],
    pos: usize,
    end_column: usize,
    nesting: Nesting,
}

/// Words that start a predicate: after a comma they end a list.
const STARTS: [&str; 13] = ["any", "type", "protocol", "source", "src", "destination", "dst", "dest", "on", "not", "and", "or", "process"];

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Option<&Tok<'a>> {
        self.toks.get(self.pos).map(|t| &t.kind)
    }

    fn peek_word(&self) -> Option<String> {
        match self.peek() {
            Some(Tok::Word(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn column(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end_column, |t| t.column)
    }

    fn found(&self) -> String {
        self.peek().map_or_else(|| "end of rule".to_string(), Tok::describe)
    }

    fn error_here(&self, message: &str) -> ParseError {
        ParseError { column: self.column(), message: message.to_string() }
    }

    fn expected(&self, what: &str) -> ParseError {
        ParseError { column: self.column(), message: format!("expected {what}, found {}", self.found()) }
    }

    /// Consumes the word if it is next (case-insensitive; `word` is lower case).
    fn eat_word(&mut self, word: &str) -> bool {
        let hit = matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word));
        self.pos += usize::from(hit);
        hit
    }

    fn eat(&mut self, tok: &Tok<'_>) -> bool {
        let hit = self.peek() == Some(tok);
        self.pos += usize::from(hit);
        hit
    }

    /// `and`s joined by `or` (or `,`), in one frame: a long chain is a loop, not recursion.
    fn expr(&mut self, after: &str) -> Result<Expr, ParseError> {
        let mut any = Vec::new();
        let mut all = vec![self.unary(after)?];
        loop {
            if self.eat_word("and") {
                all.push(self.unary("'and'")?);
                continue;
            }
            let op = if self.eat_word("or") {
                "'or'"
            } else if self.eat(&Tok::Comma) {
                "','"
            } else {
                break;
            };
            any.push(Expr::all(std::mem::take(&mut all)));
            all.push(self.unary(op)?);
        }
        any.push(Expr::all(all));
        Ok(Expr::any(any))
    }

    /// Negations (counted in a loop), then a group or a predicate. Only `(`
    /// recurses, one frame per level.
    fn unary(&mut self, after: &str) -> Result<Expr, ParseError> {
        let mut after = after;
        let mut negations = 0;
        loop {
            let column = self.column();
            after = if self.eat_word("not") {
                "'not'"
            } else if self.eat(&Tok::Bang) {
                "'!'"
            } else {
                break;
            };
            self.nesting.enter(column)?;
            negations += 1;
        }
        let open = self.column();
        let mut expr = if self.eat(&Tok::LParen) {
            self.nesting.enter(open)?;
            let inner = self.expr("'('")?;
            if !self.eat(&Tok::RParen) {
                return Err(self.unclosed(open));
            }
            self.nesting.leave();
            inner
        } else {
            self.predicate(after)?
        };
        for _ in 0..negations {
            self.nesting.leave();
            expr = Expr::not(expr);
        }
        Ok(expr)
    }

    #[cold]
    fn unclosed(&self, open: usize) -> ParseError {
        self.expected(&format!("')' to close the '(' at column {open}"))
    }

    fn predicate(&mut self, after: &str) -> Result<Expr, ParseError> {
        let Some(word) = self.peek_word() else {
            return Err(self.expected(&format!("a condition after {after}")));
        };
        let side = match word.as_str() {
            "source" | "src" => Some(Side::Source),
            "destination" | "dst" | "dest" => Some(Side::Destination),
            _ => None,
        };
        let keyword = self.found();
        match (word.as_str(), side) {
            ("any", _) => {
                self.pos += 1;
                Ok(Expr::Const(true))
            }
            ("type", _) => self.list_after(&keyword, "an event type (NEW, UPDATE, DESTROY)", type_bit).map(Expr::Type),
            ("protocol", _) => self.list_after(&keyword, "a protocol (TCP, UDP)", protocol_bit).map(Expr::Protocol),
            ("on", _) => {
                self.pos += 1;
                if !self.eat_word("port") {
                    return Err(self.expected("'port' after 'on'"));
                }
                Ok(Expr::Port(Side::Either, self.ports()?))
            }
            ("process", _) => self.process(),
            ("port", _) => Err(self.error_here("found 'port' without a direction: expected 'source port', 'destination port' or 'on port'")),
            (_, Some(side)) => self.sided(side, &keyword),
            _ => Err(self.expected(&format!("a condition (any, type, protocol, source/destination address|network|port, on port) after {after}"))),
        }
    }

    /// `process comm|user|exe V,V,…` (values are case-sensitive).
    fn process(&mut self) -> Result<Expr, ParseError> {
        self.pos += 1;
        let field = match self.peek_word().as_deref() {
            Some("comm") => ProcessField::Comm,
            Some("user") => ProcessField::User,
            Some("exe") => ProcessField::Exe,
            _ => return Err(self.expected("'comm', 'user' or 'exe' after 'process'")),
        };
        let keyword = self.found();
        let values = self.values_after(&keyword, "a name or path", |w: &str| Some(w.to_string()))?;
        Ok(Expr::Text(TextField::Process(field), TextTest::OneOf(values)))
    }

    fn sided(&mut self, side: Side, dir: &str) -> Result<Expr, ParseError> {
        self.pos += 1;
        match self.peek_word().as_deref() {
            Some("address") => {
                let cidrs = self.values_after("'address'", "an IP address or CIDR", Cidr::parse)?;
                let port = if self.peek_word().as_deref() == Some("on")
                    && matches!(self.toks.get(self.pos + 1).map(|t| &t.kind), Some(Tok::Word(w)) if w.eq_ignore_ascii_case("port"))
                {
                    self.pos += 2;
                    Some(self.ports()?)
                } else {
                    None
                };
                Ok(Expr::Address(side, cidrs, port))
            }
            Some("network") => {
                self.list_after("'network'", "a network class (LOCAL, PRIVATE, PUBLIC, MULTICAST)", network_bit).map(|bits| Expr::Network(side, bits))
            }
            Some("port") => {
                self.pos += 1;
                Ok(Expr::Port(side, self.ports()?))
            }
            _ => Err(self.expected(&format!("'address', 'network' or 'port' after {dir}"))),
        }
    }

    /// `keyword V,V,…` of small enum values, as bits.
    fn list_after(&mut self, keyword: &str, what: &str, bit: fn(&str) -> Option<u8>) -> Result<Bits, ParseError> {
        let bits = self.values_after(keyword, what, bit)?;
        Ok(bits.into_iter().fold(Bits::default(), Bits::with))
    }

    /// Skips the keyword, then reads `V(,V)*` with `parse`.
    fn values_after<T>(&mut self, keyword: &str, what: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, ParseError> {
        self.pos += 1;
        let mut values = vec![self.value(&format!("{what} after {keyword}"), &parse)?];
        while self.list_continues() {
            self.pos += 1;
            values.push(self.value(&format!("{what} after ','"), &parse)?);
        }
        Ok(values)
    }

    fn value<T>(&mut self, expected: &str, parse: &impl Fn(&str) -> Option<T>) -> Result<T, ParseError> {
        match self.peek() {
            Some(Tok::Word(w)) => match parse(w).or_else(|| parse(&w.to_ascii_uppercase())) {
                Some(v) => {
                    self.pos += 1;
                    Ok(v)
                }
                None => Err(self.expected(expected)),
            },
            _ => Err(self.expected(expected)),
        }
    }

    /// A comma followed by something that is not a predicate keyword continues the list.
    fn list_continues(&self) -> bool {
        self.peek() == Some(&Tok::Comma)
            && match self.toks.get(self.pos + 1).map(|t| &t.kind) {
                Some(Tok::Word(w)) => !STARTS.iter().any(|s| s.eq_ignore_ascii_case(w)),
                _ => false,
            }
    }

    fn ports(&mut self) -> Result<PortSet, ParseError> {
        let mut ranges = vec![self.port_item("a port number or range after 'port'")?];
        while self.list_continues() {
            self.pos += 1;
            ranges.push(self.port_item("a port number or range after ','")?);
        }
        Ok(PortSet(ranges))
    }

    fn port_item(&mut self, expected: &str) -> Result<(u16, u16), ParseError> {
        let Some(Tok::Word(w)) = self.peek() else { return Err(self.expected(expected)) };
        let (lo, hi) = w.split_once('-').unwrap_or((w, w));
        let (Ok(lo), Ok(hi)) = (lo.parse::<u32>(), hi.parse::<u32>()) else {
            return Err(self.expected(expected));
        };
        let (Ok(lo16), Ok(hi16)) = (u16::try_from(lo), u16::try_from(hi)) else {
            return Err(self.error_here(&format!("port {} is above 65535", lo.max(hi))));
        };
        if lo16 > hi16 {
            return Err(self.error_here(&format!("port range {w} is reversed: {lo} is above {hi}")));
        }
        self.pos += 1;
        Ok((lo16, hi16))
    }
}

pub(crate) fn type_bit(s: &str) -> Option<u8> {
    match s {
        "NEW" => Some(0),
        "UPDATE" => Some(1),
        "DESTROY" => Some(2),
        _ => None,
    }
}

pub(crate) fn protocol_bit(s: &str) -> Option<u8> {
    match s {
        "TCP" => Some(0),
        "UDP" => Some(1),
        _ => None,
    }
}

pub(crate) fn network_bit(s: &str) -> Option<u8> {
    NetworkClass::ALL.iter().find(|c| c.as_str() == s).map(|&c| class_bit(c))
}
