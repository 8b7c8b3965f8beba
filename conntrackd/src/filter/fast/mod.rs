//! The rule list as first-match evaluation runs it on every event.
//!
//! Two things make it fast, neither changing a verdict:
//! - What every rule reads is read once per event ([`Facts`]: the addresses
//!   in the IPv6 space, the network classes, only when some rule tests one).
//! - Each rule's value is worked out at load for every (type, protocol,
//!   source class, destination class) combination, in three-valued logic
//!   as the kernel pre-filter reasons: where it is known (`drop type UPDATE`,
//!   `log any`, `protocol UDP and destination network LOCAL` everywhere,
//!   `event.type == "NEW" && …` on the other types) the loop tests one bit;
//!   only where it depends on addresses, ports, text or CEL is the tree
//!   (`node.rs`) evaluated. A value is known only where evaluating could not
//!   fail either (CEL's `false && error` is false), so the per-rule error
//!   counts are those of evaluating every tree.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
mod class;
mod node;
#[cfg(test)]
mod tests;

use self::{
    class::class_of,
    node::{Facts, Node},
};
use super::{
    ast::{addr_bits, kind_bit, protocol_bit, Action, Expr, Side},
    cel::EvalError,
    Rule,
};
use crate::event::Event;

/// The combinations: 3 types × 2 protocols × 4 × 4 classes, one bit each.
const COMBOS: u32 = 3 * 2 * 4 * 4;
const _: () = assert!(COMBOS <= u128::BITS);

/// The bit of an event's combination.
#[inline]
fn combo(kind: u8, protocol: u8, src: u8, dst: u8) -> u128 {
    1u128.checked_shl(((u32::from(kind) * 2 + u32::from(protocol)) * 4 + u32::from(src)) * 4 + u32::from(dst)).unwrap_or(0)
}

/// Which sides' network classes some rule reads (the others are not computed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Needs {
    src_class: bool,
    dst_class: bool,
}

/// The combinations where a rule's value is known, and where it is true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    known: u128,
    value: u128,
}

impl Head {
    /// The 16 bits of `mask` of a (type, protocol) pair.
    fn word(&self, mask: u128, pair: u32) -> u16 {
        u16::try_from(mask.checked_shr(16 * pair).unwrap_or(0) & 0xffff).unwrap_or(0)
    }
}

/// The rest of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tail {
    log: bool,
    fallible: bool,
    node: Node,
}

/// A rule list ready for the loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Program {
    /// Per (type, protocol) pair (`kind_bit * 2 + protocol_bit`), each
    /// rule's known and true bits over the 16 class pairs (`src * 4 + dst`):
    /// the loop reads 4 bytes a rule.
    columns: [Vec<(u16, u16)>; 6],
    tails: Vec<Tail>,
    needs: Needs,
}

impl Program {
    pub fn new(rules: &[Rule]) -> Self {
        let mut needs = Needs::default();
        for rule in rules {
            reads_classes(&rule.expr, &mut needs);
        }
        let heads: Vec<Head> = rules.iter().map(|rule| head(&rule.expr)).collect();
        let column = |pair: u32| heads.iter().map(|h| (h.word(h.known, pair), h.word(h.value, pair))).collect();
        let columns = [column(0), column(1), column(2), column(3), column(4), column(5)];
        let tails = rules.iter().map(|rule| Tail { log: rule.action == Action::Log, fallible: rule.fallible, node: Node::of(&rule.expr) }).collect();
        Program { columns, tails, needs }
    }

    /// The index of the rule that decides the event (the first that
    /// matches), if any; `failed` hears of each rule that failed on it (and
    /// so did not match). While the rules' values are known for the event's
    /// combination this loop decides; at the first that is not it hands over
    /// to [`Program::decide_from`], which reads the event's facts.
    #[inline]
    pub fn decide(&self, ev: &Event, mut failed: impl FnMut(usize, &EvalError)) -> Option<usize> {
        let class = |needed: bool, ip| if needed { class_of(addr_bits(ip)) } else { 0 };
        let classes = (class(self.needs.src_class, ev.orig.src), class(self.needs.dst_class, ev.orig.dst));
        let pair = usize::from(kind_bit(ev.kind) * 2 + protocol_bit(ev.protocol));
        let column = self.columns.get(pair).map_or(&[][..], Vec::as_slice);
        let bit = 1u16.checked_shl(u32::from(classes.0) * 4 + u32::from(classes.1)).unwrap_or(0);
        for (i, &(known, value)) in column.iter().enumerate() {
            if known & bit == 0 {
                return self.decide_from(i, ev, classes, column, bit, &mut failed);
            }
            if value & bit != 0 {
                return Some(i);
            }
        }
        None
    }

