//! Figures derived from the runs: conntrackd against `conntrack -E`, the
//! kernel pre-filter on against off, the eBPF source against netlink (each
//! pair on the same load in the same invocation), the highest lossless rate
//! per consumer and mode, and the targets.
use serde::Serialize;

use super::{
    consumer::Kind,
    mode::Mode,
    report::RunResult,
    rules::{self, RulesResult},
};

/// conntrackd must lose nothing at this rate (NEW events per second).
pub(crate) const LOSSLESS_TARGET_RATE: u32 = 50_000;
/// conntrackd's CPU budget per 100k kernel events, seconds.
pub(crate) const CPU_TARGET_S: f64 = 0.15;
/// Mixed load: CPU with the pre-filter / CPU without it must not exceed this.
pub(crate) const PREFILTER_TARGET_RATIO: f64 = 0.2;

/// One consumer against another on the same mode and rate.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Pair {
    pub mode: &'static str,
    pub rate: String,
    pub cpu_s_per_100k: f64,
    pub other_cpu_s_per_100k: f64,
    /// CPU per 100k events, this consumer / the other.
    pub ratio: f64,
    /// Producer CPU (generator thread + `conntrack -F`) per 100k kernel events.
    pub producer_cpu_s_per_100k: f64,
    pub other_producer_cpu_s_per_100k: f64,
    pub loss_pct: f64,
    pub other_loss_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Lossless {
    pub consumer: &'static str,
    pub mode: &'static str,
    pub rate: Option<String>,
    pub achieved_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Target {
    pub what: String,
    pub value: String,
    pub target: String,
    pub met: bool,
}

/// `ours` against `other` for every mode and rate both ran at.
pub(crate) fn pairs(runs: &[RunResult], ours: Kind, other: Kind) -> Vec<Pair> {
    let mine = runs.iter().filter(|r| r.consumer == ours.name());
    mine.filter_map(|r| {
        let o = runs.iter().find(|o| o.consumer == other.name() && o.mode == r.mode && o.rate == r.rate)?;
        Some(Pair {
            mode: r.mode,
            rate: r.rate.clone(),
            cpu_s_per_100k: r.cpu_s_per_100k,
            other_cpu_s_per_100k: o.cpu_s_per_100k,
            ratio: if o.cpu_s_per_100k > 0.0 { r.cpu_s_per_100k / o.cpu_s_per_100k } else { f64::NAN },
            producer_cpu_s_per_100k: r.producer_cpu_s_per_100k,
            other_producer_cpu_s_per_100k: o.producer_cpu_s_per_100k,
            loss_pct: r.loss_pct,
            other_loss_pct: o.loss_pct,
        })
    })
    .collect()
}

/// The fastest run of `kind` in `mode` that lost nothing and was not
/// preceded, in achieved rate, by one that lost events.
pub(crate) fn lossless(runs: &[RunResult], kind: Kind, mode: Mode) -> Lossless {
    let mut mine: Vec<&RunResult> = runs.iter().filter(|r| r.consumer == kind.name() && r.mode == mode.label()).collect();
    mine.sort_by(|a, b| a.achieved_rate.total_cmp(&b.achieved_rate));
    let best = mine.into_iter().take_while(|r| r.expected > 0 && r.delivered >= r.expected).last();
    Lossless { consumer: kind.name(), mode: mode.label(), rate: best.map(|r| r.rate.clone()), achieved_rate: best.map(|r| r.achieved_rate) }
}

/// The targets for conntrackd as configured by default (eBPF, pre-filter on).
pub(crate) fn targets(runs: &[RunResult], prefilter: &[Pair], rules: &RulesResult) -> Vec<Target> {
    let ours: Vec<&RunResult> = runs.iter().filter(|r| r.consumer == Kind::Conntrackd.name()).collect();
    let mut targets = Vec::new();
    for r in ours.iter().filter(|r| r.target_rate == Some(LOSSLESS_TARGET_RATE)) {
        let lost = r.expected.saturating_sub(r.delivered);
        targets.push(Target {
            what: format!("conntrackd loss, {} at {}", r.mode, r.rate),
            value: format!("{lost} events ({:.3} %)", r.loss_pct),
            target: "0".into(),
            met: lost == 0,
        });
    }
    for r in &ours {
        targets.push(Target {
            what: format!("conntrackd CPU per 100k kernel events, {} at {}", r.mode, r.rate),
            value: format!("{:.4} s", r.cpu_s_per_100k),
            target: format!("<= {CPU_TARGET_S} s"),
            met: r.cpu_s_per_100k <= CPU_TARGET_S,
        });
    }
    for p in prefilter.iter().filter(|p| p.mode == Mode::Mixed.label()) {
        targets.push(Target {
            what: format!("CPU pre-filter on / off, {} at {}", p.mode, p.rate),
            value: format!("{:.3}", p.ratio),
            target: format!("<= {PREFILTER_TARGET_RATIO} (1/5)"),
            met: p.ratio <= PREFILTER_TARGET_RATIO,
        });
    }
    targets.extend(peer_targets(runs));
    targets.push(Target {
        what: format!("rule evaluations per second, {} rules, one core", rules.realistic.rules.len()),
        value: format!("{:.1} M/s", rules.realistic.best_per_s / 1e6),
        target: format!(">= {:.0} M/s", rules::TARGET_PER_S / 1e6),
        met: rules.realistic.best_per_s >= rules::TARGET_PER_S,
    });
    targets
}

/// conntrackd (eBPF) at most 1/5 of the CPU per 100k kernel events of the
/// cheaper peer (conntrack -E, ulogd2; the peer's loss is shown beside it:
/// a peer that loses events is cheaper per kernel event because it lost
/// them), and the netlink source no costlier than `conntrack -E` at equal
/// delivered events (CPU per 100k delivered, all-public mode, where both
/// should deliver every event), at each mode and rate.
fn peer_targets(runs: &[RunResult]) -> Vec<Target> {
    let find = |k: Kind, r: &RunResult| runs.iter().find(|o| o.consumer == k.name() && o.mode == r.mode && o.rate == r.rate);
    let mut targets = Vec::new();
    for r in runs.iter().filter(|r| r.consumer == Kind::Conntrackd.name()) {
        let peers = [Kind::ConntrackEvents, Kind::Ulogd].map(|k| find(k, r));
        let Some(best) = peers.iter().flatten().min_by(|a, b| a.cpu_s_per_100k.total_cmp(&b.cpu_s_per_100k)) else { continue };
        let ratio = r.cpu_s_per_100k / best.cpu_s_per_100k;
        targets.push(Target {
            what: format!("CPU per 100k kernel events, conntrackd ebpf / best peer, {} at {}", r.mode, r.rate),
            value: format!("{ratio:.3} (best peer {}, {:.1} % loss)", best.consumer, best.loss_pct),
            target: format!("<= {PEER_TARGET_RATIO} (1/5)"),
            met: ratio <= PEER_TARGET_RATIO,
        });
        if let (Some(netlink), Some(ct)) = (find(Kind::ConntrackdNetlink, r), peers[0]) {
            if r.mode == Mode::AllPublic.label() {
                let ratio = netlink.cpu_s_per_100k_delivered / ct.cpu_s_per_100k_delivered;
                targets.push(Target {
                    what: format!("CPU per 100k delivered events, conntrackd netlink / conntrack -E, {} at {}", r.mode, r.rate),
                    value: format!("{ratio:.3} (losses {:.1} % / {:.1} %)", netlink.loss_pct, ct.loss_pct),
                    target: "<= 1".into(),
                    met: ratio <= 1.0,
                });
            }
        }
    }
    targets
}

/// conntrackd (eBPF) against a peer that logs every event (the Go original,
/// `conntrack -E`) on the same mode and rate. CPU is compared per 100k
/// *delivered* events: a peer that loses events, or exits, is not cheaper
/// for it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PeerRatio {
    pub mode: &'static str,
    pub rate: String,
    pub peer: &'static str,
    pub cpu_s_per_100k_delivered: f64,
    pub peer_cpu_s_per_100k_delivered: f64,
    /// conntrackd / peer.
    pub cpu_ratio: f64,
    pub loss_pct: f64,
    pub peer_loss_pct: f64,
    pub peak_rss_mib: f64,
    pub peer_peak_rss_mib: f64,
    /// conntrackd / peer.
    pub rss_ratio: f64,
    /// "exit code 1 after 51234 events, 1.2 s into the load" when the peer exited by itself.
    pub peer_exited: Option<String>,
}

