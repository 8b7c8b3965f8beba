//! The compiled rule tree both languages produce, and its evaluation on an
//! event. Everything but [`Expr::Cel`] is a typed value (bit sets, ranges,
//! prefixes, literal strings): evaluating it never allocates. A CEL subtree
//! the tree cannot express is an [`Expr::Cel`] node, run by the interpreter;
//! only it can fail, and a failure propagates as CEL's logic says
//! (`false && error` is false, `true || error` true, anything else an error).
//! The evaluation here is the definition the tests and the fuzz targets
//! check the daemon's decide loop (`fast/`, built from this tree) against.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::net::IpAddr;

#[cfg(any(test, feature = "fuzzing"))]
use super::{cel::EvalError, text::AddrBuf};
use super::{
    cel::Opaque,
    text::{TextField, TextTest},
};
pub(crate) use crate::event::prefilter::{class_bit, kind_bit, protocol_bit};
#[cfg(any(test, feature = "fuzzing"))]
use crate::event::{network::NetworkClass, Event};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Log,
    Drop,
}

/// Which address (or port) of the original tuple a predicate looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Source,
    Destination,
    /// `on port P`: either side.
    Either,
}

/// A set of small enum values as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Bits(pub u8);

impl Bits {
    pub fn with(self, bit: u8) -> Self {
        Bits(self.0 | 1 << bit)
    }

    pub fn has(self, bit: u8) -> bool {
        self.0 & (1 << bit) != 0
    }
}

/// An IP prefix in the IPv6 space; IPv4 prefixes are IPv4-mapped, so an
/// IPv4-mapped IPv6 address matches them as the IPv4 address it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    pub bits: u128,
    pub len: u8,
}

impl Cidr {
    /// `a.b.c.d`, `a.b.c.d/n`, an IPv6 address, or `x::/n`.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let (bits, len) = match addr.parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), 96 + len.unwrap_or(32)),
            IpAddr::V6(v6) => (u128::from(v6), len.unwrap_or(128)),
        };
        (len <= 128).then(|| Cidr { bits: bits & mask(len), len })
    }

    pub fn contains(&self, addr: u128) -> bool {
        addr & mask(self.len) == self.bits
    }
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// An address in the IPv6 space (IPv4 mapped).
pub(crate) fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Inclusive port ranges, kept as ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortSet(pub Vec<(u16, u16)>);

impl PortSet {
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= port && port <= hi)
    }
}

/// A compiled expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Const(bool),
    Not(Box<Expr>),
    /// Every operand matches: `a and b and c` is one node of three, so a
    /// long chain is wide, not deep (the tree is as deep as the rule nests).
    And(Vec<Expr>),
    /// Some operand matches; flat like [`Expr::And`].
    Or(Vec<Expr>),
    /// Event type in the set (bits by [`kind_bit`]).
    Type(Bits),
    /// Protocol in the set (bits by [`protocol_bit`]).
    Protocol(Bits),
    /// The side's network class in the set (bits by [`class_bit`]); never `Either`.
    Network(Side, Bits),
    /// The side's address in one of the prefixes (and, if given, its port in the set).
    Address(Side, Vec<Cidr>, Option<PortSet>),
    /// The side's port (or either port) in the set.
    Port(Side, PortSet),
    /// A string field passes a test (a process field is empty when the
    /// process is not known). Never known to the kernel pre-filter.
    Text(TextField, TextTest),
    /// CEL's `c ? a : b` on conditions.
    If(Box<[Expr; 3]>),
    /// A CEL subtree for the interpreter; unknown to the kernel pre-filter.
    Cel(Box<Opaque>),
}

/// A process field rules can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcessField {
    Comm,
    User,
    Exe,
}

impl Expr {
    /// Every operand matches: a single operand is itself, nested `and`s are merged.
    pub fn all(operands: Vec<Expr>) -> Expr {
        Self::flat(operands, Expr::And, |e| match e {
            Expr::And(v) => Ok(v),
            other => Err(other),
        })
    }

    /// Some operand matches; merged like [`Expr::all`].
    pub fn any(operands: Vec<Expr>) -> Expr {
        Self::flat(operands, Expr::Or, |e| match e {
            Expr::Or(v) => Ok(v),
            other => Err(other),
        })
    }

    fn flat(mut operands: Vec<Expr>, node: fn(Vec<Expr>) -> Expr, split: fn(Expr) -> Result<Vec<Expr>, Expr>) -> Expr {
        if operands.len() == 1 {
            if let Some(only) = operands.pop() {
                return only;
            }
        }
        let mut flat = Vec::with_capacity(operands.len());
        for e in operands {
            match split(e) {
                Ok(inner) => flat.extend(inner),
                Err(other) => flat.push(other),
            }
        }
        node(flat)
    }

    pub fn not(a: Expr) -> Expr {
        Expr::Not(Box::new(a))
    }

