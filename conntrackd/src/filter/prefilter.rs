//! The kernel pre-filter, derived from the rules and sound by construction:
//! the kernel may drop an event only if no event with the same (type,
//! protocol, source class, destination class) could be logged by the rules.
//!
//! Each rule is evaluated in three-valued logic (true / false / unknown) over
//! each of the 3 × 2 × 4 × 4 combinations, in rule order, exactly as
//! first-match evaluation would run.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{fmt, net::IpAddr};

use conntrackd_common::{Counter, Policy};

use super::{
    ast::{addr_bits, class_bit, kind_bit, protocol_bit, Action, Cidr, Expr, Side},
    network::{NetworkClass, PREFIXES},
    Rules,
};
use crate::event::{EventType, Protocol};

const KINDS: [EventType; 3] = [EventType::New, EventType::Update, EventType::Destroy];
const PROTOCOLS: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];

/// Which (type, protocol, source class, destination class) combinations the
/// kernel keeps: `keep[kind][protocol]` has bit `src * 4 + dst` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefilter {
    keep: [[u16; 2]; 3],
}

/// One abstract event: what the kernel knows when it decides.
#[derive(Debug, Clone, Copy)]
struct Combo {
    kind: u8,
    protocol: u8,
    src: u8,
    dst: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    True,
    False,
    Unknown,
}

impl Tri {
    fn from(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }

    fn not(self) -> Tri {
        match self {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            Tri::Unknown => Tri::Unknown,
        }
    }
}

impl Prefilter {
    /// Derives the table from the rules.
    pub fn derive(rules: &Rules) -> Self {
        let mut keep = [[0u16; 2]; 3];
        for kind in KINDS {
            for protocol in PROTOCOLS {
                let (kind, protocol) = (kind_bit(kind), protocol_bit(protocol));
                let mut mask = 0;
                for src in 0..4u8 {
                    for dst in 0..4u8 {
                        if may_log(rules, &Combo { kind, protocol, src, dst }) {
                            mask |= 1 << (src * 4 + dst);
                        }
                    }
                }
                if let Some(cell) = keep.get_mut(usize::from(kind)).and_then(|row| row.get_mut(usize::from(protocol))) {
                    *cell = mask;
                }
            }
        }
        Self { keep }
    }

    /// Keeps every TCP/UDP event (pre-filter disabled; only the rules decide).
    pub fn keep_all() -> Self {
        Self { keep: [[u16::MAX; 2]; 3] }
    }

    /// Event types some rule path can log: the multicast groups to join.
    pub fn kinds(&self) -> Vec<EventType> {
        KINDS.iter().copied().filter(|&k| self.wants_kind(k)).collect()
    }

    /// The kernel-side policy value.
    pub fn policy(&self, wakeup_bytes: u32) -> Policy {
        // Row by row: `keep[kind * 2 + protocol]`.
        let mut keep = [0u32; 6];
        for (cell, &mask) in keep.iter_mut().zip(self.keep.iter().flatten()) {
            *cell = u32::from(mask);
        }
        Policy { keep, wakeup_bytes, _pad: 0 }
    }

    /// The kernel program's first check, in userspace (netlink source): the
    /// class mask kept for this type and protocol, or DropProtocol.
    pub fn row(&self, kind: EventType, proto: u8) -> Result<u16, Counter> {
        let p = conntrackd_common::protocol_index(proto).ok_or(Counter::DropProtocol)?;
        match usize::try_from(p).map_or(0, |p| self.mask(kind, p)) {
            0 => Err(Counter::DropProtocol),
            row => Ok(row),
        }
    }

    /// The kernel program's class checks on a row from [`Prefilter::row`]:
    /// source class, then destination class, with the same outcome counters.
    pub fn classes(row: u16, src: IpAddr, dst: IpAddr) -> Result<(), Counter> {
        let dsts = (row >> (class_bit(NetworkClass::of(src)) * 4)) & 0xf;
        if dsts == 0 {
            return Err(Counter::DropSrcClass);
        }
        if dsts & (1 << class_bit(NetworkClass::of(dst))) == 0 {
            return Err(Counter::DropDstClass);
        }
        Ok(())
    }

    /// True if some event of this type may be kept.
    pub fn wants_kind(&self, kind: EventType) -> bool {
        self.keep.get(usize::from(kind_bit(kind))).is_some_and(|row| row.iter().any(|&m| m != 0))
    }

    /// The class mask kept for the type and the protocol's index (0 TCP, 1
    /// UDP); none for any other index.
    fn mask(&self, kind: EventType, protocol: usize) -> u16 {
        self.keep.get(usize::from(kind_bit(kind))).and_then(|row| row.get(protocol)).copied().unwrap_or(0)
    }

    /// The kernel's decision for a concrete event, in userspace (tests and fuzzing check soundness with it).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn keeps(&self, ev: &crate::event::Event) -> bool {
        let src = class_bit(NetworkClass::of(ev.orig.src));
        let dst = class_bit(NetworkClass::of(ev.orig.dst));
        let mask = self.mask(ev.kind, usize::from(protocol_bit(ev.protocol)));
        mask & (1 << (src * 4 + dst)) != 0
    }
}