/// conntrackd ebpf against each of `peers` at every mode and rate both ran at.
pub(crate) fn peer_ratios(runs: &[RunResult], peers: &[Kind]) -> Vec<PeerRatio> {
    let ours = runs.iter().filter(|r| r.consumer == Kind::Conntrackd.name());
    ours.flat_map(|r| {
        peers.iter().filter_map(move |peer| {
            let o = runs.iter().find(|o| o.consumer == peer.name() && o.mode == r.mode && o.rate == r.rate)?;
            Some(PeerRatio {
                mode: r.mode,
                rate: r.rate.clone(),
                peer: o.consumer,
                cpu_s_per_100k_delivered: r.cpu_s_per_100k_delivered,
                peer_cpu_s_per_100k_delivered: o.cpu_s_per_100k_delivered,
                cpu_ratio: r.cpu_s_per_100k_delivered / o.cpu_s_per_100k_delivered,
                loss_pct: r.loss_pct,
                peer_loss_pct: o.loss_pct,
                peak_rss_mib: r.peak_rss_mib,
                peer_peak_rss_mib: o.peak_rss_mib,
                rss_ratio: r.peak_rss_mib / o.peak_rss_mib,
                peer_exited: o.exited_early.then(|| exited(o)),
            })
        })
    })
    .collect()
}

