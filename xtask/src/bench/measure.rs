//! One measurement: a consumer listens while the generator creates the load
//! and the table is flushed; then its delivery and cost are collected.
//!
//! Loss is counted against what the consumer should deliver (conntrackd: the
//! events to the public address, which its rules log; conntrack -E and the
//! original: all);
//! CPU is counted per 100k events the kernel generated (all of them).
//! The kernel's run time of an eBPF consumer's socket filter comes from the
//! BPF statistics ([`super::bpf_stats`]); a consumer that exits during the
//! run (the original) is measured up to its exit, which is recorded.
use std::{
    net::Ipv4Addr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::{
    consumer::{Consumer, Daemon, Kind, Measured},
    generator::{self, Load, Sent},
    mode::Mode,
    netns::{self, Lab},
    parse,
    report::RunResult,
};

/// Upper bound on waiting for a consumer's output to settle.
const QUIET_LIMIT: Duration = Duration::from_secs(120);

/// A target rate of NEW events per second; `None` is the generator's maximum.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate(pub Option<u32>);

impl Rate {
    pub fn label(self) -> String {
        match self.0 {
            None => "max".to_string(),
            Some(r) if r % 1000 == 0 => format!("{}k/s", r / 1000),
            Some(r) => format!("{r}/s"),
        }
    }

    fn slug(self) -> String {
        self.label().replace("/s", "")
    }
}

/// What every measurement shares.
pub(crate) struct Bench<'a> {
    pub lab: &'a Lab,
    pub daemon: Daemon<'a>,
    pub runs_dir: &'a Path,
    pub connections: u32,
    pub sources: Vec<Ipv4Addr>,
    /// The output must not grow for this long before the consumer is stopped.
    pub quiet: Duration,
}

impl Bench<'_> {
    /// Runs the `mode` load at `rate` with `kind` listening.
    pub fn measure(&self, kind: Kind, mode: Mode, rate: Rate) -> Result<RunResult> {
        self.lab.flush_client().context("emptying the table before the run")?;
        let stem = format!("{}-{}-{}", kind.slug(), mode.label(), rate.slug());
        let output = self.runs_dir.join(format!("{stem}.out"));
        let consumer = Consumer::start(kind, &self.daemon, &output)?;
        let load = Load { connections: self.connections, rate: rate.0, sources: self.sources.clone(), mode, port: netns::LOAD_PORT };
        let load_start = Instant::now();
        let sent = generator::run(&netns::path(netns::CLIENT), &load)?;
        let table = Table { entries: self.lab.client_entries()?, public: self.lab.client_entries_to(netns::SERVER_ADDR)? };
        let flush_cpu = self.lab.flush_client_cpu().context("flushing the table after the load")?;
        let settled = consumer.wait_quiet(self.quiet, QUIET_LIMIT)?;
        let measured = consumer.stop()?;
        let log = self.runs_dir.join(format!("{stem}.stderr"));
        std::fs::write(&log, measured.stderr.join("\n") + "\n").with_context(|| format!("writing {}", log.display()))?;
        let delivered = parse::delivered(&output, kind.format(), netns::SERVER_ADDR, netns::PRIVATE_SERVER_ADDR)?;
        let producer_cpu = sent.cpu + flush_cpu;
        let exit_after = measured.exited_at.map(|at| at.saturating_duration_since(load_start));
        Ok(result(Run { kind, mode, rate, producer_cpu, exit_after }, &sent, table, delivered, &measured, settled))
    }
}

/// Which measurement.
#[derive(Clone, Copy)]
struct Run {
    kind: Kind,
    mode: Mode,
    rate: Rate,
    /// Generator thread + `conntrack -F`.
    producer_cpu: Duration,
    /// How long after the load started the consumer exited by itself.
    exit_after: Option<Duration>,
}

/// The client's table after the load, before the flush.
#[derive(Clone, Copy)]
struct Table {
    entries: u64,
    /// Entries to the public address.
    public: u64,
}

