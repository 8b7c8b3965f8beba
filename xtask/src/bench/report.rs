//! The report: per-run figures, conntrackd's counters, the comparisons
//! ([`analysis`](super::analysis)), the rule-evaluation throughput and the
//! targets; printed as Markdown tables and written to `report.md` and
//! `report.json`.
use std::{collections::BTreeMap, fmt::Write as _, fs, path::Path};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    analysis::{self, Lossless, Pair, PeerRatio, Target, PREFILTER_TARGET_RATIO},
    check::GeneratorCheck,
    consumer::Kind,
    median::{show, Each, Spread},
    mode::Mode,
    parse::Delivered,
    report_cost,
    rules::{self, RulesResult},
    settings::Settings,
    table::Table,
};

/// One consumer on one load mode at one rate.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RunResult {
    pub consumer: &'static str,
    pub mode: &'static str,
    pub rate: String,
    pub target_rate: Option<u32>,
    pub achieved_rate: f64,
    pub generation_s: f64,
    pub packets_sent: u64,
    pub table_entries: u64,
    /// Entries to the public address.
    pub public_entries: u64,
    /// NEW + DESTROY events the kernel emitted (2 x table entries).
    pub generated: u64,
    /// Events the consumer should deliver: conntrackd (default rules) the
    /// public ones, conntrack -E all.
    pub expected: u64,
    /// Of those, how many it delivered.
    pub delivered: u64,
    pub delivered_detail: Delivered,
    /// Of `expected`.
    pub loss_pct: f64,
    /// Consumer CPU (user + system) from readiness to exit.
    pub cpu_s: f64,
    /// Per 100k `generated` events (all the kernel emitted).
    pub cpu_s_per_100k: f64,
    /// Per 100k `delivered` events: the cost of what it did log (a consumer
    /// that loses events is cheap per kernel event only because it lost them).
    pub cpu_s_per_100k_delivered: f64,
    /// The generator thread and `conntrack -F`: where the kernel's per-event
    /// work (listeners' socket filters included) is charged.
    pub producer_cpu_s: f64,
    pub producer_cpu_s_per_100k: f64,
    pub startup_cpu_s: f64,
    /// The whole process (startup included), split as the kernel accounts it.
    pub user_s: f64,
    pub system_s: f64,
    pub peak_rss_mib: f64,
    /// `ru_maxrss`; includes `ip netns exec` before it exec'd the consumer.
    pub ru_maxrss_mib: f64,
    /// conntrackd: its kernel and sink counters; conntrack -E: its own summary.
    pub counters: BTreeMap<String, u64>,
    /// False if the output was still growing when the wait ended.
    pub settled: bool,
    pub exit: String,
    /// It exited by itself during the run (the original on ENOBUFS), after `exit_after_s`
    /// seconds of load; `delivered` is what it wrote before.
    pub exited_early: bool,
    pub exit_after_s: f64,
    /// What the kernel runs for this consumer per event ([`super::measure`]).
    pub kernel_filter: &'static str,
    /// The socket filter's `run_cnt` and `run_time_ns` over the run (eBPF consumers; else 0).
    pub filter_runs: u64,
    pub filter_run_time_ns: u64,
    /// `run_time_ns / run_cnt`: the filter's own cost per run (per event it saw).
    pub filter_ns_per_run: f64,
    /// `run_time_ns / generated`.
    pub filter_ns_per_event: f64,
    pub send_retries: u64,
    /// How many runs the figures are the median of.
    pub repeats: usize,
    /// Each figure's minimum and maximum over the runs.
    pub spread: BTreeMap<String, Spread>,
    /// Each run's main figures.
    pub each: Vec<Each>,
}

/// A run that did not complete.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Failure {
    pub run: String,
    pub error: String,
    /// `ip -brief link`, `ip -brief addr` and `ip route` in the client namespace after the failure.
    pub client_network: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    settings: Settings,
    runs: Vec<RunResult>,
    failures: Vec<Failure>,
    rules: RulesResult,
    prefilter_on_vs_off: Vec<Pair>,
    ebpf_vs_netlink: Vec<Pair>,
    conntrackd_vs_conntrack_e: Vec<Pair>,
    /// conntrackd ebpf against the Go original and `conntrack -E`, per delivered event.
    against_peers: Vec<PeerRatio>,
    highest_lossless: Vec<Lossless>,
    targets: Vec<Target>,
    generator_checks: Vec<GeneratorCheck>,
}

