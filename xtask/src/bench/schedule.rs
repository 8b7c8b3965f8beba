//! Groups the repeated runs of each consumer, mode and rate and folds each
//! group into its median ([`super::median::fold`]), keeping the order in
//! which the groups first ran.
use super::{median, report::RunResult};

/// One folded result per (mode, rate, consumer), in first-run order.
pub(crate) fn fold_all(samples: &[RunResult]) -> Vec<RunResult> {
    let mut groups: Vec<Vec<RunResult>> = Vec::new();
    for r in samples {
        match groups.iter_mut().find(|g| same(&g[0], r)) {
            Some(g) => g.push(r.clone()),
            None => groups.push(vec![r.clone()]),
        }
    }
    groups.iter().map(|g| median::fold(g)).collect()
}

fn same(a: &RunResult, b: &RunResult) -> bool {
    a.consumer == b.consumer && a.mode == b.mode && a.rate == b.rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_consumer_mode_and_rate() {
        let run = |consumer: &'static str, cpu: f64| RunResult { consumer, mode: "mixed", rate: "10k/s".into(), cpu_s_per_100k: cpu, ..RunResult::default() };
        let folded = fold_all(&[run("a", 1.0), run("b", 5.0), run("a", 3.0), run("b", 7.0), run("a", 2.0)]);
        assert_eq!(folded.len(), 2);
        assert_eq!((folded[0].consumer, folded[0].cpu_s_per_100k, folded[0].repeats), ("a", 2.0, 3));
        assert_eq!((folded[1].consumer, folded[1].cpu_s_per_100k), ("b", 6.0));
    }
}
