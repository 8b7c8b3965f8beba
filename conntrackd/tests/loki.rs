//! Loki sink end to end: the daemon in a namespace pushes to a real
//! Loki-protocol receiver, VictoriaLogs, running in the same namespace on
//! 127.0.0.1 (address prefix `/insert`), read back with LogsQL. Covers the
//! labels and fields, an outage with events flowing, a daemon restart
//! during an outage (the spool), and reloads during an outage (the spool handed
//! to the new sink). Needs root and `cargo xtask setup`.
mod common;
mod loki_support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::{enter_netns, entry::Entry, inject, require_root_and_tools, Daemon, Netns};
use loki_support::{spool_watch::SpoolWatch, Fault, FaultProxy, TempDir, VictoriaLogs};
use serde_json::Value;

fn loki_config(address: &str, extra: &str) -> String {
    format!(
        "[sink.loki]\nenable = true\naddress = \"{address}\"\nbatch_wait = \"200ms\"\n\
         min_backoff = \"200ms\"\nmax_backoff = \"2s\"\ntimeout = \"5s\"\n{extra}\n"
    )
}

/// NEW rows per source port (counts > 1 are duplicates).
fn new_per_port(rows: &[Value]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for row in rows.iter().filter(|r| r["_msg"].as_str().is_some_and(|m| m.starts_with("NEW TCP"))) {
        let port = row["src_port"].as_str().and_then(|p| p.parse().ok()).unwrap_or(0);
        *counts.entry(port).or_insert(0) += 1;
    }
    counts
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: valid buffer of the given length.
    assert_eq!(unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) }, 0);
    String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == 0).unwrap()]).into_owned()
}

fn assert_each_once(counts: &BTreeMap<u16, usize>, ports: impl Iterator<Item = u16>) {
    let expected: BTreeMap<u16, usize> = ports.map(|p| (p, 1)).collect();
    assert_eq!(counts, &expected, "every event exactly once (port -> count)");
}

#[test]
fn events_arrive_with_stream_labels_and_fields() {
    require_root_and_tools();
    let ns = Netns::new("loki-e2e");
    enter_netns(&ns.name);
    let data = TempDir::new("e2e-data");
    let vl = VictoriaLogs::start(&ns, &data.0);
    // Credentials in the URL (VictoriaLogs ignores them) must not break the prefix.
    let address = vl.sink_address().replace("http://", "http://ops:s3cret@");
    let d = Daemon::start(&ns, &loki_config(&address, "labels = [\"env=test\"]"));
    for sport in 41001..=41003 {
        Entry::tcp("10.99.0.1", "8.8.8.8", sport, 443).established().insert(&ns);
    }
    let rows = vl.wait_rows("3 NEW rows", |rows| new_per_port(rows).len() == 3);
    let (stopped, _) = d.stop();
    assert_eq!(stopped.get("loki.written"), 3);
    assert_eq!(stopped.get("loki.dropped_write_error"), 0);
    let row = rows.iter().find(|r| r["src_port"] == "41002").expect("row for port 41002");
    assert_eq!(row["_msg"], "NEW TCP connection from 10.99.0.1:41002 to 8.8.8.8:443");
    // Stream labels: exactly the defaults and the user's, no per-flow values.
    let stream = row["_stream"].as_str().expect("_stream");
    let expected_stream = format!("{{env=\"test\",host=\"{}\",level=\"INFO\",service_name=\"conntrackd\",type=\"NEW\"}}", hostname());
    assert_eq!(stream, expected_stream);
    // Structured metadata: every event field.
    for (field, value) in [("prot", "TCP"), ("src_addr", "10.99.0.1"), ("dst_addr", "8.8.8.8"), ("dst_port", "443"), ("tcp_state", "ESTABLISHED")] {
        assert_eq!(row[field], value, "field {field} of {row}");
    }
    let flow: u32 = row["flow"].as_str().expect("flow").parse().expect("flow is a number");
    assert_eq!(flow, ns.conntrack_id("sport=41002"));
    assert_each_once(&new_per_port(&rows), 41001..=41003);
}

