//! Rule-evaluation throughput on one thread: runs conntrackd's `rules` bench
//! binary ([`micro`]: `cargo bench -p conntrackd --bench rules`) on a
//! realistic 10-rule list, on a list using the rest of CEL (string methods,
//! macros, conversions: the interpreter's share) and on the single rule
//! `log any`, interleaved in the same invocation, and parses its
//! `rules set=...` lines.
use std::{collections::BTreeMap, path::Path};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::micro;

/// A realistic list: drops for addresses, CIDRs and ports, type, protocol
/// and network conditions, a CEL rule, the default log rule, `drop any`.
pub(crate) const REALISTIC: [&str; 10] = [
    "drop destination address 192.0.2.1,198.51.100.0/24",
    "drop source address 10.66.0.0/16",
    "drop destination port 5353",
    "drop on port 6000-6010",
    "drop type UPDATE",
    "drop protocol UDP and destination network LOCAL",
    "drop source network MULTICAST or destination network MULTICAST",
    "log event.type == \"NEW\" && in_cidr(destination.address, \"10.1.0.0/16\") && in_range(destination.port, 1, 1023)",
    "log protocol TCP and destination network PUBLIC",
    "drop any",
];
/// CEL beyond the fast tree's shapes: string methods, `in` lists, macros,
/// `size()`, conversions, two variables compared, `?:`.
pub(crate) const FULL_CEL: [&str; 8] = [
    "drop destination.port in [53, 5353, 6000]",
    "drop process.comm.startsWith(\"apt\") || process.exe.matches(\"^/usr/lib/\")",
    "drop [\"192.0.2.0/24\", \"198.51.100.0/24\"].exists(net, in_cidr(destination.address, net))",
    "drop size(process.user) > 8",
    "drop source.port < 1024 && source.port < destination.port",
    "log protocol == \"TCP\" ? is_network(destination.address, \"PUBLIC\") : destination.port == 53",
    "log string(destination.port).endsWith(\"443\") && event.type == \"NEW\"",
    "drop any",
];
pub(crate) const BASELINE: [&str; 1] = ["log any"];
/// Evaluations per second the realistic list must reach on one core.
pub(crate) const TARGET_PER_S: f64 = 10e6;

/// How long to measure: passes over the bench's 10-event mix, and repetitions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Effort {
    pub rounds: u32,
    pub repeats: u32,
}

/// One rule list's figures over the repetitions.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SetResult {
    pub name: String,
    pub rules: Vec<String>,
    pub evaluations_per_run: u64,
    /// Evaluations per second of each repetition, in order.
    pub per_s: Vec<f64>,
    pub best_per_s: f64,
    pub median_per_s: f64,
    /// Events the list logged per run (a sanity figure: the work was done).
    pub logged_per_run: u64,
}

/// The rule benchmark's outcome.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RulesResult {
    pub realistic: SetResult,
    pub full_cel: SetResult,
    pub baseline: SetResult,
    pub rounds: u32,
    pub repeats: u32,
}

impl RulesResult {
    /// Realistic list / `log any`, best against best.
    pub fn ratio(&self) -> f64 {
        self.realistic.best_per_s / self.baseline.best_per_s.max(f64::MIN_POSITIVE)
    }
}

/// Builds and runs the bench binary from the workspace at `root`.
pub(crate) fn run(root: &Path, effort: Effort) -> Result<RulesResult> {
    let mut args = vec![effort.rounds.to_string(), effort.repeats.to_string()];
    for (name, rules) in [("realistic", &REALISTIC[..]), ("full-cel", &FULL_CEL[..]), ("baseline", &BASELINE[..])] {
        args.extend(["--set".to_string(), name.to_string()]);
        args.extend(rules.iter().map(ToString::to_string));
    }
    let stdout = micro::run(root, "rules", &args)?;
    let mut sets = parse(&stdout)?;
    let mut take = |name: &str, rules: &[&str]| -> Result<SetResult> {
        let runs = sets.remove(name).with_context(|| format!("the rules bench printed no line for set {name}:\n{stdout}"))?;
        Ok(summarise(name, rules, &runs))
    };
    let realistic = take("realistic", &REALISTIC)?;
    let full_cel = take("full-cel", &FULL_CEL)?;
    let baseline = take("baseline", &BASELINE)?;
    Ok(RulesResult { realistic, full_cel, baseline, rounds: effort.rounds, repeats: effort.repeats })
}

/// One `rules set=NAME rules=N evaluations=E seconds=S logged=L` line.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Line {
    evaluations: u64,
    seconds: f64,
    logged: u64,
}

/// The measurement lines per set name, in order; other lines are ignored.
fn parse(stdout: &str) -> Result<BTreeMap<String, Vec<Line>>> {
    let mut sets: BTreeMap<String, Vec<Line>> = BTreeMap::new();
    for line in stdout.lines().filter(|l| l.starts_with("rules ")) {
        let fields: BTreeMap<&str, &str> = line.split_whitespace().skip(1).filter_map(|t| t.split_once('=')).collect();
        let field = |key: &str| fields.get(key).copied().with_context(|| format!("no {key}= in the rules bench line {line:?}"));
        let number = |key: &str| -> Result<f64> { field(key)?.parse().with_context(|| format!("{key}= is not a number in {line:?}")) };
        let seconds = number("seconds")?;
        if seconds.is_nan() || seconds <= 0.0 {
            bail!("the rules bench measured no time in {line:?}");
        }
        let parsed = Line { evaluations: number("evaluations")? as u64, seconds, logged: number("logged")? as u64 };
        sets.entry(field("set")?.to_string()).or_default().push(parsed);
    }
    Ok(sets)
}

fn summarise(name: &str, rules: &[&str], runs: &[Line]) -> SetResult {
    let per_s: Vec<f64> = runs.iter().map(|r| r.evaluations as f64 / r.seconds).collect();
    let mut sorted = per_s.clone();
    sorted.sort_by(f64::total_cmp);
    SetResult {
        name: name.to_string(),
        rules: rules.iter().map(ToString::to_string).collect(),
        evaluations_per_run: runs.first().map_or(0, |r| r.evaluations),
        best_per_s: sorted.last().copied().unwrap_or(0.0),
        median_per_s: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        per_s,
        logged_per_run: runs.first().map_or(0, |r| r.logged),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_grouped_by_set() {
        let out = "noise\nrules set=a rules=10 evaluations=100 seconds=0.5 logged=7\nrules set=b rules=1 evaluations=100 seconds=0.25 logged=100\n\
                   rules set=a rules=10 evaluations=100 seconds=0.25 logged=7\n";
        let sets = parse(out).unwrap();
        assert_eq!(sets["a"].len(), 2);
        let a = summarise("a", &["x"], &sets["a"]);
        assert_eq!((a.best_per_s, a.per_s[0], a.logged_per_run), (400.0, 200.0, 7));
        assert_eq!(summarise("b", &["y"], &sets["b"]).median_per_s, 400.0);
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        assert!(parse("rules set=a evaluations=x seconds=1 logged=0").is_err());
        assert!(parse("rules set=a evaluations=1 seconds=0 logged=0").is_err());
        assert!(parse("rules evaluations=1 seconds=1 logged=0").is_err());
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn the_realistic_list_mixes_both_languages() {
        assert_eq!(REALISTIC.len(), 10);
        assert!(REALISTIC.iter().any(|r| r.contains("&&")));
        assert_eq!(REALISTIC.last(), Some(&"drop any"));
    }
}
