//! The rule tree as the decide loop evaluates it: the tree of `ast.rs`
//! rewritten into small nodes with their constants prepared (address
//! prefixes as mask and value, a single port range inline), evaluated on
//! [`Facts`], what is read from the event once for every rule (both
//! addresses in the IPv6 space, both ports, the network classes). String
//! tests and CEL subtrees are out-of-line calls, so the common nodes
//! evaluate in a small function. The semantics are exactly those of
//! `Expr::matches` and `Expr::eval` (the tests compare them).
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use crate::{
    event::Event,
    filter::{
        ast::{addr_bits, kind_bit, protocol_bit, Cidr, Expr, PortSet, Side},
        cel::{EvalError, Opaque},
        text::{AddrBuf, TextField, TextTest},
    },
};

/// What rules read from an event, read once per event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'e> {
    pub ev: &'e Event,
    /// The kind's bit (`kind_bit`) and the protocol's (`protocol_bit`).
    pub kind: u8,
    pub protocol: u8,
    /// The original tuple's addresses in the IPv6 space (IPv4 mapped).
    pub src: u128,
    pub dst: u128,
    pub src_port: u16,
    pub dst_port: u16,
    /// The addresses' class bits (`class_bit`); 0 when no rule reads the side's class.
    pub src_class: u8,
    pub dst_class: u8,
}

impl<'e> Facts<'e> {
    /// The facts of `ev`, with the class bits already worked out (or 0 where no rule reads them).
    #[inline]
    pub fn new(ev: &'e Event, (src_class, dst_class): (u8, u8)) -> Self {
        let (src, dst) = (addr_bits(ev.orig.src), addr_bits(ev.orig.dst));
        Facts {
            ev,
            kind: kind_bit(ev.kind),
            protocol: protocol_bit(ev.protocol),
            src,
            dst,
            src_port: ev.orig.src_port,
            dst_port: ev.orig.dst_port,
            src_class,
            dst_class,
        }
    }
}

/// An IP prefix in the IPv6 space, as the mask and the masked value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    pub mask: u128,
    pub value: u128,
}

impl Prefix {
    fn of(cidr: &Cidr) -> Self {
        let mask = if cidr.len == 0 { 0 } else { u128::MAX << (128 - u32::from(cidr.len.min(128))) };
        Prefix { mask, value: cidr.bits & mask }
    }

    #[inline]
    fn contains(self, addr: u128) -> bool {
        addr & self.mask == self.value
    }
}

/// Addresses in one of the prefixes, and (if given) the port in one of the ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddrSet {
    pub prefixes: Box<[Prefix]>,
    pub ports: Option<Box<[(u16, u16)]>>,
}

impl AddrSet {
    fn matches(&self, addr: u128, port: u16) -> bool {
        self.prefixes.iter().any(|p| p.contains(addr)) && self.ports.as_deref().is_none_or(|r| in_ranges(r, port))
    }
}

fn in_ranges(ranges: &[(u16, u16)], port: u16) -> bool {
    ranges.iter().any(|&(lo, hi)| lo <= port && port <= hi)
}

/// One node; see the [`Expr`] variant each mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Const(bool),
    Not(Box<Node>),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    If(Box<[Node; 3]>),
    /// The kind's bit in the set.
    Type(u8),
    Protocol(u8),
    /// The source's (destination's) class bit in the set.
    SrcClass(u8),
    DstClass(u8),
    /// The side's address in one prefix (the common `address A/N`, `in_cidr`); never `Either`.
    Prefix(Side, Prefix),
    /// The side's (or either side's) address and port in the set.
    Addresses(Side, Box<AddrSet>),
    /// The side's (or either) port in one range.
    Port(Side, u16, u16),
    Ports(Side, Box<[(u16, u16)]>),
    Text(Box<(TextField, TextTest)>),
    Cel(Box<Opaque>),
}

