//! Loki sink end to end: the daemon in a namespace pushes to a real
//! Loki-protocol receiver, VictoriaLogs, running in the same namespace on
//! 127.0.0.1 (address prefix `/insert`), read back with LogsQL. Covers the
//! labels and fields, an outage with events flowing, and a daemon restart
//! during an outage (the spool). Needs root and `cargo xtask setup`.
mod common;

use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{enter_netns, require_root_and_tools, Daemon, Netns};
use serde_json::Value;

/// How long the receiver may take to make pushed rows queryable.
const QUERY_WAIT: Duration = Duration::from_secs(40);

fn victoria_logs_binary() -> PathBuf {
    let path = match std::env::var_os("CONNTRACKD_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/conntrackd"),
    }
    .join("victorialogs-v1.52.1/victoria-logs");
    assert!(path.is_file(), "{} is missing: run `cargo xtask setup` (it builds VictoriaLogs with Go)", path.display());
    path
}

/// A VictoriaLogs process in a namespace, on 127.0.0.1:`port`, storing in `data`.
struct VictoriaLogs {
    child: Option<Child>,
    ns: String,
    port: u16,
    data: PathBuf,
}

impl VictoriaLogs {
    /// Starts it on a free port of the namespace (the calling thread must be in it).
    fn start(ns: &Netns, data: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut vl = Self { child: None, ns: ns.name.clone(), port, data: data.to_path_buf() };
        vl.restart();
        vl
    }

    fn restart(&mut self) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(victoria_logs_binary())
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!("-storageDataPath={}", self.data.display()))
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .spawn()
            .expect("start victoria-logs");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        while get(&self.url("/health")).is_none() {
            assert!(Instant::now() < until, "VictoriaLogs did not become healthy on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (VictoriaLogs flushes its data) and wait.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our child's pid (ip netns exec execs the binary).
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            child.wait().expect("wait victoria-logs");
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The address the sink gets: Loki's API lives under `/insert` here.
    fn sink_address(&self) -> String {
        self.url("/insert")
    }

    /// Every stored row, as JSON objects.
    fn rows(&self) -> Vec<Value> {
        let body = get(&self.url("/select/logsql/query?query=*&limit=100000")).unwrap_or_default();
        body.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("LogsQL JSON line")).collect()
    }

    /// Polls until `done(rows)` holds; returns the rows.
    fn wait_rows(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let until = Instant::now() + QUERY_WAIT;
        loop {
            let rows = self.rows();
            if done(&rows) {
                return rows;
            }
            assert!(Instant::now() < until, "VictoriaLogs never had {what}; it has {} rows: {rows:?}", rows.len());
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for VictoriaLogs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn get(url: &str) -> Option<String> {
    let response = ureq::get(url).timeout(Duration::from_secs(5)).call().ok()?;
    response.into_string().ok()
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("conntrackd-loki-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A conntrack entry 10.99.0.1:`sport` -> 8.8.8.8:443 (one NEW event, no packet sent).
fn inject(ns: &Netns, sport: u16) {
    let sport = sport.to_string();
    ns.exec(&[
        "conntrack", "-I", "-p", "tcp", "-s", "10.99.0.1", "-d", "8.8.8.8", "--sport", &sport, "--dport", "443", "--state",
        "ESTABLISHED", "-t", "120", "-u", "SEEN_REPLY",
    ]);
}

fn loki_config(address: &str, extra: &str) -> String {
    format!(
        "[sink.loki]\nenable = true\naddress = \"{address}\"\nbatch_wait = \"200ms\"\n\
         min_backoff = \"200ms\"\nmax_backoff = \"2s\"\ntimeout = \"2s\"\n{extra}\n"
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
        inject(&ns, sport);
    }
    let rows = vl.wait_rows("3 NEW rows", |rows| new_per_port(rows).len() == 3);
    let (stopped, _) = d.stop();
    assert_eq!(stopped.get("loki.written"), 3);
    assert_eq!(stopped.get("loki.dropped_write_error"), 0);
    let row = rows.iter().find(|r| r["src_port"] == "41002").expect("row for port 41002");
    assert_eq!(row["_msg"], "NEW TCP connection from 10.99.0.1:41002 to 8.8.8.8:443");
    // Stream labels: exactly the defaults and the user's, no per-flow values.
    let stream = row["_stream"].as_str().expect("_stream");
    let expected_stream = format!("{{env=\"test\",host=\"{}\",service_name=\"conntrackd\",type=\"NEW\"}}", hostname());
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
            inject(&ns, port);
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
        inject(&ns, sport);
    }
    d.wait_log("loki push failed");
    let (stopped, _) = d.stop();
    assert_eq!(stopped.get("loki.written"), 0);
    assert_eq!(stopped.get("loki.dropped_write_error"), 0, "nothing lost: spooled");
    let spooled = std::fs::read_dir(&spool.0).unwrap().count();
    assert!(spooled >= 1, "the spool holds the batches");
    vl.restart();
    let d = Daemon::start(&ns, &config);
    inject(&ns, 43009);
    let rows = vl.wait_rows("the 8 spooled rows and 1 new", |rows| new_per_port(rows).len() == 9);
    let (stopped, _) = d.stop();
    assert_each_once(&new_per_port(&rows), 43001..=43009);
    assert_eq!(stopped.get("loki.written"), 9);
    assert_eq!(std::fs::read_dir(&spool.0).unwrap().count(), 0, "the spool is empty again");
}
