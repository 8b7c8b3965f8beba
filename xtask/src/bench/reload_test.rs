//! A reload never stalls the event path, and reloaded Loki sinks never lose or
//! duplicate a spooled event. In the benchmark's namespaces, conntrackd (the
//! debug build `cargo test --workspace` makes; eBPF source, NEW events to the
//! public address only) runs with the Loki sink pointing at a VictoriaLogs
//! that is not up yet, a `spool_dir`, and `/metrics` on the client's loopback.
//! The generator sends [`CONNECTIONS`] SYNs at [`RATE`]/s while the test sends
//! [`RELOADS`] SIGHUPs one second apart, alternating a config whose Loki sink
//! changed (another label) with one where only the rules changed (the sink must
//! stay as it is). Then VictoriaLogs comes up; once the spool has drained the
//! daemon is stopped and VictoriaLogs is asked what it stored. Expected: no
//! ring buffer loss, no overflow, no sink drop, every reload applied, every
//! generated connection's NEW stored exactly once, the spool empty. The
//! figures are printed whatever the outcome. Holds [`super::LAB`].
use std::{
    fs,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::{
    consumer::{Consumer, Daemon, Kind},
    generator::{self, Load},
    mode::Mode,
    netns::{self, Lab},
    parse,
    reload_figures::Figures,
    settings::ConntrackMax,
    victorialogs::{self, VictoriaLogs},
};

/// 10 s of load at [`RATE`], a SIGHUP in the middle of each of its seconds.
const CONNECTIONS: u32 = 500_000;
const RATE: u32 = 50_000;
const RELOADS: u32 = 10;
const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// The Loki sink's queue holds the whole load: the debug build encodes about
/// 30k events per CPU second, less than [`RATE`], so its sink thread lags and
/// catches up after the load; what is measured is the event path and delivery.
const QUEUE_EVENTS: u32 = 1 << 20;
/// VictoriaLogs and the daemon's metrics, on the client namespace's loopback.
const VL_PORT: u16 = 19438;
const METRICS_PORT: u16 = 19439;
/// After the load: how long the daemon may take to read what is in flight.
const READ_QUIET: Duration = Duration::from_secs(3);
/// Once VictoriaLogs is up: the longest the spool may take to drain, and how
/// long nothing may change before the test stops waiting.
const DRAIN_LIMIT: Duration = Duration::from_secs(90);
const DRAIN_QUIET: Duration = Duration::from_secs(5);
/// After the drain: time for a late duplicate to arrive (batch_wait 1 s, and
/// VictoriaLogs makes rows searchable within a second).
const SETTLE: Duration = Duration::from_secs(3);
/// After the daemon stopped: how long the row count must hold still.
const STABLE: Duration = Duration::from_secs(2);

#[test]
fn reloads_under_load_with_loki_down_stall_nothing_and_store_every_event_once() {
    let _lab = super::LAB.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the test creates network namespaces: run as root (cargo xtask test)");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let daemon = root.join("target/debug/conntrackd");
    assert!(daemon.is_file(), "{} is missing: build it with cargo build -p conntrackd (cargo xtask test does)", daemon.display());
    let vl = crate::setup_victorialogs::binary().expect("VictoriaLogs location");
    assert!(vl.is_file(), "{} is missing: run cargo xtask setup (it builds VictoriaLogs with Go)", vl.display());
    let dir = root.join("target/reload-test");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("creating target/reload-test");

    let figures = run(&daemon, &dir).expect("the reload scenario");
    println!("{}", figures.describe());
    let failures = figures.failures();
    assert!(failures.is_empty(), "{}\n{}\n(daemon log: {})", failures.join("\n"), figures.describe(), dir.join("daemon.stderr").display());
}

fn run(binary: &Path, dir: &Path) -> Result<Figures> {
    let started = Instant::now();
    let mut figures = Figures { requested: CONNECTIONS, sighups: RELOADS, ..Figures::default() };
    let spool = dir.join("spool");
    let sources = generator::sources_for(CONNECTIONS, netns::CLIENT_ADDR);
    let lab = Lab::create(&sources)?;
    let _max = ConntrackMax::ensure(u64::from(CONNECTIONS) + 50_000)?;
    let daemon = Daemon { binary, original: None, config_dir: dir };
    let config_path = daemon.config(Kind::Conntrackd);
    write_config(&config_path, &config(&spool, 0))?;
    let consumer = Consumer::start(Kind::Conntrackd, &daemon, &dir.join("daemon.out"))?;

    let load = Load { connections: CONNECTIONS, rate: Some(RATE), sources, mode: Mode::AllPublic, port: netns::LOAD_PORT };
    let generating = Arc::new(AtomicBool::new(true));
    let watcher = PauseWatcher::start(Arc::clone(&generating));
    let load_start = Instant::now();
    let generator = thread::spawn(move || generator::run(&netns::path(netns::CLIENT), &load));
    for k in 1..=RELOADS {
        sleep_until(load_start + RELOAD_EVERY * k - RELOAD_EVERY / 2);
        write_config(&config_path, &config(&spool, k))?;
        consumer.signal(libc::SIGHUP)?;
    }
    let sent = generator.join().map_err(|_| anyhow::anyhow!("the generator panicked"))??;
    generating.store(false, Ordering::Relaxed);
    figures.longest_pause = watcher.finish();
    figures.sent = Some(sent);
    figures.created = lab.client_entries_to(netns::SERVER_ADDR)?;
    figures.read = wait_read(figures.created)?;

    let vl = VictoriaLogs::start(&dir.join("victorialogs-data"), VL_PORT)?;
    let drain_start = Instant::now();
    figures.drained = wait_drained(&vl, figures.created)?;
    figures.drain = drain_start.elapsed();
    thread::sleep(SETTLE);
    let metrics = victorialogs::get(METRICS_PORT, "/metrics")?;
    figures.reloads = sample(&metrics, "conntrackd_config_reloads_total", "").unwrap_or(0);
    figures.reload_failures = sample(&metrics, "conntrackd_config_reload_failures_total", "").unwrap_or(0);
    let measured = consumer.stop()?;
    let log = dir.join("daemon.stderr");
    fs::write(&log, measured.stderr.join("\n") + "\n").with_context(|| format!("writing {}", log.display()))?;
    figures.counters = parse::counters(&measured.stderr, "conntrackd stopped").context("no `conntrackd stopped` line in the daemon's log")?;
    // What the daemon pushed while it stopped becomes searchable within a second or two.
    let total = wait_stable(&vl)?;
    let load_rows = format!("_stream:{{type=\"NEW\"}} dst_addr:=\"{}\"", netns::SERVER_ADDR);
    figures.stored = vl.stat(&format!("{load_rows} | stats count() as n"), "n")?;
    figures.distinct = vl.stat(&format!("{load_rows} | stats count_uniq(src_addr, src_port) as n"), "n")?;
    figures.other_rows = total.saturating_sub(figures.stored);
    // Batch files only: the directory keeps its `.lock` (the owner's flock).
    figures.spool_left = fs::read_dir(&spool).map_or(0, |d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".batch")).count());
    drop(vl);
    drop(lab);
    figures.wall = started.elapsed();
    Ok(figures)
}