#[test]
fn an_outage_while_events_flow_loses_and_duplicates_nothing() {
    require_root_and_tools();
    let ns = Netns::new("loki-outage");
    enter_netns(&ns.name);
    let (data, spool) = (TempDir::new("outage-data"), TempDir::new("outage-spool"));
    let mut vl = VictoriaLogs::start(&ns, &data.0);
    let extra = format!("encoding = \"json\"\nspool_dir = \"{}\"", spool.0.display());
    let d = Daemon::start(&ns, &loki_config(&vl.sink_address(), &extra));
    let mut port = 42000;
    let mut burst = |n: u16, pause: Duration| {
        for _ in 0..n {
            port += 1;
            Entry::tcp("10.99.0.1", "8.8.8.8", port, 443).established().insert(&ns);
            std::thread::sleep(pause);
        }
        port
    };
    burst(10, Duration::ZERO);
    vl.wait_rows("the first 10 rows", |rows| new_per_port(rows).len() == 10);
    // 10 s down with events flowing: refused pushes, backoff up to its 2 s cap
    // several times over, batches piling up in the spool.
    vl.stop();
    let outage = Instant::now();
    burst(25, Duration::from_millis(400));
    d.wait_log("loki push failed");
    std::thread::sleep(Duration::from_secs(10).saturating_sub(outage.elapsed()));
    vl.restart();
    let last = burst(10, Duration::from_millis(50));
    let rows = vl.wait_rows("all 45 rows", |rows| new_per_port(rows).len() == 45);
    let (stopped, _) = d.stop();
    assert_each_once(&new_per_port(&rows), 42001..=last);
    assert_eq!(stopped.get("loki.written"), 45);
    assert_eq!(stopped.get("loki.dropped_write_error"), 0);
    assert_eq!(stopped.get("loki.dropped_queue_full"), 0);
}

#[test]
fn batches_spooled_during_an_outage_survive_a_daemon_restart() {
    require_root_and_tools();
    let ns = Netns::new("loki-spool");
    enter_netns(&ns.name);
    let (data, spool) = (TempDir::new("spool-data"), TempDir::new("spool-dir"));
    let mut vl = VictoriaLogs::start(&ns, &data.0);
    let extra = format!("spool_dir = \"{}\"\nshutdown_timeout = \"1s\"", spool.0.display());
    let config = loki_config(&vl.sink_address(), &extra);
    vl.stop();
    let d = Daemon::start(&ns, &config);
    for sport in 43001..=43008 {
        Entry::tcp("10.99.0.1", "8.8.8.8", sport, 443).established().insert(&ns);
    }
    d.wait_log("loki push failed");
    let (stopped, _) = d.stop();
    assert_eq!(stopped.get("loki.written"), 0);
    assert_eq!(stopped.get("loki.dropped_write_error"), 0, "nothing lost: spooled");
    let batches =
        |dir: &std::path::Path| std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".batch")).count();
    let spooled = batches(&spool.0);
    assert!(spooled >= 1, "the spool holds the batches");
    vl.restart();
    let d = Daemon::start(&ns, &config);
    Entry::tcp("10.99.0.1", "8.8.8.8", 43009, 443).established().insert(&ns);
    let rows = vl.wait_rows("the 8 spooled rows and 1 new", |rows| new_per_port(rows).len() == 9);
    let (stopped, _) = d.stop();
    assert_each_once(&new_per_port(&rows), 43001..=43009);
    assert_eq!(stopped.get("loki.written"), 9);
    assert_eq!(batches(&spool.0), 0, "the spool is empty again");
}

#[test]
fn faults_get_the_documented_behaviour_against_the_real_receiver() {
    require_root_and_tools();
    let ns = Netns::new("loki-faults");
    enter_netns(&ns.name);
    let data = TempDir::new("faults-data");
    let vl = VictoriaLogs::start(&ns, &data.0);
    let proxy = FaultProxy::start(
        vl.port,
        &[
            Fault::Status(429, "rate limited"),
            Fault::Status(500, "internal"),
            Fault::Forward,
            Fault::Status(400, "entry for stream has invalid labels"),
            Fault::Close,
            Fault::Forward,
            Fault::Slow(Duration::from_millis(5000)),
        ],
    );
    let address = format!("http://127.0.0.1:{}/insert", proxy.port);
    let config = format!(
        "[sink.loki]\nenable = true\naddress = \"{address}\"\nbatch_wait = \"100ms\"\n\
         timeout = \"3s\"\nmin_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n"
    );
    let d = Daemon::start(&ns, &config);
    let count = |port: u16| move |rows: &[Value]| new_per_port(rows).get(&port).copied().unwrap_or(0) >= 1;
    // 429, then 500: retried, stored once.
    Entry::tcp("10.99.0.1", "8.8.8.8", 44001, 443).established().insert(&ns);
    vl.wait_rows("port 44001", count(44001));
    // 400: dropped, counted, the server's message logged; never retried.
    Entry::tcp("10.99.0.1", "8.8.8.8", 44002, 443).established().insert(&ns);
    let rejected = d.wait_log("loki rejected a batch");
    assert!(rejected.contains("entry for stream has invalid labels"), "{rejected}");
    // A closed connection: retried, stored once.
    Entry::tcp("10.99.0.1", "8.8.8.8", 44003, 443).established().insert(&ns);
    vl.wait_rows("port 44003", count(44003));
    // Too slow: stored by the receiver, but the client timed out and sent it
    // again. At-least-once: this is the one case that duplicates.
    Entry::tcp("10.99.0.1", "8.8.8.8", 44004, 443).established().insert(&ns);
    let rows = vl.wait_rows("port 44004 twice", |rows| new_per_port(rows).get(&44004) == Some(&2));
    assert_eq!(proxy.left(), 0, "every fault was used");
    let (stopped, _) = d.stop();
    let counts = new_per_port(&rows);
    assert_eq!(counts, [(44001, 1), (44003, 1), (44004, 2)].into_iter().collect(), "44002 rejected, 44004 duplicated");
    assert_eq!(stopped.get("loki.written"), 3);
    assert_eq!(stopped.get("loki.dropped_write_error"), 1);
}

