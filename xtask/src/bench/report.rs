//! The report: per-run figures, the CPU comparison against the
//! `conntrack -E` baseline, the highest lossless rate per consumer and the
//! targets; printed as Markdown tables and written to `report.md` and
//! `report.json`.
use std::{collections::BTreeMap, fmt::Write as _, fs, path::Path};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{consumer::Kind, parse::Delivered, settings::Settings};

/// conntrackd must lose nothing at this rate (NEW events per second).
pub(crate) const LOSSLESS_TARGET_RATE: u32 = 50_000;
/// conntrackd's CPU budget per 100k kernel events, seconds.
pub(crate) const CPU_TARGET_S: f64 = 0.15;

/// One consumer at one rate.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunResult {
    pub consumer: &'static str,
    pub rate: String,
    pub target_rate: Option<u32>,
    pub achieved_rate: f64,
    pub generation_s: f64,
    pub packets_sent: u64,
    pub table_entries: u64,
    /// NEW + DESTROY events the kernel emitted (2 x table entries).
    pub generated: u64,
    pub delivered: u64,
    pub delivered_detail: Delivered,
    pub loss_pct: f64,
    /// Consumer CPU (user + system) from readiness to exit.
    pub cpu_s: f64,
    pub cpu_s_per_100k: f64,
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
    pub send_retries: u64,
}

