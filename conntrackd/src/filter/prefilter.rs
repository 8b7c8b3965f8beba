//! The kernel pre-filter, derived from the rules and sound by construction:
//! the kernel may drop an event only if no event with the same (type,
//! protocol, source class, destination class) could be logged by the rules.
//!
//! Each rule is evaluated in three-valued logic (true / false / unknown) over
//! each of the 3 × 2 × 4 × 4 combinations, in rule order, exactly as
//! first-match evaluation would run. The table type is the event layer's
//! (`event/prefilter.rs`), so the sources that write it need not know rules.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use super::{
    ast::{addr_bits, Action, Cidr, Expr, Side},
    Rules,
};
use crate::event::{
    network::{NetworkClass, PREFIXES},
    prefilter::{class_bit, kind_bit, protocol_bit, Prefilter, KINDS, PROTOCOLS},
};

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
        Self::from_masks(keep)
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
