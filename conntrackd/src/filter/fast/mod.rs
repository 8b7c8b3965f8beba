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

use self::node::{Facts, Needs, Node};
use super::{
    ast::{Action, Expr, Side},
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

/// One rule, as the loop needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Compiled {
    /// The combinations where the rule's value is known, and where it is true.
    known: u128,
    value: u128,
    log: bool,
    fallible: bool,
    node: Node,
}

/// A rule list ready for the loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Program {
    rules: Vec<Compiled>,
    needs: Needs,
}

impl Program {
    pub fn new(rules: &[Rule]) -> Self {
        let mut needs = Needs::default();
        for rule in rules {
            reads_classes(&rule.expr, &mut needs);
        }
        let rules = rules
            .iter()
            .map(|rule| {
                let (mut known, mut value) = (0u128, 0u128);
                for kind in 0..3 {
                    for protocol in 0..2 {
                        for src in 0..4 {
                            for dst in 0..4 {
                                let bit = combo(kind, protocol, src, dst);
                                match tri(&rule.expr, &Combo { kind, protocol, src, dst }) {
                                    Some(true) => (known, value) = (known | bit, value | bit),
                                    Some(false) => known |= bit,
                                    None => {}
                                }
                            }
                        }
                    }
                }
                Compiled { known, value, log: rule.action == Action::Log, fallible: rule.fallible, node: Node::of(&rule.expr) }
            })
            .collect();
        Program { rules, needs }
    }

    /// Whether the event is logged, and the index of the rule that decided;
    /// `failed` hears of each rule that failed on it (and so did not match).
    #[inline]
    pub fn decide(&self, ev: &Event, mut failed: impl FnMut(usize, &EvalError)) -> (bool, Option<usize>) {
        let facts = Facts::new(ev, self.needs);
        let bit = combo(facts.kind, facts.protocol, facts.src_class, facts.dst_class);
        for (i, rule) in self.rules.iter().enumerate() {
            let hit = if rule.known & bit != 0 {
                rule.value & bit != 0
            } else if !rule.fallible {
                rule.node.matches(&facts)
            } else {
                rule.node.eval(&facts).unwrap_or_else(|err| {
                    failed(i, &err);
                    false
                })
            };
            if hit {
                return (rule.log, Some(i));
            }
        }
        (true, None)
    }
}

#[cfg(test)]
impl Program {
    /// Every rule's node evaluated on the event, whatever is known (for the recursion tests).
    pub fn eval_each(&self, ev: &Event) -> Vec<Result<bool, EvalError>> {
        let facts = Facts::new(ev, Needs { src_class: true, dst_class: true });
        self.rules.iter().map(|rule| if rule.fallible { rule.node.eval(&facts) } else { Ok(rule.node.matches(&facts)) }).collect()
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