/// Walks the rules in order for one combination: true if some event of it can be logged.
fn may_log(rules: &Rules, combo: &Combo) -> bool {
    for rule in &rules.rules {
        match (eval(&rule.expr, combo), rule.action) {
            (Tri::True, action) => return action == Action::Log,
            (Tri::Unknown, Action::Log) => return true,
            (Tri::Unknown, Action::Drop) | (Tri::False, _) => {}
        }
    }
    true
}

fn eval(expr: &Expr, c: &Combo) -> Tri {
    match expr {
        Expr::Const(b) => Tri::from(*b),
        Expr::Not(e) => eval(e, c).not(),
        // Kleene logic: one false operand decides an `and`, one true an `or`.
        Expr::And(all) => all.iter().fold(Tri::True, |acc, e| match (acc, eval(e, c)) {
            (Tri::False, _) | (_, Tri::False) => Tri::False,
            (Tri::True, Tri::True) => Tri::True,
            _ => Tri::Unknown,
        }),
        Expr::Or(any) => any.iter().fold(Tri::False, |acc, e| match (acc, eval(e, c)) {
            (Tri::True, _) | (_, Tri::True) => Tri::True,
            (Tri::False, Tri::False) => Tri::False,
            _ => Tri::Unknown,
        }),
        Expr::Type(set) => Tri::from(set.has(c.kind)),
        Expr::Protocol(set) => Tri::from(set.has(c.protocol)),
        Expr::Network(side, set) => Tri::from(set.has(if *side == Side::Source { c.src } else { c.dst })),
        Expr::Address(side, cidrs, _) => {
            let possible = |class: u8| cidrs.iter().any(|cidr| cidr_classes(cidr) & (1 << class) != 0);
            let hit = match side {
                Side::Source => possible(c.src),
                Side::Destination => possible(c.dst),
                Side::Either => possible(c.src) || possible(c.dst),
            };
            if hit {
                Tri::Unknown
            } else {
                Tri::False
            }
        }
        Expr::Port(_, set) if set.0.is_empty() => Tri::False,
        Expr::Port(_, set) if set.0.iter().any(|&(lo, hi)| lo == 0 && hi == 65535) => Tri::True,
        Expr::If(abc) => {
            let [cond, a, b] = &**abc;
            match eval(cond, c) {
                Tri::True => eval(a, c),
                Tri::False => eval(b, c),
                // Not `a` even when both branches agree: a CEL condition may fail.
                Tri::Unknown => Tri::Unknown,
            }
        }
        // A CEL subtree may be true, false or fail (the rule does not match): unknown.
        Expr::Port(..) | Expr::Text(..) | Expr::Cel(_) => Tri::Unknown,
    }
}

/// Bits (by class) of the classes a prefix has addresses in. A prefix inside
/// a class prefix has only that class; any other prefix has public addresses
/// plus the classes of the class prefixes it contains.
fn cidr_classes(cidr: &Cidr) -> u8 {
    let mut bits = 0u8;
    for p in PREFIXES {
        let class = Cidr { bits: addr_bits(std::net::IpAddr::V6(p.addr)), len: p.len };
        if cidr.len >= class.len && class.contains(cidr.bits) {
            return 1 << class_bit(p.class);
        }
        if class.len >= cidr.len && cidr.contains(class.bits) {
            bits |= 1 << class_bit(p.class);
        }
    }
    bits | 1 << class_bit(NetworkClass::Public)
}

impl fmt::Display for Prefilter {
    /// One line per group of (types × protocols) sharing the same classes,
    /// e.g. "NEW,UPDATE,DESTROY × TCP × src any × dst PUBLIC".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut groups: Vec<(u16, Vec<EventType>, Protocol)> = Vec::new();
        for proto in PROTOCOLS {
            for kind in KINDS {
                let mask = self.mask(kind, usize::from(protocol_bit(proto)));
                match groups.iter_mut().find(|(m, _, p)| *m == mask && *p == proto) {
                    Some(group) => group.1.push(kind),
                    None => groups.push((mask, vec![kind], proto)),
                }
            }
        }
        let lines: Vec<String> = groups
            .iter()
            .filter(|(mask, ..)| *mask != 0)
            .flat_map(|(mask, kinds, proto)| {
                let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                classes(*mask).into_iter().map(move |c| format!("{} × {} × {c}", kinds.join(","), proto.as_str()))
            })
            .collect();
        if lines.is_empty() {
            return f.write_str("kernel keeps: nothing (every event is dropped in the kernel)");
        }
        write!(f, "kernel keeps: {}", lines.join("; "))
    }
}

/// "src S × dst D" parts covering a 16-bit class mask.
fn classes(mask: u16) -> Vec<String> {
    let names = |bits: u16| -> String {
        if bits == 0xf {
            return "any".into();
        }
        let n: Vec<&str> = NetworkClass::ALL.iter().filter(|c| bits & (1 << class_bit(**c)) != 0).map(|c| c.as_str()).collect();
        n.join(",")
    };
    let rows: Vec<u16> = (0..4).map(|src| (mask >> (src * 4)) & 0xf).collect();
    let mut parts: Vec<(u16, u16)> = Vec::new(); // (src bits, dst bits)
    for (src, &dsts) in rows.iter().enumerate().filter(|(_, d)| **d != 0) {
        match parts.iter_mut().find(|(_, d)| *d == dsts) {
            Some(part) => part.0 |= 1 << src,
            None => parts.push((1 << src, dsts)),
        }
    }
    parts.into_iter().map(|(s, d)| format!("src {} × dst {}", names(s), names(d))).collect()
}
