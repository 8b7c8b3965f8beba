//! Writes a generated rule tree ([`Node`]) in the keyword language or in CEL,
//! parenthesizing by precedence and counting nesting exactly as the parsers
//! do (each `(`, `not`/`!` and CEL call opens a level), so the generator
//! knows the column where a rule goes past [`MAX_NESTING`].
use std::fmt::{self, Write};

use arbitrary::{Result, Unstructured};

use super::rulegen::{Dir, Node, Pred, Written, PROCESS};
use crate::filter::{MAX_NESTING, MAX_RULE_BYTES};

/// Operator precedence, loosest first; an operand looser than its place is parenthesized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Prec {
    Or,
    And,
    /// A CEL comparison: an operand of `&&`/`||`, not of `!`.
    Compare,
    Unary,
}

/// A rule being written, counting its nesting as the parsers do.
pub(super) struct Out {
    text: String,
    depth: usize,
    /// Column of the first opening token past [`MAX_NESTING`].
    too_deep: Option<usize>,
    /// Keywords in upper case (they are case-insensitive).
    upper: bool,
}

impl Out {
    pub(super) fn new(action: &str, upper: bool) -> Self {
        Self { text: format!("{action} "), depth: 0, too_deep: None, upper }
    }

    /// Past the length limit the rest is not written: the rule must fail on its length anyway.
    fn full(&self) -> bool {
        self.text.len() > MAX_RULE_BYTES
    }

    fn push(&mut self, s: &str) {
        if !self.full() {
            self.text.push_str(s);
        }
    }

    /// Writes formatted text without an intermediate string (this runs
    /// for every token of rules up to 64 KiB long).
    fn put(&mut self, args: fmt::Arguments<'_>) {
        if !self.full() {
            let _ = self.text.write_fmt(args);
        }
    }

    /// Writes keywords, in upper case when the rule is written so.
    fn word(&mut self, args: fmt::Arguments<'_>) {
        let start = self.text.len();
        self.put(args);
        if self.upper {
            self.text[start..].make_ascii_uppercase();
        }
    }

    /// Writes an opening token that starts a nesting level (ASCII only, so the column is the length).
    fn open(&mut self, token: &str) {
        self.depth += 1;
        if self.depth > MAX_NESTING && self.too_deep.is_none() && !self.full() {
            self.too_deep = Some(self.text.len() + 1);
        }
        self.push(token);
    }

    fn close(&mut self, token: &str) {
        self.depth -= 1;
        self.push(token);
    }

    pub(super) fn finish(self) -> Written {
        let error = if self.text.len() > MAX_RULE_BYTES {
            let message = format!("the rule is {} bytes long, more than the limit of {MAX_RULE_BYTES}", self.text.len());
            Some((MAX_RULE_BYTES + 1, message))
        } else {
            self.too_deep.map(|column| (column, format!("nesting deeper than {MAX_NESTING} levels")))
        };
        Written { text: self.text, error }
    }

    /// Writes `inner` in parentheses when it binds looser than `place`.
    fn group(&mut self, own: Prec, place: Prec, inner: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        if own < place {
            self.open("(");
            inner(self)?;
            self.close(")");
            Ok(())
        } else {
            inner(self)
        }
    }

