//! Writes a generated rule tree ([`Node`]) in the keyword language or in CEL,
//! parenthesizing by precedence and counting nesting exactly as the parsers
//! do (each `(`, `not`/`!` and CEL call opens a level), so the generator
//! knows the column where a rule goes past [`MAX_NESTING`].
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

    fn word(&mut self, s: &str) {
        if self.upper {
            self.push(&s.to_ascii_uppercase());
        } else {
            self.push(s);
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
                let op = if u.arbitrary()? { "not " } else { "!" };
                self.open(&if self.upper { op.to_ascii_uppercase() } else { op.to_string() });
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
        let ports = |v: &[(u16, u16)]| v.iter().map(|&(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }).collect::<Vec<_>>().join(",");
        match p {
            Pred::Any => self.word("any"),
            Pred::Type(v) => self.word(&format!("type {}", v.join(","))),
            Pred::Protocol(v) => self.word(&format!("protocol {}", v.join(","))),
            Pred::Network(d, v) => self.word(&format!("{} network {}", dir(u, *d)?, v.join(","))),
            Pred::Address(d, v, p) => {
                self.word(&format!("{} address ", dir(u, *d)?));
                self.push(&v.join(","));
                if let Some(p) = p {
                    self.word(" on port ");
                    self.push(&ports(p));
                }
            }
            Pred::Port(d, v) => self.word(&format!("{} port {}", dir(u, *d)?, ports(v))),
            Pred::OnPort(v) => self.word(&format!("on port {}", ports(v))),
            Pred::Process(f, v) => {
                self.word(&format!("process {} ", PROCESS[*f].0));
                self.push(&v.join(","));
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
            Pred::Type(v) => self.any_of(v, Prec::Compare, place, u, |o, t, u| o.compare("event.type", &format!("\"{t}\""), u)),
            Pred::Protocol(v) => self.any_of(v, Prec::Compare, place, u, |o, t, u| o.compare("protocol", &format!("\"{t}\""), u)),
            Pred::Network(d, v) => self.any_of(v, Prec::Unary, place, u, |o, c, u| {
                let class = if u.arbitrary()? { c.to_ascii_lowercase() } else { c.to_string() };
                o.call("is_network", &[&format!("{}.address", side(*d)), &format!("\"{class}\"")]);
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
            Pred::Process(f, v) => self.any_of(v, Prec::Compare, place, u, |o, x, u| o.compare(PROCESS[*f].1, &format!("\"{x}\""), u)),
        }
    }

    fn cel_addresses(&mut self, side: &str, v: &[&'static str], place: Prec, u: &mut Unstructured<'_>) -> Result<()> {
        let plain = v.len() == 1 && !v[0].contains('/');
        if plain && u.arbitrary()? {
            return self.group(Prec::Compare, place, |o| o.compare(&format!("{side}.address"), &format!("\"{}\"", v[0]), u));
        }
        self.any_of(v, Prec::Unary, place, u, |o, a, _| {
            o.call("in_cidr", &[&format!("{side}.address"), &format!("\"{a}\"")]);
            Ok(())
        })
    }

    fn cel_ports(&mut self, side: &str, v: &[(u16, u16)], place: Prec, u: &mut Unstructured<'_>) -> Result<()> {
        let var = format!("{side}.port");
        let single = |&(lo, hi): &(u16, u16)| if lo == hi { Prec::Compare } else { Prec::Unary };
        let item = v.iter().map(single).min().unwrap_or(Prec::Unary);
        self.any_of(v, item, place, u, |o, (lo, hi), u| {
            if lo == hi {
                o.compare(&var, &lo.to_string(), u)
            } else if u.arbitrary()? {
                o.call("in_range", &[&var, &lo.to_string(), &hi.to_string()]);
                Ok(())
            } else {
                o.open("(");
                o.push(&format!("{var} >= {lo} && {var} <= {hi}"));
                o.close(")");
                Ok(())
            }
        })
    }

    /// `var == literal`, sometimes written `literal == var`.
    fn compare(&mut self, var: &str, literal: &str, u: &mut Unstructured<'_>) -> Result<()> {
        if u.arbitrary()? {
            self.push(&format!("{literal} == {var}"));
        } else {
            self.push(&format!("{var} == {literal}"));
        }
        Ok(())
    }

    /// `name(args…)`: a call opens a nesting level.
    fn call(&mut self, name: &str, args: &[&str]) {
        self.push(name);
        self.open("(");
        self.push(&args.join(", "));
        self.close(")");
    }
}