    /// Whether rule `i` logs (what a matching rule does).
    #[inline]
    pub fn logs(&self, i: usize) -> bool {
        self.tails.get(i).is_some_and(|t| t.log)
    }

    /// [`Program::decide`] from rule `start` on, evaluating the trees where the value is not known.
    #[inline(never)]
    fn decide_from(
        &self,
        start: usize,
        ev: &Event,
        classes: (u8, u8),
        column: &[(u16, u16)],
        bit: u16,
        failed: &mut dyn FnMut(usize, &EvalError),
    ) -> Option<usize> {
        let facts = Facts::new(ev, classes);
        for (i, (&(known, value), tail)) in column.iter().zip(&self.tails).enumerate().skip(start) {
            let hit = if known & bit != 0 {
                value & bit != 0
            } else if !tail.fallible {
                tail.node.matches(&facts)
            } else {
                tail.node.eval(&facts).unwrap_or_else(|err| {
                    failed(i, &err);
                    false
                })
            };
            if hit {
                return Some(i);
            }
        }
        None
    }
}

/// Where the tree's value is known, and true, over every combination.
fn head(e: &Expr) -> Head {
    let mut h = Head { known: 0, value: 0 };
    for kind in 0..3 {
        for protocol in 0..2 {
            for src in 0..4 {
                for dst in 0..4 {
                    let bit = combo(kind, protocol, src, dst);
                    match tri(e, &Combo { kind, protocol, src, dst }) {
                        Some(true) => (h.known, h.value) = (h.known | bit, h.value | bit),
                        Some(false) => h.known |= bit,
                        None => {}
                    }
                }
            }
        }
    }
    h
}

#[cfg(test)]
impl Program {
    /// Every rule's node evaluated on the event, whatever is known (for the recursion tests).
    pub fn eval_each(&self, ev: &Event) -> Vec<Result<bool, EvalError>> {
        let facts = Facts::new(ev, (class_of(addr_bits(ev.orig.src)), class_of(addr_bits(ev.orig.dst))));
        self.tails.iter().map(|rule| if rule.fallible { rule.node.eval(&facts) } else { Ok(rule.node.matches(&facts)) }).collect()
    }
}

/// Notes which sides' classes a tree reads (as `Node::of` maps them).
fn reads_classes(e: &Expr, needs: &mut Needs) {
    match e {
        Expr::Network(Side::Source, _) => needs.src_class = true,
        Expr::Network(..) => needs.dst_class = true,
        Expr::Not(a) => reads_classes(a, needs),
        Expr::And(v) | Expr::Or(v) => v.iter().for_each(|a| reads_classes(a, needs)),
        Expr::If(abc) => abc.iter().for_each(|a| reads_classes(a, needs)),
        _ => {}
    }
}

/// One combination, as bits (`kind_bit`, `protocol_bit`, `class_bit`).
struct Combo {
    kind: u8,
    protocol: u8,
    src: u8,
    dst: u8,
}

/// The tree's value on every event of the combination, if it is the same
/// for all of them and evaluating cannot fail on any; `None` otherwise.
fn tri(e: &Expr, c: &Combo) -> Option<bool> {
    match e {
        Expr::Const(b) => Some(*b),
        Expr::Not(a) => tri(a, c).map(|v| !v),
        Expr::And(all) => decisive(all, c, false),
        Expr::Or(any) => decisive(any, c, true),
        Expr::If(abc) => {
            let [cond, a, b] = &**abc;
            match tri(cond, c) {
                Some(true) => tri(a, c),
                Some(false) => tri(b, c),
                // Either branch gives the same, unless the condition fails.
                None if !cond.fallible() => tri(a, c).filter(|&v| tri(b, c) == Some(v)),
                None => None,
            }
        }
        Expr::Type(set) => Some(set.has(c.kind)),
        Expr::Protocol(set) => Some(set.has(c.protocol)),
        Expr::Network(Side::Source, set) => Some(set.has(c.src)),
        Expr::Network(_, set) => Some(set.has(c.dst)),
        Expr::Address(..) | Expr::Port(..) | Expr::Text(..) | Expr::Cel(_) => None,
    }
}

/// `and` (`decisive` false) or `or` (true): one known decisive operand
/// decides (over failures of the others, as in CEL); all known, the other value.
fn decisive(operands: &[Expr], c: &Combo, decisive: bool) -> Option<bool> {
    let mut all_known = true;
    for e in operands {
        match tri(e, c) {
            Some(v) if v == decisive => return Some(decisive),
            Some(_) => {}
            None => all_known = false,
        }
    }
    all_known.then_some(!decisive)
}