    /// Whether evaluating can fail (the tree has a CEL subtree).
    pub fn fallible(&self) -> bool {
        match self {
            Expr::Cel(_) => true,
            Expr::Not(e) => e.fallible(),
            Expr::And(v) | Expr::Or(v) => v.iter().any(Expr::fallible),
            Expr::If(abc) => abc.iter().any(Expr::fallible),
            _ => false,
        }
    }

    /// Evaluates a tree without CEL subtrees ([`Expr::fallible`] false) on
    /// an event (original-direction tuple): the hot path, a plain bool. On a
    /// fallible tree a failing CEL subtree counts as false where it stands,
    /// which is not CEL's logic (`!error` would be true): use [`Expr::eval`].
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn matches(&self, ev: &Event) -> bool {
        match self {
            Expr::Const(b) => *b,
            Expr::Not(e) => !e.matches(ev),
            Expr::And(all) => all.iter().all(|e| e.matches(ev)),
            Expr::Or(any) => any.iter().any(|e| e.matches(ev)),
            Expr::Type(set) => set.has(kind_bit(ev.kind)),
            Expr::Protocol(set) => set.has(protocol_bit(ev.protocol)),
            Expr::Network(side, set) => {
                let ip = if *side == Side::Source { ev.orig.src } else { ev.orig.dst };
                set.has(class_bit(NetworkClass::of(ip)))
            }
            Expr::Address(side, cidrs, ports) => match side {
                Side::Source => address_matches(ev.orig.src, ev.orig.src_port, cidrs, ports),
                Side::Destination => address_matches(ev.orig.dst, ev.orig.dst_port, cidrs, ports),
                Side::Either => address_matches(ev.orig.src, ev.orig.src_port, cidrs, ports) || address_matches(ev.orig.dst, ev.orig.dst_port, cidrs, ports),
            },
            Expr::Port(side, set) => match side {
                Side::Source => set.contains(ev.orig.src_port),
                Side::Destination => set.contains(ev.orig.dst_port),
                Side::Either => set.contains(ev.orig.src_port) || set.contains(ev.orig.dst_port),
            },
            Expr::Text(field, test) => test.test(field.read(ev, &mut AddrBuf::default())),
            Expr::If(abc) => {
                let [c, a, b] = &**abc;
                if c.matches(ev) {
                    a.matches(ev)
                } else {
                    b.matches(ev)
                }
            }
            Expr::Cel(opaque) => opaque.eval(ev).unwrap_or(false),
        }
    }

    /// Evaluates on an event (original-direction tuple), failures as CEL propagates them.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn eval(&self, ev: &Event) -> Result<bool, EvalError> {
        match self {
            Expr::Not(e) => Ok(!e.eval(ev)?),
            Expr::And(all) => Self::fold(all, ev, false),
            Expr::Or(any) => Self::fold(any, ev, true),
            Expr::If(abc) => {
                let [c, a, b] = &**abc;
                if c.eval(ev)? {
                    a.eval(ev)
                } else {
                    b.eval(ev)
                }
            }
            Expr::Cel(opaque) => opaque.eval(ev),
            leaf => Ok(leaf.matches(ev)),
        }
    }

    /// `and` (`decisive` false) or `or` (true) in CEL's logic: the decisive
    /// value wins over errors; else the first error, else the other value.
    #[cfg(any(test, feature = "fuzzing"))]
    fn fold(operands: &[Expr], ev: &Event, decisive: bool) -> Result<bool, EvalError> {
        let mut error = None;
        for e in operands {
            match e.eval(ev) {
                Ok(v) if v == decisive => return Ok(decisive),
                Ok(_) => {}
                Err(err) => {
                    error.get_or_insert(err);
                }
            }
        }
        error.map_or(Ok(!decisive), Err)
    }
}

#[cfg(any(test, feature = "fuzzing"))]
fn address_matches(ip: IpAddr, port: u16, cidrs: &[Cidr], ports: &Option<PortSet>) -> bool {
    let bits = addr_bits(ip);
    cidrs.iter().any(|c| c.contains(bits)) && ports.as_ref().is_none_or(|p| p.contains(port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_cover_ipv4_mapped_and_ipv6() {
        let private = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(private.contains(addr_bits("10.1.2.3".parse().unwrap())));
        assert!(private.contains(addr_bits("::ffff:10.1.2.3".parse().unwrap())));
        assert!(!private.contains(addr_bits("11.0.0.1".parse().unwrap())));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(addr_bits("2001:db8::1".parse().unwrap())));
        assert_eq!(Cidr::parse("8.8.8.8"), Some(Cidr { bits: addr_bits("8.8.8.8".parse().unwrap()), len: 128 }));
        assert!(Cidr::parse("::/0").unwrap().contains(42));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("10.0.0.300"), None);
        assert_eq!(Cidr::parse("10.0.0.0/x"), None);
    }

    #[test]
    fn port_sets_are_ranges() {
        let p = PortSet(vec![(80, 80), (1024, 65535)]);
        assert!(p.contains(80) && p.contains(65535) && p.contains(1024));
        assert!(!p.contains(81) && !p.contains(1023));
    }
}