impl Node {
    /// The node of a compiled tree.
    pub fn of(e: &Expr) -> Node {
        match e {
            Expr::Const(b) => Node::Const(*b),
            Expr::Not(a) => Node::Not(Box::new(Node::of(a))),
            Expr::And(all) => Node::And(all.iter().map(Node::of).collect()),
            Expr::Or(any) => Node::Or(any.iter().map(Node::of).collect()),
            Expr::If(abc) => {
                let [c, a, b] = &**abc;
                Node::If(Box::new([Node::of(c), Node::of(a), Node::of(b)]))
            }
            Expr::Type(set) => Node::Type(set.0),
            Expr::Protocol(set) => Node::Protocol(set.0),
            // `Expr::matches` reads the destination for any side but the source.
            Expr::Network(Side::Source, set) => Node::SrcClass(set.0),
            Expr::Network(_, set) => Node::DstClass(set.0),
            Expr::Address(side, cidrs, ports) => match (side, cidrs.as_slice(), ports) {
                (Side::Source | Side::Destination, [only], None) => Node::Prefix(*side, Prefix::of(only)),
                _ => Node::Addresses(
                    *side,
                    Box::new(AddrSet { prefixes: cidrs.iter().map(Prefix::of).collect(), ports: ports.as_ref().map(|p| p.0.clone().into_boxed_slice()) }),
                ),
            },
            Expr::Port(side, PortSet(ranges)) => match ranges.as_slice() {
                [(lo, hi)] => Node::Port(*side, *lo, *hi),
                _ => Node::Ports(*side, ranges.clone().into_boxed_slice()),
            },
            Expr::Text(field, test) => Node::Text(Box::new((*field, test.clone()))),
            Expr::Cel(opaque) => Node::Cel(opaque.clone()),
        }
    }

    /// [`Expr::matches`]: the plain bool of a tree without CEL subtrees.
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        match self {
            Node::Const(b) => *b,
            Node::Not(e) => !e.matches(f),
            Node::And(all) => all.iter().all(|e| e.matches(f)),
            Node::Or(any) => any.iter().any(|e| e.matches(f)),
            Node::If(abc) => {
                let [c, a, b] = &**abc;
                if c.matches(f) {
                    a.matches(f)
                } else {
                    b.matches(f)
                }
            }
            Node::Cel(opaque) => cel(opaque, f.ev).unwrap_or(false),
            Node::Type(set) => set & (1 << f.kind) != 0,
            Node::Protocol(set) => set & (1 << f.protocol) != 0,
            Node::SrcClass(set) => set & (1 << f.src_class) != 0,
            Node::DstClass(set) => set & (1 << f.dst_class) != 0,
            Node::Prefix(Side::Source, p) => p.contains(f.src),
            Node::Prefix(_, p) => p.contains(f.dst),
            Node::Addresses(side, set) => match side {
                Side::Source => set.matches(f.src, f.src_port),
                Side::Destination => set.matches(f.dst, f.dst_port),
                Side::Either => set.matches(f.src, f.src_port) || set.matches(f.dst, f.dst_port),
            },
            Node::Port(side, lo, hi) => {
                let within = |p: u16| *lo <= p && p <= *hi;
                match side {
                    Side::Source => within(f.src_port),
                    Side::Destination => within(f.dst_port),
                    Side::Either => within(f.src_port) || within(f.dst_port),
                }
            }
            Node::Ports(side, ranges) => match side {
                Side::Source => in_ranges(ranges, f.src_port),
                Side::Destination => in_ranges(ranges, f.dst_port),
                Side::Either => in_ranges(ranges, f.src_port) || in_ranges(ranges, f.dst_port),
            },
            Node::Text(field_test) => text(field_test, f.ev),
        }
    }

    /// [`Expr::eval`]: failures of CEL subtrees as CEL's logic propagates them.
    pub fn eval(&self, f: &Facts<'_>) -> Result<bool, EvalError> {
        match self {
            Node::Not(e) => Ok(!e.eval(f)?),
            Node::And(all) => fold(all, f, false),
            Node::Or(any) => fold(any, f, true),
            Node::If(abc) => {
                let [c, a, b] = &**abc;
                if c.eval(f)? {
                    a.eval(f)
                } else {
                    b.eval(f)
                }
            }
            Node::Cel(opaque) => cel(opaque, f.ev),
            leaf => Ok(leaf.matches(f)),
        }
    }
}

/// `and` (`decisive` false) or `or` (true) in CEL's logic, as `Expr::fold`.
fn fold(operands: &[Node], f: &Facts<'_>, decisive: bool) -> Result<bool, EvalError> {
    let mut error = None;
    for e in operands {
        match e.eval(f) {
            Ok(v) if v == decisive => return Ok(decisive),
            Ok(_) => {}
            Err(err) => {
                error.get_or_insert(err);
            }
        }
    }
    error.map_or(Ok(!decisive), Err)
}

#[cold]
#[inline(never)]
fn text(field_test: &(TextField, TextTest), ev: &Event) -> bool {
    let (field, test) = field_test;
    test.test(field.read(ev, &mut AddrBuf::default()))
}

#[cold]
#[inline(never)]
fn cel(opaque: &Opaque, ev: &Event) -> Result<bool, EvalError> {
    opaque.eval(ev)
}
