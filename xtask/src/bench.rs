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
//! The rule, encoder and GeoIP figures come from conntrackd's benches ([`micro`]).
//! [`scale`] measures `netns = ["all"]` with 250 namespaces and churn.
//! Peers: `conntrack -E`, ulogd2 ([`ulogd`]) and the Go original v1.4.1 (a
//! consumer that exits during a run is reported with its exit). The kernel's
//! run time of conntrackd's socket filter comes from the BPF statistics
//! ([`bpf_stats`]), on for the whole benchmark; [`loki_bytes`] counts the Loki
//! sink's bytes on the wire per event. Every run is repeated; the
//! report shows medians with their spread ([`median`], [`schedule`]), checks
//! the generator ([`check`]) and draws PNG plots ([`plot`]).
mod analysis;
mod bpf_stats;
mod check;
mod consumer;
mod daemon_config;
mod generator;
mod geoip;
mod interrupt;
mod loki;
mod loki_bytes;
mod loki_latency;
mod measure;
mod median;
mod micro;
mod mode;
mod netns;
mod packet;
mod parse;
mod plot;
mod process;
#[cfg(test)]
mod quick_test;
#[cfg(test)]
mod reload_figures;
#[cfg(test)]
mod reload_test;
mod report;
mod report_cost;
mod rules;
mod scale;
mod schedule;
mod settings;
mod table;
mod ulogd;
mod victorialogs;

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
/// The Go original's release that runs as a consumer.
const ORIGINAL_VERSION: &str = "1.4.1";
/// Debian packages of the peers and of the plots' venv.
const PACKAGES: [&str; 3] = ["ulogd2", "ulogd2-json", "python3-venv"];

/// Connections per run, the rates to run at, how often each run is
/// repeated (the report shows the median), and the rule benchmark's effort.
struct Plan {
    connections: u32,
    rates: Vec<Rate>,
    repeats: usize,
    rules: rules::Effort,
}

impl Plan {
    /// The quick or the full plan; `rates` and `repeats` (when given) narrow the full one.
    fn for_options(options: &Options) -> Result<Self> {
        let mut plan = Self::new(options.quick);
        if !options.rates.is_empty() {
            plan.rates = options.rates.iter().map(|r| parse_rate(r)).collect::<Result<_>>()?;
        }
        if let Some(repeats) = options.repeats {
            if repeats == 0 {
                bail!("--repeats must be at least 1");
            }
            plan.repeats = repeats;
        }
        Ok(plan)
    }

    fn new(quick: bool) -> Self {
        if quick {
            Plan { connections: 20_000, rates: vec![Rate(Some(50_000))], repeats: 1, rules: rules::Effort { rounds: 300_000, repeats: 5 } }
        } else {
            Plan {
                connections: FULL_CONNECTIONS,
                rates: vec![Rate(Some(10_000)), Rate(Some(50_000)), Rate(Some(100_000)), Rate(None)],
                repeats: 3,
                rules: rules::Effort { rounds: 1_000_000, repeats: 9 },
            }
        }
    }
}

/// `10000`, `10k` or `max`.
fn parse_rate(text: &str) -> Result<Rate> {
    let t = text.trim();
    if t == "max" {
        return Ok(Rate(None));
    }
    let (digits, factor) = t.strip_suffix('k').map_or((t, 1), |d| (d, 1000));
    match digits.parse::<u32>().ok().and_then(|n| n.checked_mul(factor)).filter(|&n| n > 0) {
        Some(n) => Ok(Rate(Some(n))),
        None => bail!("--rates: {text:?} is not a rate (a positive number of NEW events per second, e.g. 10000 or 10k, or max)"),
    }
}

