//! `cargo xtask bench [--quick]`: delivery and CPU cost of conntrackd against
//! `conntrack -E` on identical generated load.
//!
//! Two namespaces joined by a veth pair ([`netns`]); a raw-socket generator
//! ([`generator`]) in the client creates one conntrack entry per TCP SYN at a
//! paced rate, then `conntrack -F` destroys them all, so each run is N NEW +
//! N DESTROY events to a public destination. Each consumer ([`consumer`])
//! listens alone, inside the client namespace, while that happens
//! ([`measure`]); the figures go to `target/bench/report.{md,json}` ([`report`]).
//! First, [`geoip`] measures the GeoIP enrichment cost on a real-sized database.
//! [`loki`] adds the Loki sink: encoder throughput and CPU with the sink on.
mod consumer;
mod generator;
mod geoip;
mod interrupt;
mod loki;
mod loki_latency;
mod measure;
mod netns;
mod packet;
mod parse;
mod process;
mod report;
mod settings;

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use self::{
    consumer::{Daemon, Kind},
    measure::{Bench, Rate},
    netns::Lab,
    report::{Report, RunResult},
    settings::{Chosen, ConntrackMax, Settings},
};

/// conntrackd's ring buffer for the benchmark (its default).
const RING_BUFFER_BYTES: u64 = 4 << 20;
/// The output must not grow for this long before a consumer is stopped.
const QUIET: Duration = Duration::from_secs(1);

/// Connections per run and the rates to run at.
struct Plan {
    connections: u32,
    rates: Vec<Rate>,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan { connections: 20_000, rates: vec![Rate(Some(50_000))] }
        } else {
            Plan { connections: 100_000, rates: vec![Rate(Some(10_000)), Rate(Some(50_000)), Rate(Some(100_000)), Rate(None)] }
        }
    }
}

pub(crate) fn run(root: &Path, quick: bool) -> Result<()> {
    let plan = Plan::new(quick);
    let files = Files::prepare(root)?;
    println!("{}", geoip::run(&files.daemon, &files.dir, quick)?);
    interrupt::install();
    let sources = generator::sources_for(plan.connections, netns::CLIENT_ADDR);
    if sources.contains(&netns::SERVER_ADDR) {
        bail!("{} connections need too many source addresses", plan.connections);
    }
    let lab = Lab::create(&sources)?;
    let max = ConntrackMax::ensure(2 * u64::from(plan.connections))?;
    let chosen = Chosen { ring_buffer_bytes: RING_BUFFER_BYTES, connections: plan.connections, sources: sources.clone(), quiet_ms: QUIET.as_millis() as u64 };
    let settings = Settings::record(&lab, &max, chosen)?;
    warn_if_entries_may_expire(&settings, &plan);
    let daemon = Daemon { binary: &files.daemon, config: &files.config };
    let bench = Bench { lab: &lab, daemon, runs_dir: &files.runs, connections: plan.connections, sources, quiet: QUIET };
    let runs = run_all(&bench, &plan)?;
    let loki = loki::run(&bench, &files.dir, plan.rates[0], &runs)?;
    drop(bench);
    drop(max);
    drop(lab);

    let markdown = Report::new(settings, runs).write(&files.dir)?;
    println!("{markdown}{loki}");
    println!("written: {} and report.json; consumer output in {}", files.dir.join("report.md").display(), files.runs.display());
    Ok(())
}

/// Every consumer at every rate, one at a time.
fn run_all(bench: &Bench, plan: &Plan) -> Result<Vec<RunResult>> {
    let mut runs = Vec::new();
    for &rate in &plan.rates {
        for kind in Kind::ALL {
            eprintln!("bench: {} at {} ({} connections)", kind.name(), rate.label(), plan.connections);
            let result = bench.measure(kind, rate).with_context(|| format!("{} at {}", kind.name(), rate.label()))?;
            eprintln!("bench:   achieved {:.0}/s, delivered {}/{}, CPU {:.3} s", result.achieved_rate, result.delivered, result.generated, result.cpu_s);
            runs.push(result);
        }
    }
    Ok(runs)
}

/// The daemon under test and where the benchmark writes.
struct Files {
    daemon: PathBuf,
    /// `target/bench`: the config and the reports.
    dir: PathBuf,
    /// `target/bench/runs`: each run's consumer output and stderr.
    runs: PathBuf,
    config: PathBuf,
}

impl Files {
    fn prepare(root: &Path) -> Result<Self> {
        let daemon = root.join("target/release/conntrackd");
        if !daemon.is_file() {
            bail!("{} is missing; run cargo xtask build", daemon.display());
        }
        let dir = root.join("target/bench");
        let runs = dir.join("runs");
        fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
        let config = dir.join("conntrackd.toml");
        fs::write(&config, daemon_config()).with_context(|| format!("writing {}", config.display()))?;
        Ok(Self { daemon, dir, runs, config })
    }
}

fn daemon_config() -> String {
    // The built-in default rules, so the rule path is exercised.
    format!(
        "filter = [\"log protocol tcp and destination network public\", \"drop any\"]\n\
         [source]\nring_buffer_bytes = {RING_BUFFER_BYTES}\n\n[sink.stream]\nenable = true\nwriter = \"stdout\"\n"
    )
}

/// Entries live in SYN_SENT until the flush; if the slowest run outlasts that
/// timeout, some would expire (as DESTROY events) before the flush.
fn warn_if_entries_may_expire(settings: &Settings, plan: &Plan) {
    let slowest = plan.rates.iter().filter_map(|r| r.0).min();
    if let Some(rate) = slowest {
        let seconds = u64::from(plan.connections).div_ceil(u64::from(rate));
        if seconds + 10 >= settings.tcp_timeout_syn_sent_s {
            eprintln!(
                "bench: warning: a run at {rate}/s lasts {seconds} s, close to tcp_timeout_syn_sent={} s; entries may expire before the flush",
                settings.tcp_timeout_syn_sent_s
            );
        }
    }
}