fn result(run: Run, sent: &Sent, table: Table, delivered: parse::Delivered, m: &Measured, settled: bool) -> RunResult {
    let Run { kind, mode, rate, producer_cpu, exit_after } = run;
    let generated = 2 * table.entries;
    let per_100k = |s: f64| if generated == 0 { 0.0 } else { s * 100_000.0 / generated as f64 };
    let (expected, got) = if kind.logs_private() { (generated, delivered.public() + delivered.private()) } else { (2 * table.public, delivered.public()) };
    let cpu_s = m.cpu_load.as_secs_f64();
    let counters = match kind {
        Kind::ConntrackEvents => parse::conntrack_summary(&m.stderr),
        Kind::Ulogd => super::ulogd::summary(&m.stderr),
        Kind::Original => original_summary(&m.stderr),
        _ => parse::counters(&m.stderr, "conntrackd stopped").unwrap_or_default(),
    };
    let filter = m.filter.unwrap_or_default();
    let ratio = |num: u64, den: u64| if den == 0 { f64::NAN } else { num as f64 / den as f64 };
    RunResult {
        consumer: kind.name(),
        mode: mode.label(),
        rate: rate.label(),
        target_rate: rate.0,
        achieved_rate: sent.rate(),
        generation_s: sent.elapsed.as_secs_f64(),
        packets_sent: sent.packets,
        table_entries: table.entries,
        public_entries: table.public,
        generated,
        expected,
        delivered: got,
        delivered_detail: delivered,
        loss_pct: percent(expected.saturating_sub(got), expected),
        cpu_s,
        cpu_s_per_100k: per_100k(cpu_s),
        cpu_s_per_100k_delivered: if got == 0 { f64::NAN } else { cpu_s * 100_000.0 / got as f64 },
        producer_cpu_s: producer_cpu.as_secs_f64(),
        producer_cpu_s_per_100k: per_100k(producer_cpu.as_secs_f64()),
        startup_cpu_s: m.cpu_startup.as_secs_f64(),
        user_s: m.exit.user.as_secs_f64(),
        system_s: m.exit.system.as_secs_f64(),
        peak_rss_mib: m.peak_rss_kib as f64 / 1024.0,
        ru_maxrss_mib: m.exit.maxrss_kib as f64 / 1024.0,
        counters,
        settled,
        exit: m.exit.describe(),
        exited_early: exit_after.is_some(),
        exit_after_s: exit_after.map_or(0.0, |d| d.as_secs_f64()),
        kernel_filter: kernel_filter(kind),
        filter_runs: filter.run_cnt,
        filter_run_time_ns: filter.run_time_ns,
        filter_ns_per_run: if m.filter.is_some() { ratio(filter.run_time_ns, filter.run_cnt) } else { 0.0 },
        filter_ns_per_event: if m.filter.is_some() { ratio(filter.run_time_ns, generated) } else { 0.0 },
        send_retries: sent.retries,
        repeats: 1,
        spread: super::median::none(),
        each: Vec::new(),
    }
}

/// What runs in the kernel for this consumer per event, before its socket's queue.
fn kernel_filter(kind: Kind) -> &'static str {
    match kind {
        Kind::Conntrackd | Kind::ConntrackdNoPrefilter => "eBPF socket filter",
        // libnetfilter_conntrack attaches a classic BPF filter: no program fd, no statistics.
        Kind::Ulogd => "cBPF filter (not counted)",
        Kind::ConntrackdNetlink | Kind::ConntrackEvents | Kind::Original => "none",
    }
}

/// The original's listener errors on its log (`"Conntrack listener error."`, e.g. ENOBUFS).
fn original_summary(stderr: &[String]) -> std::collections::BTreeMap<String, u64> {
    let errors = stderr.iter().filter(|l| l.contains("Conntrack listener error")).count() as u64;
    [("listener_errors".to_string(), errors)].into()
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
