//! A structure-aware rule generator: the fuzzer's bytes choose abstract rule
//! trees ([`Node`]), each written both in the keyword language and in CEL.
//! `Parens` and `Repeat` turn a few bytes into rules that nest hundreds of
//! levels or run past the length limit, which byte-level mutation of short
//! inputs never reaches. While writing, the renderer counts nesting as the
//! parsers do, so it knows which rules must compile and which must fail with
//! which limit at which column.
use arbitrary::{Result, Unstructured};

use super::render::{Out, Prec};
use crate::filter::{Prefilter, RuleError, Rules, MAX_NESTING};

const TYPES: [&str; 3] = ["NEW", "UPDATE", "DESTROY"];
const PROTOCOLS: [&str; 2] = ["TCP", "UDP"];
const CLASSES: [&str; 4] = ["LOCAL", "PRIVATE", "PUBLIC", "MULTICAST"];
const ADDRESSES: [&str; 17] = [
    "8.8.8.8",
    "10.0.0.0/8",
    "10.0.0.0/7",
    "0.0.0.0/0",
    "127.0.0.1",
    "169.254.0.0/16",
    "224.0.0.0/3",
    "172.16.0.0/11",
    "192.168.1.1",
    "203.0.113.7",
    "fd00::/8",
    "fe80::1",
    "::/0",
    "2001:db8::/32",
    "::ffff:10.0.0.0/104",
    "ff02::1",
    "::1",
];
const PORTS: [(u16, u16); 10] = [(0, 0), (22, 22), (53, 53), (80, 80), (443, 443), (0, 1023), (1024, 65535), (0, 65535), (8000, 8099), (65535, 65535)];
/// (keyword field, CEL variable, values)
pub(super) const PROCESS: [(&str, &str, [&str; 2]); 3] =
    [("comm", "process.comm", ["curl", "sshd"]), ("user", "process.user", ["root", "nobody"]), ("exe", "process.exe", ["/usr/bin/curl", "/usr/sbin/sshd"])];