impl Report {
    pub fn new(settings: Settings, runs: Vec<RunResult>, failures: Vec<Failure>, rules: RulesResult, generator_checks: Vec<GeneratorCheck>) -> Self {
        let prefilter_on_vs_off = analysis::pairs(&runs, Kind::Conntrackd, Kind::ConntrackdNoPrefilter);
        let ebpf_vs_netlink = analysis::pairs(&runs, Kind::Conntrackd, Kind::ConntrackdNetlink);
        let conntrackd_vs_conntrack_e = analysis::pairs(&runs, Kind::Conntrackd, Kind::ConntrackEvents);
        let against_peers = analysis::peer_ratios(&runs, &[Kind::Original, Kind::ConntrackEvents]);
        let highest_lossless = Mode::ALL.iter().flat_map(|&m| Kind::ALL.iter().map(move |&k| (k, m))).map(|(k, m)| analysis::lossless(&runs, k, m)).collect();
        let targets = analysis::targets(&runs, &prefilter_on_vs_off, &rules);
        Self {
            settings,
            runs,
            failures,
            rules,
            prefilter_on_vs_off,
            ebpf_vs_netlink,
            conntrackd_vs_conntrack_e,
            against_peers,
            highest_lossless,
            targets,
            generator_checks,
        }
    }

    /// Writes `report.md` and `report.json` into `dir`; returns the Markdown.
    pub fn write(&self, dir: &Path) -> Result<String> {
        let markdown = self.markdown();
        let md = dir.join("report.md");
        fs::write(&md, &markdown).with_context(|| format!("writing {}", md.display()))?;
        let json = dir.join("report.json");
        let text = serde_json::to_string_pretty(self).context("encoding the report")?;
        fs::write(&json, text + "\n").with_context(|| format!("writing {}", json.display()))?;
        Ok(markdown)
    }

    fn markdown(&self) -> String {
        let mut out = String::from("# conntrackd benchmark\n\n");
        let runs = self.runs.first().map_or(0, |r| r.repeats);
        let title = format!("Delivery and cost per consumer (median of {runs} runs, min–max in brackets)");
        section(&mut out, &title, &self.results_table());
        if !self.failures.is_empty() {
            section(&mut out, "Failed runs", &self.failures_list());
        }
        let peers = "conntrackd ebpf against the Go original v1.4.1 and conntrack -E (same load, same invocation)";
        section(&mut out, peers, &report_cost::peers_table(&self.against_peers));
        section(&mut out, "Kernel-side cost per consumer", &report_cost::kernel_table(&self.runs));
        section(&mut out, "conntrackd counters", &self.counters_table());
        let prefilter = format!(
            "Kernel pre-filter on / off: CPU s per 100k kernel events (eBPF source, same load, same invocation; target for mixed <= {PREFILTER_TARGET_RATIO})"
        );
        section(&mut out, &prefilter, &pair_table(&self.prefilter_on_vs_off, "pre-filter on", "pre-filter off", true));
        section(&mut out, "eBPF source / netlink source (same load, same invocation)", &pair_table(&self.ebpf_vs_netlink, "ebpf", "netlink", false));
        section(
            &mut out,
            "CPU per 100k events: conntrackd ebpf / conntrack -E (same invocation)",
            &pair_table(&self.conntrackd_vs_conntrack_e, "conntrackd", "conntrack -E", false),
        );
        section(&mut out, "Highest lossless rate (no loss at it or at any lower achieved rate)", &self.lossless_table());
        section(&mut out, "Rule evaluation, one thread (best of the repetitions)", &self.rules_table());
        section(&mut out, "Targets", &self.targets_table());
        section(&mut out, "Generator check (entries before the flush: conntrack -C, and conntrack -L to the public address)", &self.checks_table());
        section(&mut out, "Settings", &self.settings.markdown());
        out
    }