/// How a consumer that exited by itself ended, for the report.
pub(crate) fn exited(r: &RunResult) -> String {
    let runs = if r.repeats > 1 { format!(" (median of {} runs)", r.repeats) } else { String::new() };
    format!("exited by itself ({}) after {} events, {:.1} s into the load{runs}", r.exit, r.delivered, r.exit_after_s)
}

/// conntrackd (eBPF, default rules) CPU / the best peer's must not exceed this.
pub(crate) const PEER_TARGET_RATIO: f64 = 0.2;

#[cfg(test)]
mod tests {
    use super::*;

    fn run(achieved_rate: f64, delivered: u64) -> RunResult {
        let rate = format!("{achieved_rate}");
        RunResult { consumer: Kind::Conntrackd.name(), mode: Mode::Mixed.label(), rate, achieved_rate, expected: 10, delivered, ..RunResult::default() }
    }

    #[test]
    fn lossless_stops_at_the_first_lossy_rate() {
        let runs = [run(100.0, 10), run(300.0, 10), run(200.0, 9)];
        let l = lossless(&runs, Kind::Conntrackd, Mode::Mixed);
        assert_eq!(l.achieved_rate, Some(100.0));
        let l = lossless(&runs[..2], Kind::Conntrackd, Mode::Mixed);
        assert_eq!(l.achieved_rate, Some(300.0));
        assert_eq!(lossless(&runs[2..], Kind::Conntrackd, Mode::Mixed).rate, None);
        assert_eq!(lossless(&runs, Kind::ConntrackEvents, Mode::Mixed).rate, None);
    }

    #[test]
    fn pairs_match_mode_and_rate() {
        let mut other = run(100.0, 10);
        other.consumer = Kind::ConntrackdNoPrefilter.name();
        other.cpu_s_per_100k = 0.2;
        let mut ours = run(100.0, 10);
        ours.cpu_s_per_100k = 0.05;
        let p = pairs(&[ours, other], Kind::Conntrackd, Kind::ConntrackdNoPrefilter);
        assert_eq!(p.len(), 1);
        assert!((p[0].ratio - 0.25).abs() < 1e-9);
    }
}