#[derive(Debug, Serialize)]
struct Comparison {
    rate: String,
    conntrackd_cpu_s_per_100k: f64,
    baseline_cpu_s_per_100k: f64,
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct Lossless {
    consumer: &'static str,
    rate: Option<String>,
    achieved_rate: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Target {
    what: String,
    value: String,
    target: String,
    met: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    settings: Settings,
    runs: Vec<RunResult>,
    cpu_vs_baseline: Vec<Comparison>,
    highest_lossless: Vec<Lossless>,
    targets: Vec<Target>,
}

impl Report {
    pub fn new(settings: Settings, runs: Vec<RunResult>) -> Self {
        let cpu_vs_baseline = comparisons(&runs);
        let highest_lossless = Kind::ALL.iter().map(|k| lossless(&runs, k.name())).collect();
        let targets = targets(&runs);
        Self { settings, runs, cpu_vs_baseline, highest_lossless, targets }
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
        section(&mut out, "Delivery and cost per consumer", &self.results_table());
        section(&mut out, "conntrackd kernel counters", &self.counters_table());
        section(&mut out, "CPU per 100k events: conntrackd / conntrack -E (same invocation)", &self.ratio_table());
        section(&mut out, "Highest lossless rate", &self.lossless_table());
        section(&mut out, "Targets", &self.targets_table());
        section(&mut out, "Settings", &self.settings_list());
        out
    }

    fn results_table(&self) -> String {
        let mut t = Table::new(&["consumer", "rate", "achieved NEW/s", "generated", "delivered", "loss %", "CPU s", "CPU s/100k ev", "peak RSS MiB", "notes"]);
        for r in &self.runs {
            t.row(vec![
                r.consumer.into(),
                r.rate.clone(),
                format!("{:.0}", r.achieved_rate),
                r.generated.to_string(),
                r.delivered.to_string(),
                format!("{:.3}", r.loss_pct),
                format!("{:.3}", r.cpu_s),
                format!("{:.4}", r.cpu_s_per_100k),
                format!("{:.1}", r.peak_rss_mib),
                notes(r),
            ]);
        }
        t.render()
    }

    fn counters_table(&self) -> String {
        const KEYS: [&str; 6] = ["seen", "submitted", "ring_full", "not_conntrack", "stream.written", "stream.dropped_queue_full"];
        let mut header = vec!["rate"];
        header.extend(KEYS);
        let mut t = Table::new(&header);
        for r in self.runs.iter().filter(|r| r.consumer == Kind::Conntrackd.name()) {
            let mut row = vec![r.rate.clone()];
            row.extend(KEYS.iter().map(|k| r.counters.get(*k).map_or("-".into(), u64::to_string)));
            t.row(row);
        }
        t.render()
    }

    fn ratio_table(&self) -> String {
        let mut t = Table::new(&["rate", "conntrackd CPU s/100k", "conntrack -E CPU s/100k", "ratio"]);
        for c in &self.cpu_vs_baseline {
            t.row(vec![c.rate.clone(), format!("{:.4}", c.conntrackd_cpu_s_per_100k), format!("{:.4}", c.baseline_cpu_s_per_100k), format!("{:.2}", c.ratio)]);
        }
        t.render()
    }

    fn lossless_table(&self) -> String {
        let mut t = Table::new(&["consumer", "highest lossless rate", "achieved NEW/s"]);
        for l in &self.highest_lossless {
            let rate = l.rate.clone().unwrap_or_else(|| "none".into());
            t.row(vec![l.consumer.into(), rate, l.achieved_rate.map_or("-".into(), |r| format!("{r:.0}"))]);
        }
        t.render()
    }

    fn targets_table(&self) -> String {
        let mut t = Table::new(&["target", "value", "required", "met"]);
        for g in &self.targets {
            t.row(vec![g.what.clone(), g.value.clone(), g.target.clone(), if g.met { "yes" } else { "NO" }.into()]);
        }
        t.render()
    }

    fn settings_list(&self) -> String {
        let s = &self.settings;
        let sources: Vec<String> = s.load_sources.iter().map(ToString::to_string).collect();
        let max_note =
            if s.nf_conntrack_max == s.nf_conntrack_max_before { " (unchanged)".to_string() } else { format!(" (raised from {})", s.nf_conntrack_max_before) };
        [
            format!("- kernel {}, {} CPUs ({}), load average at start {}", s.kernel, s.cpus, s.cpu_model, s.loadavg_at_start),
            format!("- {}", s.conntrack_tools),
            format!("- nf_conntrack_max {}{max_note}, nf_conntrack_buckets {}", s.nf_conntrack_max, s.nf_conntrack_buckets),
            format!(
                "- client namespace: nf_conntrack_events={}, tcp_timeout_syn_sent={} s, rmem_default={} B",
                s.nf_conntrack_events, s.tcp_timeout_syn_sent_s, s.netlink_rmem_default
            ),
            format!("- load: {} connections per run from {} to {}", s.connections_per_run, sources.join(", "), s.load_destination),
            format!("- flush policy: {}", s.flush_policy),
            format!("- conntrackd: ring_buffer_bytes={}, stream sink to a file; conntrack -E -o timestamp to a file", s.ring_buffer_bytes),
            format!("- a consumer is stopped once its output has not grown for {} ms; CPU counts from readiness to exit", s.quiet_ms),
        ]
        .join("\n")
            + "\n"
    }
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
    if r.exit != "exit code 0" {
        notes.push(r.exit.clone());
    }
    if let Some(&n) = r.counters.get("enobufs_warnings").filter(|&&n| n > 0) {
        notes.push(format!("{n} ENOBUFS warnings"));
    }
    if let Some(&n) = r.counters.get("ring_full").filter(|&&n| n > 0) {
        notes.push(format!("ring_full={n}"));
    }
    notes.join("; ")
}

fn comparisons(runs: &[RunResult]) -> Vec<Comparison> {
    let ours = runs.iter().filter(|r| r.consumer == Kind::Conntrackd.name());
    ours.filter_map(|r| {
        let base = runs.iter().find(|b| b.consumer == Kind::ConntrackEvents.name() && b.rate == r.rate)?;
        let ratio = if base.cpu_s_per_100k > 0.0 { r.cpu_s_per_100k / base.cpu_s_per_100k } else { f64::NAN };
        Some(Comparison { rate: r.rate.clone(), conntrackd_cpu_s_per_100k: r.cpu_s_per_100k, baseline_cpu_s_per_100k: base.cpu_s_per_100k, ratio })
    })
    .collect()
}

fn lossless(runs: &[RunResult], consumer: &'static str) -> Lossless {
    let best = runs
        .iter()
        .filter(|r| r.consumer == consumer && r.generated > 0 && r.delivered >= r.generated)
        .max_by(|a, b| a.achieved_rate.total_cmp(&b.achieved_rate));
    Lossless { consumer, rate: best.map(|r| r.rate.clone()), achieved_rate: best.map(|r| r.achieved_rate) }
}

fn targets(runs: &[RunResult]) -> Vec<Target> {
    let ours: Vec<&RunResult> = runs.iter().filter(|r| r.consumer == Kind::Conntrackd.name()).collect();
    let mut targets = Vec::new();
    if let Some(r) = ours.iter().find(|r| r.target_rate == Some(LOSSLESS_TARGET_RATE)) {
        let lost = r.generated.saturating_sub(r.delivered);
        targets.push(Target {
            what: format!("conntrackd loss at {}", r.rate),
            value: format!("{lost} events ({:.3} %)", r.loss_pct),
            target: "0".into(),
            met: lost == 0,
        });
    }
    for r in &ours {
        let met = r.cpu_s_per_100k <= CPU_TARGET_S;
        targets.push(Target {
            what: format!("conntrackd CPU per 100k events at {}", r.rate),
            value: format!("{:.4} s", r.cpu_s_per_100k),
            target: format!("<= {CPU_TARGET_S} s"),
            met,
        });
    }
    targets
}

/// A Markdown table whose columns are padded to line up in a terminal too.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Self { rows: vec![header.iter().map(|h| h.to_string()).collect()] }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let columns = self.rows[0].len();
        let widths: Vec<usize> = (0..columns).map(|c| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = widths.iter().enumerate().map(|(i, w)| format!("{:<w$}", cells.get(i).map_or("", String::as_str))).collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(&self.rows[0]);
        out += &line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
        for row in &self.rows[1..] {
            out += &line(row);
        }
        out
    }
}