    fn results_table(&self) -> String {
        let header = [
            "mode",
            "consumer",
            "rate",
            "achieved NEW/s",
            "kernel events",
            "expected",
            "delivered",
            "loss %",
            "CPU s",
            "CPU s/100k ev",
            "CPU s/100k delivered",
            "producer CPU s/100k ev",
            "kernel filter ns/ev",
            "peak RSS MiB",
            "notes",
        ];
        let mut t = Table::new(&header);
        for r in &self.runs {
            t.row(vec![
                r.mode.into(),
                r.consumer.into(),
                r.rate.clone(),
                show(r, "achieved_rate", r.achieved_rate, 0),
                r.generated.to_string(),
                r.expected.to_string(),
                show(r, "delivered", r.delivered as f64, 0),
                show(r, "loss_pct", r.loss_pct, 3),
                show(r, "cpu_s", r.cpu_s, 3),
                if r.exited_early { "- (exited)".into() } else { show(r, "cpu_s_per_100k", r.cpu_s_per_100k, 4) },
                show(r, "cpu_s_per_100k_delivered", r.cpu_s_per_100k_delivered, 4),
                show(r, "producer_cpu_s_per_100k", r.producer_cpu_s_per_100k, 4),
                if r.kernel_filter.starts_with("eBPF") { show(r, "filter_ns_per_event", r.filter_ns_per_event, 0) } else { "-".into() },
                show(r, "peak_rss_mib", r.peak_rss_mib, 1),
                notes(r),
            ]);
        }
        t.render()
    }

    fn failures_list(&self) -> String {
        let items: Vec<String> = self.failures.iter().map(|f| format!("- {}: {}\n\n```\n{}```\n", f.run, f.error, f.client_network)).collect();
        items.concat()
    }

    fn counters_table(&self) -> String {
        const KEYS: [&str; 10] = [
            "seen",
            "submitted",
            "ring_full",
            "dropped_dst_class",
            "lost",
            "overflows",
            "read",
            "dropped_by_rules",
            "stream.written",
            "stream.dropped_queue_full",
        ];
        let mut header = vec!["mode", "consumer", "rate"];
        header.extend(KEYS);
        let mut t = Table::new(&header);
        let peers = [Kind::ConntrackEvents, Kind::Ulogd, Kind::Original].map(Kind::name);
        for r in self.runs.iter().filter(|r| !peers.contains(&r.consumer)) {
            let mut row = vec![r.mode.to_string(), r.consumer.to_string(), r.rate.clone()];
            row.extend(KEYS.iter().map(|k| r.counters.get(*k).map_or("-".into(), u64::to_string)));
            t.row(row);
        }
        t.render()
    }

    fn lossless_table(&self) -> String {
        let mut t = Table::new(&["mode", "consumer", "highest lossless rate", "achieved NEW/s"]);
        for l in &self.highest_lossless {
            let rate = l.rate.clone().unwrap_or_else(|| "none".into());
            t.row(vec![l.mode.into(), l.consumer.into(), rate, l.achieved_rate.map_or("-".into(), |r| format!("{r:.0}"))]);
        }
        t.render()
    }

    fn rules_table(&self) -> String {
        let r = &self.rules;
        let mut t = Table::new(&["rules", "evaluations/s (best)", "median", "of each repetition, M/s", "logged per run", "target"]);
        for (set, target) in
            [(&r.realistic, format!(">= {:.0} M/s", rules::TARGET_PER_S / 1e6)), (&r.full_cel, "-".to_string()), (&r.baseline, "-".to_string())]
        {
            let each: Vec<String> = set.per_s.iter().map(|v| format!("{:.1}", v / 1e6)).collect();
            t.row(vec![
                format!("{} ({} rules)", set.name, set.rules.len()),
                format!("{:.1} M/s", set.best_per_s / 1e6),
                format!("{:.1} M/s", set.median_per_s / 1e6),
                each.join(" "),
                format!("{} of {}", set.logged_per_run, set.evaluations_per_run),
                target,
            ]);
        }
        let quote = |set: &rules::SetResult| set.rules.iter().map(|rule| format!("`{rule}`")).collect::<Vec<_>>().join(", ");
        format!(
            "{}\nrealistic / baseline (`log any`): {:.3}. {} rounds over a 10-event mix, {} repetitions, interleaved.\nRealistic list: {}\nFull-CEL list: {}\n",
            t.render(),
            r.ratio(),
            r.rounds,
            r.repeats,
            quote(&r.realistic),
            quote(&r.full_cel)
        )
    }