/// The daemon's config at reload `k`: odd reloads change the Loki sink (its
/// `reload` label), even ones only the rules (same meaning, other text).
fn config(spool: &Path, k: u32) -> String {
    let generation = k.div_ceil(2);
    let rules = if (k / 2) % 2 == 1 {
        "[\"log type NEW and protocol TCP and destination network public\", \"drop any\"]"
    } else {
        "[\"log type NEW and destination network public\", \"drop any\"]"
    };
    format!(
        "filter = {rules}\n\n[log]\nformat = \"text\"\n\n[source]\nkind = \"ebpf\"\n\n\
         [sink.loki]\nenable = true\naddress = \"http://127.0.0.1:{VL_PORT}/insert\"\nlabels = [\"reload={generation}\"]\n\
         spool_dir = \"{}\"\nspool_max_bytes = 1073741824\nqueue_events = {QUEUE_EVENTS}\nmin_backoff = \"200ms\"\nmax_backoff = \"1s\"\n\n\
         [metrics]\nlisten = \"127.0.0.1:{METRICS_PORT}\"\n",
        spool.display()
    )
}

/// Replaces the config file in one step, so a reload never reads half of it.
fn write_config(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("toml.tmp");
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

fn sleep_until(at: Instant) {
    thread::sleep(at.saturating_duration_since(Instant::now()));
}

/// Waits until the daemon has read `expected` events, or its count stopped moving.
fn wait_read(expected: u64) -> Result<u64> {
    let mut last = (u64::MAX, Instant::now());
    loop {
        let read = sample(&victorialogs::get(METRICS_PORT, "/metrics")?, "conntrackd_events_read_total", "").unwrap_or(0);
        if read >= expected {
            return Ok(read);
        }
        if read != last.0 {
            last = (read, Instant::now());
        } else if last.1.elapsed() >= READ_QUIET {
            return Ok(read);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until VictoriaLogs holds `expected` rows and the Loki sink is idle
/// (nothing queued, nothing spooled): true. Also true once the sink is idle and
/// the count has not moved for [`DRAIN_QUIET`] (what is missing will not come);
/// false after [`DRAIN_LIMIT`]. The sink updates its gauges between chunks of
/// work, but a sink that works makes the count move.
fn wait_drained(vl: &VictoriaLogs, expected: u64) -> Result<bool> {
    let until = Instant::now() + DRAIN_LIMIT;
    let mut last = (u64::MAX, Instant::now());
    loop {
        let metrics = victorialogs::get(METRICS_PORT, "/metrics")?;
        let pending = sample(&metrics, "conntrackd_sink_pending_bytes", "sink=\"loki\"");
        let queued = sample(&metrics, "conntrackd_sink_queued_events", "sink=\"loki\"");
        let stored = vl.stat("* | stats count() as n", "n")?;
        let idle = pending == Some(0) && queued == Some(0);
        if stored >= expected && idle {
            return Ok(true);
        }
        if !idle || stored != last.0 {
            last = (stored, Instant::now());
        } else if last.1.elapsed() >= DRAIN_QUIET {
            eprintln!("reload test: the Loki sink is idle but VictoriaLogs has {stored} of {expected} rows");
            return Ok(true);
        }
        if Instant::now() > until {
            eprintln!("reload test: not drained after {DRAIN_LIMIT:?}: {stored} rows, pending {pending:?}, queued {queued:?}");
            return Ok(false);
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// The stored row count once it has not changed for [`STABLE`] (at most 30 s).
fn wait_stable(vl: &VictoriaLogs) -> Result<u64> {
    let until = Instant::now() + Duration::from_secs(30);
    let mut last = (vl.stat("* | stats count() as n", "n")?, Instant::now());
    while last.1.elapsed() < STABLE && Instant::now() < until {
        thread::sleep(Duration::from_millis(250));
        let n = vl.stat("* | stats count() as n", "n")?;
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
    Ok(last.0)
}

/// The sum of the samples of metric `name` whose labels contain `label`.
fn sample(text: &str, name: &str, label: &str) -> Option<u64> {
    let values: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter(|rest| rest.starts_with(' ') || (rest.starts_with('{') && rest.contains(label)))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Samples `conntrackd_events_read_total` while the load runs and keeps the
/// longest time it did not grow: the event path stalled that long. A stalled
/// daemon answers late (its metrics share the event loop), which the
/// timestamps of the answers show.
struct PauseWatcher {
    thread: thread::JoinHandle<Duration>,
}

impl PauseWatcher {
    fn start(running: Arc<AtomicBool>) -> Self {
        let thread = thread::spawn(move || {
            let (mut last, mut since, mut longest) = (None, Instant::now(), Duration::ZERO);
            while running.load(Ordering::Relaxed) {
                let read = victorialogs::get(METRICS_PORT, "/metrics").ok().and_then(|m| sample(&m, "conntrackd_events_read_total", ""));
                let now = Instant::now();
                if read.is_some() && read != last {
                    longest = longest.max(now - since);
                    (last, since) = (read, now);
                }
                thread::sleep(Duration::from_millis(50));
            }
            longest
        });
        Self { thread }
    }

    fn finish(self) -> Duration {
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_summed_over_matching_labels() {
        let text =
            "# HELP x\nconntrackd_sink_pending_bytes{sink=\"loki\"} 12\nconntrackd_sink_pending_bytes{sink=\"stream\"} 5\nconntrackd_events_read_total 7\n";
        assert_eq!(sample(text, "conntrackd_sink_pending_bytes", "sink=\"loki\""), Some(12));
        assert_eq!(sample(text, "conntrackd_events_read_total", ""), Some(7));
        assert_eq!(sample(text, "conntrackd_events_read", ""), None);
    }

    #[test]
    fn reloads_alternate_a_changed_sink_and_changed_rules() {
        let spool = Path::new("/tmp/s");
        let label = |k| config(spool, k).lines().find(|l| l.starts_with("labels")).map(str::to_string);
        let rules = |k| config(spool, k).lines().next().map(str::to_string);
        for k in 1..=RELOADS {
            let sink_changed = label(k) != label(k - 1);
            let rules_changed = rules(k) != rules(k - 1);
            assert_eq!((sink_changed, rules_changed), (k % 2 == 1, k % 2 == 0), "reload {k}");
        }
    }
}