/// An abstract condition, the same in both languages.
#[derive(Debug, Clone)]
pub(super) enum Pred {
    Any,
    Type(Vec<&'static str>),
    Protocol(Vec<&'static str>),
    Network(Dir, Vec<&'static str>),
    Address(Dir, Vec<&'static str>, Option<Vec<(u16, u16)>>),
    Port(Dir, Vec<(u16, u16)>),
    OnPort(Vec<(u16, u16)>),
    Process(usize, Vec<&'static str>),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Dir {
    Source,
    Destination,
}

/// An abstract rule tree.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Pred(Pred),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    /// `n` redundant parentheses: deep nesting from a few bytes.
    Parens(usize, Box<Node>),
    /// The node `times` times, joined by `or` (else `and`): long rules from a few bytes.
    Repeat {
        times: usize,
        or: bool,
        node: Box<Node>,
    },
}

/// Generated rules, each written in both languages.
#[derive(Debug)]
pub(super) struct RuleSet {
    keyword: Vec<Written>,
    cel: Vec<Written>,
}

/// One rule as text, with what the parser must answer.
#[derive(Debug)]
pub(super) struct Written {
    pub(super) text: String,
    /// Column and message of the expected error; None = it must compile.
    pub(super) error: Option<(usize, String)>,
}

impl RuleSet {
    pub(super) fn generate(u: &mut Unstructured<'_>) -> Result<Self> {
        let (mut keyword, mut cel) = (Vec::new(), Vec::new());
        for _ in 0..u.int_in_range(1..=4)? {
            let action = *u.choose(&["log", "drop", "LOG", "Drop"])?;
            let mut budget = 24;
            let node = node(u, &mut budget)?;
            let mut kw = Out::new(action, u.arbitrary()?);
            kw.keyword(&node, Prec::Or, u)?;
            keyword.push(kw.finish());
            let mut c = Out::new(action, false);
            c.cel(&node, Prec::Or, u)?;
            cel.push(c.finish());
        }
        Ok(Self { keyword, cel })
    }

    /// Panics (a finding) when a parser disagrees with the expectation or the two languages disagree.
    pub(super) fn check(&self) {
        let keyword = compile(&self.keyword);
        let cel = compile(&self.cel);
        let (Some(keyword), Some(cel)) = (keyword, cel) else { return };
        let texts: Vec<&str> = self.keyword.iter().chain(&self.cel).map(|w| w.text.as_str()).collect();
        super::check_sound(&keyword, &texts);
        super::check_sound(&cel, &texts);
        for ev in super::sample_events() {
            for (k, c) in keyword.rules.iter().zip(&cel.rules) {
                assert_eq!(k.expr.matches(&ev), c.expr.matches(&ev), "{:?} and {:?} disagree on {ev:?}", short(&k.text), short(&c.text));
            }
        }
        assert_eq!(Prefilter::derive(&keyword), Prefilter::derive(&cel), "kernel tables differ for {:?}", texts.iter().map(|t| short(t)).collect::<Vec<_>>());
    }
}

/// Compiles the list and checks every rule's outcome; the rules if all compiled.
fn compile(list: &[Written]) -> Option<Rules> {
    let texts: Vec<&str> = list.iter().map(|w| w.text.as_str()).collect();
    let want: Vec<(usize, usize, &str)> = list.iter().enumerate().filter_map(|(i, w)| w.error.as_ref().map(|(c, m)| (i + 1, *c, m.as_str()))).collect();
    match Rules::compile(&texts) {
        Ok(rules) => {
            assert!(want.is_empty(), "{:?} compiled, but these rules are past a limit: {want:?}", texts.iter().map(|t| short(t)).collect::<Vec<_>>());
            Some(rules)
        }
        Err(errors) => {
            let got: Vec<(usize, usize, &str)> = errors.0.iter().map(|e: &RuleError| (e.index, e.column, e.message.as_str())).collect();
            assert_eq!(got, want, "{:?}", texts.iter().map(|t| short(t)).collect::<Vec<_>>());
            None
        }
    }
}

/// A rule shortened for a panic message.
fn short(text: &str) -> String {
    if text.len() <= 300 {
        return text.to_string();
    }
    format!("{}… ({} bytes)", &text[..text.floor_char_boundary(300)], text.len())
}

fn node(u: &mut Unstructured<'_>, budget: &mut u32) -> Result<Node> {
    if *budget == 0 || u.is_empty() {
        return pred(u).map(Node::Pred);
    }
    *budget -= 1;
    Ok(match u.int_in_range(0u8..=7)? {
        0..=2 => Node::Pred(pred(u)?),
        3 => Node::Not(Box::new(node(u, budget)?)),
        4 => Node::And(operands(u, budget)?),
        5 => Node::Or(operands(u, budget)?),
        6 => Node::Parens(depth(u)?, Box::new(node(u, budget)?)),
        _ => {
            // Now and then long enough to approach or pass the length limit
            // (writing 64 KiB costs more than parsing it: not too often).
            let times = if u.ratio(1u8, 16)? { u.int_in_range(100..=3000)? } else { u.int_in_range(2..=8)? };
            Node::Repeat { times, or: u.arbitrary()?, node: Box::new(node(u, budget)?) }
        }
    })
}

fn operands(u: &mut Unstructured<'_>, budget: &mut u32) -> Result<Vec<Node>> {
    (0..u.int_in_range(2..=4)?).map(|_| node(u, budget)).collect()
}

/// Parentheses to add: a few, near the limit, or anything up to twice it.
fn depth(u: &mut Unstructured<'_>) -> Result<usize> {
    match u.int_in_range(0u8..=2)? {
        0 => u.int_in_range(1..=8),
        1 => u.int_in_range(MAX_NESTING - 8..=MAX_NESTING + 8),
        _ => u.int_in_range(1..=2 * MAX_NESTING),
    }
}

fn pred(u: &mut Unstructured<'_>) -> Result<Pred> {
    let dir = if u.arbitrary()? { Dir::Source } else { Dir::Destination };
    Ok(match u.int_in_range(0u8..=7)? {
        0 => Pred::Any,
        1 => Pred::Type(some(u, &TYPES)?),
        2 => Pred::Protocol(some(u, &PROTOCOLS)?),
        3 => Pred::Network(dir, some(u, &CLASSES)?),
        4 => {
            let ports = if u.arbitrary()? { Some(ports(u)?) } else { None };
            Pred::Address(dir, some(u, &ADDRESSES)?, ports)
        }
        5 => Pred::Port(dir, ports(u)?),
        6 => Pred::OnPort(ports(u)?),
        _ => {
            let field = u.choose_index(PROCESS.len())?;
            Pred::Process(field, some(u, &PROCESS[field].2)?)
        }
    })
}

/// One to three values of the pool.
fn some<T: Copy>(u: &mut Unstructured<'_>, pool: &[T]) -> Result<Vec<T>> {
    (0..u.int_in_range(1..=3)?).map(|_| u.choose(pool).copied()).collect()
}

fn ports(u: &mut Unstructured<'_>) -> Result<Vec<(u16, u16)>> {
    (0..u.int_in_range(1..=3)?)
        .map(|_| {
            if u.arbitrary()? {
                u.choose(&PORTS).copied()
            } else {
                let (a, b): (u16, u16) = (u.arbitrary()?, u.arbitrary()?);
                Ok((a.min(b), a.max(b)))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random inputs (fixed seed) reach all three outcomes, and each
    /// passes the target's checks: the generator writes what the parsers accept.
    #[test]
    fn random_inputs_reach_every_outcome_and_pass() {
        let mut rng = fastrand::Rng::with_seed(14);
        let (mut compiled, mut too_deep, mut too_long) = (0, 0, 0);
        for _ in 0..200 {
            let data: Vec<u8> = (0..rng.usize(16..512)).map(|_| rng.u8(..)).collect();
            let set = RuleSet::generate(&mut Unstructured::new(&data)).expect("generation never fails on data");
            for w in set.keyword.iter().chain(&set.cel) {
                match &w.error {
                    None => compiled += 1,
                    Some((_, m)) if m.starts_with("nesting") => too_deep += 1,
                    Some(_) => too_long += 1,
                }
            }
            set.check();
        }
        assert!(compiled > 200 && too_deep > 30 && too_long > 20, "compiled {compiled}, too deep {too_deep}, too long {too_long}");
    }
}