    /// Every mismatch, or one line saying all runs matched.
    fn checks_table(&self) -> String {
        let bad: Vec<&GeneratorCheck> = self.generator_checks.iter().filter(|c| !c.ok).collect();
        let Some(first) = self.generator_checks.first() else { return "no runs\n".into() };
        if bad.is_empty() {
            return format!("all {} runs: requested = created ({} entries each), public requested = listed\n", self.generator_checks.len(), first.requested);
        }
        let mut t = Table::new(&["run", "requested", "created (-C)", "public requested", "public listed (-L)"]);
        let count = bad.len();
        for c in bad {
            t.row(vec![c.run.clone(), c.requested.to_string(), c.created.to_string(), c.requested_public.to_string(), c.listed_public.to_string()]);
        }
        format!("MISMATCH in {count} of {} runs:\n\n{}", self.generator_checks.len(), t.render())
    }

    fn targets_table(&self) -> String {
        let mut t = Table::new(&["target", "value", "required", "met"]);
        for g in &self.targets {
            t.row(vec![g.what.clone(), g.value.clone(), g.target.clone(), if g.met { "yes" } else { "NO" }.into()]);
        }
        t.render()
    }
}

/// CPU and loss of two consumers side by side; `target` adds the pre-filter target column.
fn pair_table(pairs: &[Pair], ours: &str, other: &str, target: bool) -> String {
    let (cpu_a, cpu_b) = (format!("{ours} CPU s/100k"), format!("{other} CPU s/100k"));
    let (loss_a, loss_b) = (format!("{ours} loss %"), format!("{other} loss %"));
    let (producer_a, producer_b) = (format!("producer CPU s/100k with {ours}"), format!("with {other}"));
    let mut header = vec!["mode", "rate", &cpu_a, &cpu_b, "CPU ratio"];
    if target {
        header.push("target");
    }
    header.extend([loss_a.as_str(), loss_b.as_str(), producer_a.as_str(), producer_b.as_str()]);
    let mut t = Table::new(&header);
    for p in pairs {
        let mut row =
            vec![p.mode.to_string(), p.rate.clone(), format!("{:.4}", p.cpu_s_per_100k), format!("{:.4}", p.other_cpu_s_per_100k), format!("{:.3}", p.ratio)];
        if target {
            row.push(if p.mode == Mode::Mixed.label() { format!("<= {PREFILTER_TARGET_RATIO}") } else { "-".into() });
        }
        row.extend([
            format!("{:.3}", p.loss_pct),
            format!("{:.3}", p.other_loss_pct),
            format!("{:.4}", p.producer_cpu_s_per_100k),
            format!("{:.4}", p.other_producer_cpu_s_per_100k),
        ]);
        t.row(row);
    }
    t.render()
}

fn section(out: &mut String, title: &str, body: &str) {
    let _ = write!(out, "## {title}\n\n{body}\n");
}

fn notes(r: &RunResult) -> String {
    let mut notes = Vec::new();
    if !r.settled {
        notes.push("output still growing at stop".to_string());
    }
    if r.table_entries != r.packets_sent {
        notes.push(format!("{} SYNs made {} entries", r.packets_sent, r.table_entries));
    }
    if r.exited_early {
        notes.push(analysis::exited(r));
    }
    if !Kind::ALL.iter().any(|k| k.logs_private() && k.name() == r.consumer) && r.delivered_detail.private() > 0 {
        notes.push(format!("{} PRIVATE events logged", r.delivered_detail.private()));
    }
    if r.exit != "exit code 0" && !r.exited_early {
        notes.push(r.exit.clone());
    }
    for key in ["enobufs_warnings", "listener_errors", "ring_full", "lost", "overflows", "stream.dropped_queue_full"] {
        if let Some(&n) = r.counters.get(key).filter(|&&n| n > 0) {
            notes.push(format!("{key}={n}"));
        }
    }
    notes.join("; ")
}