    fn join(
        &mut self,
        nodes: &[Node],
        sep: &str,
        place: Prec,
        u: &mut Unstructured<'_>,
        write: fn(&mut Self, &Node, Prec, &mut Unstructured<'_>) -> Result<()>,
    ) -> Result<()> {
        for (i, n) in nodes.iter().enumerate() {
            if i > 0 {
                self.push(sep);
            }
            write(self, n, place, u)?;
        }
        Ok(())
    }

    fn repeat(
        &mut self,
        times: usize,
        sep: &str,
        node: &Node,
        place: Prec,
        u: &mut Unstructured<'_>,
        write: fn(&mut Self, &Node, Prec, &mut Unstructured<'_>) -> Result<()>,
    ) -> Result<()> {
        for i in 0..times {
            if self.full() {
                break;
            }
            if i > 0 {
                self.push(sep);
            }
            write(self, node, place, u)?;
        }
        Ok(())
    }

    pub(super) fn keyword(&mut self, node: &Node, place: Prec, u: &mut Unstructured<'_>) -> Result<()> {
        match node {
            Node::Pred(p) => self.keyword_pred(p, u),
            Node::Not(inner) => {
                let op = match (u.arbitrary()?, self.upper) {
                    (true, false) => "not ",
                    (true, true) => "NOT ",
                    (false, _) => "!",
                };
                self.open(op);
                self.keyword(inner, Prec::Unary, u)?;
                self.close("");
                Ok(())
            }
            Node::And(v) => self.group(Prec::And, place, |o| o.join(v, if o.upper { " AND " } else { " and " }, Prec::And, u, Self::keyword)),
            Node::Or(v) => {
                let sep = *u.choose(&[" or ", ", ", " OR "])?;
                self.group(Prec::Or, place, |o| o.join(v, sep, Prec::And, u, Self::keyword))
            }
            Node::Parens(n, inner) => self.parens(*n, inner, u, Self::keyword),
            Node::Repeat { times, or, node } => {
                let (own, sep) = if *or { (Prec::Or, " or ") } else { (Prec::And, " and ") };
                self.group(own, place, |o| o.repeat(*times, sep, node, Prec::And, u, Self::keyword))
            }
        }
    }

    fn parens(
        &mut self,
        n: usize,
        inner: &Node,
        u: &mut Unstructured<'_>,
        write: fn(&mut Self, &Node, Prec, &mut Unstructured<'_>) -> Result<()>,
    ) -> Result<()> {
        for _ in 0..n {
            self.open("(");
        }
        write(self, inner, Prec::Or, u)?;
        for _ in 0..n {
            self.close(")");
        }
        Ok(())
    }

    fn keyword_pred(&mut self, p: &Pred, u: &mut Unstructured<'_>) -> Result<()> {
        let dir = |u: &mut Unstructured<'_>, d: Dir| -> Result<&'static str> {
            Ok(match d {
                Dir::Source => *u.choose(&["source", "src"])?,
                Dir::Destination => *u.choose(&["destination", "dst", "dest"])?,
            })
        };
        match p {
            Pred::Any => self.word(format_args!("any")),
            Pred::Type(v) => self.word(format_args!("type {}", List(v))),
            Pred::Protocol(v) => self.word(format_args!("protocol {}", List(v))),
            Pred::Network(d, v) => self.word(format_args!("{} network {}", dir(u, *d)?, List(v))),
            Pred::Address(d, v, p) => {
                self.word(format_args!("{} address ", dir(u, *d)?));
                self.put(format_args!("{}", List(v)));
                if let Some(p) = p {
                    self.word(format_args!(" on port {}", Ports(p)));
                }
            }
            Pred::Port(d, v) => self.word(format_args!("{} port {}", dir(u, *d)?, Ports(v))),
            Pred::OnPort(v) => self.word(format_args!("on port {}", Ports(v))),
            Pred::Process(f, v) => {
                self.word(format_args!("process {} ", PROCESS[*f].0));
                self.put(format_args!("{}", List(v)));
            }
        }
        Ok(())
    }

    pub(super) fn cel(&mut self, node: &Node, place: Prec, u: &mut Unstructured<'_>) -> Result<()> {
        match node {
            Node::Pred(p) => self.cel_pred(p, place, u),
            Node::Not(inner) => {
                self.open("!");
                self.cel(inner, Prec::Unary, u)?;
                self.close("");
                Ok(())
            }
            Node::And(v) => self.group(Prec::And, place, |o| o.join(v, " && ", Prec::And, u, Self::cel)),
            Node::Or(v) => self.group(Prec::Or, place, |o| o.join(v, " || ", Prec::And, u, Self::cel)),
            Node::Parens(n, inner) => self.parens(*n, inner, u, Self::cel),
            Node::Repeat { times, or, node } => {
                let (own, sep) = if *or { (Prec::Or, " || ") } else { (Prec::And, " && ") };
                self.group(own, place, |o| o.repeat(*times, sep, node, Prec::And, u, Self::cel))
            }
        }
    }

    /// Writes `items` (each a comparison or tighter) joined by `||`: one item
    /// binds as tightly as it is (`item`), several as an `or`.
    fn any_of<T: Copy>(
        &mut self,
        items: &[T],
        item: Prec,
        place: Prec,
        u: &mut Unstructured<'_>,
        write: impl Fn(&mut Self, T, &mut Unstructured<'_>) -> Result<()>,
    ) -> Result<()> {
        let own = if items.len() > 1 { Prec::Or } else { item };
        self.group(own, place, |o| {
            for (i, &x) in items.iter().enumerate() {
                if i > 0 {
                    o.push(" || ");
                }
                write(o, x, u)?;
            }
            Ok(())
        })
    }

    fn cel_pred(&mut self, p: &Pred, place: Prec, u: &mut Unstructured<'_>) -> Result<()> {
        let side = |d: Dir| match d {
            Dir::Source => "source",
            Dir::Destination => "destination",
        };
        match p {
            Pred::Any => {
                self.push("true");
                Ok(())
            }
            Pred::Type(v) => self.any_of(v, Prec::Compare, place, u, |o, t, u| o.compare(format_args!("event.type"), format_args!("\"{t}\""), u)),
            Pred::Protocol(v) => self.any_of(v, Prec::Compare, place, u, |o, t, u| o.compare(format_args!("protocol"), format_args!("\"{t}\""), u)),
            Pred::Network(d, v) => self.any_of(v, Prec::Unary, place, u, |o, c, u| {
                o.call("is_network", format_args!("{}.address, \"", side(*d)));
                // The class is case-insensitive in CEL.
                let start = o.text.len();
                o.put(format_args!("{c}\")"));
                if u.arbitrary()? {
                    o.text[start..].make_ascii_lowercase();
                }
                o.close("");
                Ok(())
            }),
            Pred::Address(d, v, None) => self.cel_addresses(side(*d), v, place, u),
            Pred::Address(d, v, Some(ports)) => self.group(Prec::And, place, |o| {
                o.cel_addresses(side(*d), v, Prec::And, u)?;
                o.push(" && ");
                o.cel_ports(side(*d), ports, Prec::And, u)
            }),
            Pred::Port(d, v) => self.cel_ports(side(*d), v, place, u),
            Pred::OnPort(v) => self.group(Prec::Or, place, |o| {
                o.cel_ports("source", v, Prec::Or, u)?;
                o.push(" || ");
                o.cel_ports("destination", v, Prec::Or, u)
            }),
            Pred::Process(f, v) => self.any_of(v, Prec::Compare, place, u, |o, x, u| o.compare(format_args!("{}", PROCESS[*f].1), format_args!("\"{x}\""), u)),
        }
    }

    fn cel_addresses(&mut self, side: &str, v: &[&'static str], place: Prec, u: &mut Unstructured<'_>) -> Result<()> {
        let plain = v.len() == 1 && !v[0].contains('/');
        if plain && u.arbitrary()? {
            return self.group(Prec::Compare, place, |o| o.compare(format_args!("{side}.address"), format_args!("\"{}\"", v[0]), u));
        }
        self.any_of(v, Prec::Unary, place, u, |o, a, _| {
            o.call("in_cidr", format_args!("{side}.address, \"{a}\")"));
            o.close("");
            Ok(())
        })
    }

    fn cel_ports(&mut self, side: &str, v: &[(u16, u16)], place: Prec, u: &mut Unstructured<'_>) -> Result<()> {
        let single = |&(lo, hi): &(u16, u16)| if lo == hi { Prec::Compare } else { Prec::Unary };
        let item = v.iter().map(single).min().unwrap_or(Prec::Unary);
        self.any_of(v, item, place, u, |o, (lo, hi), u| {
            if lo == hi {
                o.compare(format_args!("{side}.port"), format_args!("{lo}"), u)
            } else if u.arbitrary()? {
                o.call("in_range", format_args!("{side}.port, {lo}, {hi})"));
                o.close("");
                Ok(())
            } else {
                // Each comparison is `.` then `>=`/`<=`: one level (see `compare`).
                o.open("(");
                o.put(format_args!("{side}.port "));
                o.level_at(o.text.len() + 1);
                o.put(format_args!(">= {lo} && {side}.port "));
                o.level_at(o.text.len() + 1);
                o.put(format_args!("<= {hi}"));
                o.close(")");
                Ok(())
            }
        })
    }

    /// `var == literal`, sometimes written `literal == var`. The CEL scan
    /// counts a chain of operators one level per operator past the first, and
    /// a field access is one: `event.type == "NEW"` is one level deep, reached
    /// at the second operator (`==` after the `.`, or the `.` after `==`).
    fn compare(&mut self, var: fmt::Arguments<'_>, literal: fmt::Arguments<'_>, u: &mut Unstructured<'_>) -> Result<()> {
        // Where `var` was written: its `.` is found in the text, not in a copy.
        let dot_after = |o: &Self, start: usize| o.text.get(start..).and_then(|v| v.find('.')).map(|d| start + d);
        if u.arbitrary()? {
            self.put(format_args!("{literal} == "));
            let start = self.text.len();
            self.put(var);
            if let Some(dot) = dot_after(self, start) {
                self.level_at(dot + 1);
            }
        } else {
            let start = self.text.len();
            self.put(var);
            self.push(" ");
            if dot_after(self, start).is_some() {
                self.level_at(self.text.len() + 1);
            }
            self.put(format_args!("== {literal}"));
        }
        Ok(())
    }

    /// A level that opens at `column` and closes before the next opening
    /// token (an operator chain): only checked against the limit.
    fn level_at(&mut self, column: usize) {
        if self.depth + 1 > MAX_NESTING && self.too_deep.is_none() && !self.full() {
            self.too_deep = Some(column);
        }
    }

    /// `name(` and the arguments with their `)`: a call opens a nesting
    /// level, which the caller closes (`close("")`) once the `)` is written.
    fn call(&mut self, name: &str, args: fmt::Arguments<'_>) {
        self.push(name);
        self.open("(");
        self.put(args);
    }
}

/// Values joined by commas.
struct List<'a>(&'a [&'a str]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(v)?;
        }
        Ok(())
    }
}

/// A keyword port set: `N` or `N-M`, joined by commas.
struct Ports<'a>(&'a [(u16, u16)]);

impl fmt::Display for Ports<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}
