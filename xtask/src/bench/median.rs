//! Several runs of one consumer, mode and rate folded into one
//! [`RunResult`]: every figure is the median of the runs, and its spread
//! (minimum and maximum) is kept beside it in `RunResult::spread`.
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::report::RunResult;

/// The smallest and largest value of a figure over the runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Spread {
    pub min: f64,
    pub max: f64,
}

/// The median (the mean of the middle two for an even count) and the spread of `values`.
pub(crate) fn median(values: impl IntoIterator<Item = f64>) -> (f64, Spread) {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    let Some((&min, &max)) = v.first().zip(v.last()) else { return (0.0, Spread { min: 0.0, max: 0.0 }) };
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 };
    (median, Spread { min, max })
}

/// Sets `$out.$field` to the median of `$runs`' and records its spread.
macro_rules! fold {
    ($out:ident, $runs:ident; $($field:ident),+) => {
        $(
            let (m, spread) = median($runs.iter().map(|r| r.$field as f64));
            $out.$field = m as _;
            $out.spread.insert(stringify!($field).to_string(), spread);
        )+
    };
}

/// Folds the runs of one consumer, mode and rate (at least one). Fields
/// that are not figures (delivered by destination, labels) come from the
/// middle run.
pub(crate) fn fold(runs: &[RunResult]) -> RunResult {
    let mut out = runs[runs.len() / 2].clone();
    out.repeats = runs.len();
    out.spread.clear();
    fold!(out, runs; achieved_rate, generation_s, packets_sent, table_entries, public_entries, generated, expected, delivered,
        loss_pct, cpu_s, cpu_s_per_100k, cpu_s_per_100k_delivered, producer_cpu_s, producer_cpu_s_per_100k, startup_cpu_s, user_s, system_s,
        peak_rss_mib, ru_maxrss_mib, send_retries, exit_after_s, filter_runs, filter_run_time_ns, filter_ns_per_run, filter_ns_per_event);
    out.exited_early = runs.iter().any(|r| r.exited_early);
    let keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.counters.keys()).collect();
    out.counters = keys.into_iter().map(|k| (k.clone(), median(runs.iter().map(|r| r.counters.get(k).copied().unwrap_or(0) as f64)).0 as u64)).collect();
    out.settled = runs.iter().all(|r| r.settled);
    let exits: BTreeSet<&str> = runs.iter().map(|r| r.exit.as_str()).collect();
    out.exit = exits.into_iter().collect::<Vec<_>>().join(", ");
    out.each = runs.iter().map(|r| Each { cpu_s_per_100k: r.cpu_s_per_100k, loss_pct: r.loss_pct, achieved_rate: r.achieved_rate }).collect();
    out
}

/// Each run's main figures, in the order they ran.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Each {
    pub cpu_s_per_100k: f64,
    pub loss_pct: f64,
    pub achieved_rate: f64,
}

/// `median (min–max)` with `decimals`, or just the median for one run.
pub(crate) fn show(r: &RunResult, field: &str, value: f64, decimals: usize) -> String {
    match r.spread.get(field) {
        Some(s) if r.repeats > 1 => format!("{value:.decimals$} ({:.decimals$}–{:.decimals$})", s.min, s.max),
        _ => format!("{value:.decimals$}"),
    }
}

/// Empty spread map, for [`RunResult`]'s constructor.
pub(crate) fn none() -> BTreeMap<String, Spread> {
    BTreeMap::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        assert_eq!(median([3.0, 1.0, 2.0]), (2.0, Spread { min: 1.0, max: 3.0 }));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]).0, 2.5);
    }

    #[test]
    fn fold_takes_the_median_of_every_figure() {
        let run = |cpu: f64, delivered: u64| RunResult { cpu_s_per_100k: cpu, delivered, exit: "exit code 0".into(), settled: true, ..RunResult::default() };
        let r = fold(&[run(0.3, 10), run(0.1, 30), run(0.2, 20)]);
        assert_eq!((r.cpu_s_per_100k, r.delivered, r.repeats), (0.2, 20, 3));
        assert_eq!(r.spread["cpu_s_per_100k"], Spread { min: 0.1, max: 0.3 });
        assert_eq!(r.exit, "exit code 0");
        assert_eq!(r.each.len(), 3);
    }
}
