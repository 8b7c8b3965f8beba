//! `cargo xtask bench [--quick]`: delivery and CPU cost of conntrackd (eBPF
//! source, netlink source, eBPF without the kernel pre-filter) against
//! `conntrack -E` on identical generated load, and rule-evaluation throughput.
//!
//! Two namespaces joined by a veth pair ([`netns`]); a raw-socket generator
//! ([`generator`]) in the client creates one conntrack entry per TCP SYN at a
//! paced rate, then `conntrack -F` destroys them all, so each run is N NEW +
//! N DESTROY events, all to a public destination or mostly to a private one
//! ([`mode`]). Each consumer ([`consumer`]) listens alone, inside the client
//! namespace, while that happens ([`measure`]). The rule benchmark
//! ([`rules`]) runs first, on an idle lab. The figures go to
//! `target/bench/report.{md,json}` ([`report`], [`analysis`]).
//! First, [`geoip`] measures the GeoIP enrichment cost on a real-sized database;
//! [`loki`] adds the Loki sink: encoder throughput and CPU with the sink on.
mod analysis;
mod consumer;
mod daemon_config;
mod generator;
mod geoip;
mod interrupt;
mod loki;
mod loki_latency;
mod measure;
mod mode;
mod netns;
mod packet;
mod parse;
mod process;
mod report;
mod rules;
mod settings;
mod table;

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use self::{
    consumer::{Daemon, Kind},
    measure::{Bench, Rate},
    mode::Mode,
    netns::Lab,
    report::{Failure, Report, RunResult},
    settings::{Chosen, ConntrackMax, Settings},
};

/// The output must not grow for this long before a consumer is stopped.
const QUIET: Duration = Duration::from_secs(1);

/// Connections per run, the rates to run at, and the rule benchmark's effort.
struct Plan {
    connections: u32,
    rates: Vec<Rate>,
    rules: rules::Effort,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan { connections: 20_000, rates: vec![Rate(Some(50_000))], rules: rules::Effort { rounds: 300_000, repeats: 5 } }
        } else {
            Plan {
                connections: 100_000,
                rates: vec![Rate(Some(10_000)), Rate(Some(50_000)), Rate(Some(100_000)), Rate(None)],
                rules: rules::Effort { rounds: 1_000_000, repeats: 9 },
            }
        }
    }
}

pub(crate) fn run(root: &Path, quick: bool) -> Result<()> {
    let plan = Plan::new(quick);
    let files = Files::prepare(root)?;
    println!("{}", geoip::run(&files.daemon, &files.dir, quick)?);
    interrupt::install();
    eprintln!("bench: rule evaluation ({} rounds x {} repetitions)", plan.rules.rounds, plan.rules.repeats);
    let rules = rules::run(root, plan.rules)?;
    eprintln!(
        "bench:   {:.1} M evaluations/s ({} rules), baseline {:.1} M/s",
        rules.realistic.best_per_s / 1e6,
        rules::REALISTIC.len(),
        rules.baseline.best_per_s / 1e6
    );
    let sources = generator::sources_for(plan.connections, netns::CLIENT_ADDR);
    if sources.contains(&netns::SERVER_ADDR) {
        bail!("{} connections need too many source addresses", plan.connections);
    }
    let lab = Lab::create(&sources)?;
    let max = ConntrackMax::ensure(2 * u64::from(plan.connections))?;
    let chosen = Chosen { connections: plan.connections, sources: sources.clone(), quiet_ms: QUIET.as_millis() as u64 };
    let mut settings = Settings::record(&lab, &max, chosen)?;
    warn_if_entries_may_expire(&settings, &plan);
    let daemon = Daemon { binary: &files.daemon, config_dir: &files.dir };
    daemon_config::write_all(&daemon)?;
    let bench = Bench { lab: &lab, daemon, runs_dir: &files.runs, connections: plan.connections, sources, quiet: QUIET };
    let (runs, failures) = run_all(&bench, &plan)?;
    settings.finish();
    let loki = loki::run(&bench, &files.dir, plan.rates[0], &runs)?;
    drop(bench);
    drop(max);
    drop(lab);

    let failed = failures.len();
    let markdown = Report::new(settings, runs, failures, rules).write(&files.dir)?;
    println!("{markdown}{loki}");
    println!("written: {} and report.json; consumer output in {}", files.dir.join("report.md").display(), files.runs.display());
    if failed > 0 {
        bail!("{failed} runs failed; see \"Failed runs\" in the report");
    }
    Ok(())
}

/// Every consumer on every mode at every rate, one at a time; the consumers
/// of one mode and rate run back to back so their figures compare. A run
/// that fails is recorded and the others go on; an interruption stops all.
fn run_all(bench: &Bench, plan: &Plan) -> Result<(Vec<RunResult>, Vec<Failure>)> {
    let (mut runs, mut failures) = (Vec::new(), Vec::new());
    for mode in Mode::ALL {
        for &rate in &plan.rates {
            for kind in Kind::ALL {
                let what = format!("{} on {} at {}", kind.name(), mode.label(), rate.label());
                eprintln!("bench: {what} ({} connections)", plan.connections);
                match bench.measure(kind, mode, rate) {
                    Ok(r) => {
                        eprintln!("bench:   achieved {:.0}/s, delivered {}/{}, CPU {:.3} s", r.achieved_rate, r.delivered, r.expected, r.cpu_s);
                        runs.push(r);
                    }
                    Err(err) => {
                        interrupt::check()?;
                        let network = bench.lab.describe_client();
                        eprintln!("bench:   FAILED: {err:#}\nbench:   client network then:\n{network}");
                        failures.push(Failure { run: what, error: format!("{err:#}"), client_network: network });
                    }
                }
            }
        }
    }
    Ok((runs, failures))
}

/// The daemon under test and where the benchmark writes.
struct Files {
    daemon: PathBuf,
    /// `target/bench`: the configs and the reports.
    dir: PathBuf,
    /// `target/bench/runs`: each run's consumer output and stderr.
    runs: PathBuf,
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
        Ok(Self { daemon, dir, runs })
    }
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