/// NEW rows per (src_addr, src_port) of the injected UDP entries.
fn new_per_source(rows: &[Value]) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for row in rows.iter().filter(|r| r["_msg"].as_str().is_some_and(|m| m.starts_with("NEW UDP"))) {
        let key = (row["src_addr"].as_str().unwrap_or("?").to_string(), row["src_port"].as_str().unwrap_or("?").to_string());
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Three SIGHUPs that change the Loki sink (its labels) while Loki is down,
/// each right after a burst of events, so the old sink holds spooled batches,
/// queued events and a batch being filled: one owner takes the spool over (no
/// spool file is ever written twice, as two writers numbering from one
/// sequence would), and once Loki is back every event is stored exactly once.
#[test]
fn reloads_during_an_outage_hand_the_spool_over_and_lose_or_duplicate_nothing() {
    const ROUND: u32 = 500;
    const ROUNDS: u32 = 4;
    require_root_and_tools();
    let ns = Netns::new("loki-reload");
    enter_netns(&ns.name);
    let (data, spool) = (TempDir::new("reload-data"), TempDir::new("reload-spool"));
    let mut vl = VictoriaLogs::start(&ns, &data.0);
    vl.stop();
    let config = |generation: u32| {
        let extra = format!("labels = [\"reload={generation}\"]\nspool_dir = \"{}\"", spool.0.display());
        format!("filter = [\"log type NEW and protocol UDP and destination port 53\", \"drop any\"]\n{}", loki_config(&vl.sink_address(), &extra))
    };
    let d = Daemon::start(&ns, &config(0));
    let watch = SpoolWatch::start(&spool.0);
    for round in 0..ROUNDS {
        assert_eq!(inject::udp_entries_from(&ns.name, round * ROUND, ROUND, [198, 51, 100, 53]), ROUND);
        if round + 1 < ROUNDS {
            std::fs::write(d.config_path(), config(round + 1)).unwrap();
            d.signal(libc::SIGHUP);
            d.wait_log("configuration reloaded");
        }
    }
    // Still down: let the last batch (batch_wait 200 ms) reach the spool.
    std::thread::sleep(Duration::from_secs(1));
    let moved_in = watch.finish();
    let mut seen = std::collections::BTreeSet::new();
    let rewritten: Vec<&String> = moved_in.iter().filter(|name| !seen.insert(name.as_str())).collect();

    vl.restart();
    let total = (ROUND * ROUNDS) as usize;
    let until = Instant::now() + loki_support::QUERY_WAIT;
    while new_per_source(&vl.rows()).len() < total && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(250));
    }
    // A late duplicate would come within a batch_wait and a retry.
    std::thread::sleep(Duration::from_millis(1500));
    let counts = new_per_source(&vl.rows());
    let (stopped, _) = d.stop();
    let expected: std::collections::BTreeSet<(String, String)> = (0..ROUND * ROUNDS)
        .map(|i| {
            let ([a, b, c, e], port) = inject::udp_source(i);
            (format!("{a}.{b}.{c}.{e}"), port.to_string())
        })
        .collect();
    let missing = expected.iter().filter(|k| !counts.contains_key(*k)).count();
    let duplicates: usize = counts.values().map(|&n| n - 1).sum();
    let unexpected = counts.keys().filter(|k| !expected.contains(*k)).count();
    // Batch files only: the directory keeps its `.lock` (the owner's flock).
    let left = std::fs::read_dir(&spool.0).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".batch")).count();
    println!(
        "spool hand-over: {} spool files written, {} of them twice; VictoriaLogs: {} of {total} events, {missing} missing, {duplicates} duplicates, \
         {unexpected} unexpected; loki.written={} dropped_write_error={} dropped_queue_full={}; {left} spool files left",
        moved_in.len(),
        rewritten.len(),
        counts.len() - unexpected,
        stopped.get("loki.written"),
        stopped.get("loki.dropped_write_error"),
        stopped.get("loki.dropped_queue_full"),
    );
    assert!(!moved_in.is_empty(), "nothing was spooled while Loki was down");
    assert!(rewritten.is_empty(), "two sinks wrote the spool: {} of {} file names were written twice: {rewritten:?}", rewritten.len(), moved_in.len());
    assert_eq!((missing, duplicates, unexpected), (0, 0, 0), "every event exactly once (missing, duplicates, unexpected)");
    assert_eq!(stopped.get("loki.written"), total as u64);
    assert_eq!((stopped.get("loki.dropped_write_error"), stopped.get("loki.dropped_queue_full")), (0, 0));
    assert_eq!(left, 0, "the spool is empty once Loki took everything");
}