/// The benchmark's namespaces and `nf_conntrack_max` exist once per machine:
/// the tests that use them ([`quick_test`], [`reload_test`]) hold this lock.
#[cfg(test)]
static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Connections per run in the full benchmark (6 consumers x 2 modes x 4
/// rates x 3 repetitions = 144 runs; 72 of them took 13 minutes on 2 busy cores).
const FULL_CONNECTIONS: u32 = 100_000;

/// What to run and where.
pub(crate) struct Options {
    pub quick: bool,
    /// The conntrackd binary [default: target/release/conntrackd].
    pub daemon: Option<PathBuf>,
    /// Where the reports go [default: target/bench].
    pub out: Option<PathBuf>,
    /// Only these rates [default: the plan's].
    pub rates: Vec<String>,
    /// Repetitions [default: the plan's].
    pub repeats: Option<usize>,
}

pub(crate) fn run(root: &Path, quick: bool, rates: &[String], repeats: Option<usize>) -> Result<()> {
    run_with(root, &Options { quick, daemon: None, out: None, rates: rates.to_vec(), repeats })
}

/// Only the namespace scale measurement (`cargo xtask bench --netns`).
pub(crate) fn run_netns(root: &Path) -> Result<()> {
    println!("{}", scale::run(root, &root.join("target/bench"))?);
    Ok(())
}

pub(crate) fn run_with(root: &Path, options: &Options) -> Result<()> {
    crate::setup::install_packages(&PACKAGES)?;
    // Builds the Go original into target/peers unless it is there (cargo xtask setup does too).
    crate::setup_peers::install()?;
    let plan = Plan::for_options(options)?;
    let files = Files::prepare(root, options)?;
    println!("{}", geoip::run(root, &files.dir, options.quick)?);
    // The quick run leaves it to `cargo xtask test`, which runs the same test at a smaller count.
    if !options.quick {
        println!("{}", scale::run(root, &files.dir)?);
    }
    interrupt::install();
    // Until the end of the run: the kernel turns them off when this closes, also on an error or interruption.
    let _bpf_stats = bpf_stats::Enabled::new()?;
    eprintln!("bench: rule evaluation ({} rounds x {} repetitions)", plan.rules.rounds, plan.rules.repeats);
    let rules = rules::run(root, plan.rules)?;
    eprintln!(
        "bench:   {:.1} M evaluations/s ({} rules), full CEL {:.2} M/s ({} rules), baseline {:.1} M/s",
        rules.realistic.best_per_s / 1e6,
        rules::REALISTIC.len(),
        rules.full_cel.best_per_s / 1e6,
        rules::FULL_CEL.len(),
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
    let daemon = Daemon { binary: &files.daemon, original: Some(&files.original), config_dir: &files.dir };
    daemon_config::write_all(&daemon)?;
    let bench = Bench { lab: &lab, daemon, runs_dir: &files.runs, connections: plan.connections, sources, quiet: QUIET };
    let (samples, failures) = run_all(&bench, &plan)?;
    let checks = check::generator(&samples, plan.connections);
    let runs = schedule::fold_all(&samples);
    settings.finish();
    let loki = loki::run(root, &bench, &files.dir, plan.rates[0], &runs)?;
    drop(bench);
    drop(max);
    drop(lab);

    let failed = failures.len();
    let generator_ok = checks.iter().all(|c| c.ok);
    let markdown = Report::new(settings, runs, failures, rules, checks).write(&files.dir)?;
    println!("{markdown}{loki}");
    let plots = plot::draw(root, &files.dir)?;
    println!("written: {} and report.json, plots {}; consumer output in {}", files.dir.join("report.md").display(), plots.join(", "), files.runs.display());
    if failed > 0 {
        bail!("{failed} runs failed; see \"Failed runs\" in the report");
    }
    if options.quick && !generator_ok {
        bail!("the generator did not create the requested entries; see \"Generator check\" in the report");
    }
    Ok(())
}

/// Every consumer on every mode at every rate, `plan.repeats` times, one at
/// a time; the consumers of one mode and rate run back to back so their
/// figures compare. A run that fails is recorded and the others go on; an
/// interruption stops all.
fn run_all(bench: &Bench, plan: &Plan) -> Result<(Vec<RunResult>, Vec<Failure>)> {
    let (mut runs, mut failures) = (Vec::new(), Vec::new());
    for mode in Mode::ALL {
        for &rate in &plan.rates {
            for repeat in 1..=plan.repeats {
                for kind in Kind::ALL {
                    let what = format!("{} on {} at {} (run {repeat}/{})", kind.name(), mode.label(), rate.label(), plan.repeats);
                    eprintln!("bench: {what} ({} connections)", plan.connections);
                    match bench.measure(kind, mode, rate) {
                        Ok(r) => {
                            eprintln!("bench:   achieved {:.0}/s, delivered {}/{}, CPU {:.3} s", r.achieved_rate, r.delivered, r.expected, r.cpu_s);
                            if r.filter_runs > 0 {
                                eprintln!("bench:   socket filter {:.0} ns/run over {} runs", r.filter_ns_per_run, r.filter_runs);
                            }
                            if r.exited_early {
                                eprintln!("bench:   {}", analysis::exited(&r));
                            }
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
    }
    Ok((runs, failures))
}

/// The daemon under test and where the benchmark writes.
struct Files {
    daemon: PathBuf,
    /// The Go original v1.4.1 (`target/peers`, built by `cargo xtask setup`).
    original: PathBuf,
    /// `target/bench`: the configs and the reports.
    dir: PathBuf,
    /// `target/bench/runs`: each run's consumer output and stderr.
    runs: PathBuf,
}

impl Files {
    fn prepare(root: &Path, options: &Options) -> Result<Self> {
        let daemon = options.daemon.clone().unwrap_or_else(|| root.join("target/release/conntrackd"));
        if !daemon.is_file() {
            bail!("{} is missing; run cargo xtask build", daemon.display());
        }
        let original = crate::setup_peers::binary(root, ORIGINAL_VERSION);
        if !original.is_file() {
            bail!("{} is missing; run cargo xtask setup (it builds the Go original)", original.display());
        }
        let dir = options.out.clone().unwrap_or_else(|| root.join("target/bench"));
        let runs = dir.join("runs");
        fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
        Ok(Self { daemon, original, dir, runs })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_numbers_thousands_or_max() {
        assert_eq!(parse_rate("10000").unwrap().0, Some(10_000));
        assert_eq!(parse_rate("30k").unwrap().0, Some(30_000));
        assert_eq!(parse_rate("max").unwrap().0, None);
        for bad in ["0", "fast", "-5", "99999999k"] {
            assert!(parse_rate(bad).unwrap_err().to_string().contains("is not a rate"), "{bad}");
        }
        let options = Options { quick: false, daemon: None, out: None, rates: vec!["30k".into()], repeats: Some(1) };
        let plan = Plan::for_options(&options).unwrap();
        assert_eq!((plan.rates.len(), plan.repeats, plan.connections), (1, 1, FULL_CONNECTIONS));
    }
}
