//! Helpers of the side-by-side tests (`original.rs`): the Go original
//! (built by `cargo xtask setup` from `xtask/peers/conntrackd-go`) running in
//! a test namespace, the injected scenario both daemons see, RFC 3339 times,
//! and the list of documented differences in the README's migration guide;
//! [`rules`] and [`rule_cases`]: the rule table (`original_rules.rs`).
#![allow(dead_code)]

pub mod rule_cases;
pub mod rules;

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc::{channel, Receiver},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{conntrack, Netns};

/// How long the scenario's events may take to arrive.
pub const COLLECT: Duration = Duration::from_secs(30);

/// The original's binary (v1.4.1, the CEL release).
pub fn original_binary() -> PathBuf {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/peers/conntrackd-go-1.4.1"));
    assert!(path.is_file(), "{} is missing: run `cargo xtask setup` (it builds the Go original with Go)", path.display());
    path
}

/// The original running in a namespace, its stdout read line by line.
pub struct Original {
    child: Child,
    pub lines: Receiver<String>,
    stderr: Receiver<String>,
    config: PathBuf,
}

impl Original {
    /// `conntrackd-go run --config <yaml>` in `ns` with only `env` (and PATH) set.
    pub fn start(ns: &Netns, yaml: &str, env: &[(&str, &str)]) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The original picks the format by the extension.
        let config = std::env::temp_dir().join(format!("conntrackd-original-{}-{n}.yaml", std::process::id()));
        std::fs::write(&config, yaml).expect("write the original's config");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(original_binary())
            .args(["run", "--config"])
            .arg(&config)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the original");
        let lines = forward(child.stdout.take().expect("stdout"));
        let stderr = forward(child.stderr.take().expect("stderr"));
        Self { child, lines, stderr, config }
    }

    /// What it wrote on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, then wait (it flushes its Loki batch on the way out).
    pub fn stop(mut self) -> String {
        // SAFETY: kill(2) on our child (ip netns exec execs the original).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().expect("wait for the original");
        let log = self.stderr_so_far();
        assert!(status.success(), "the original exited with {status}:\n{log}");
        log
    }
}

impl Drop for Original {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn forward(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Creates and deletes probe entries until `seen(sport)` says a peer
/// reported the probe's NEW: the original logs "Starting" before it has
/// subscribed, so this is how the test knows it listens.
pub fn warm_up(ns: &Netns, seen: impl Fn(u16) -> bool) {
    let until = Instant::now() + COLLECT;
    for sport in 30_000u16.. {
        let port = sport.to_string();
        let tuple = ["-p", "udp", "-s", "10.255.0.1", "-d", "10.255.0.2", "--sport", &port, "--dport", "9"];
        conntrack(ns, &[&["-I"][..], &tuple, &["-t", "30"]].concat());
        let ok = seen(sport);
        conntrack(ns, &[&["-D"][..], &tuple].concat());
        if ok {
            return;
        }
        assert!(Instant::now() < until, "no peer reported a probe entry within {COLLECT:?}");
    }
}

/// True when a line is the probe's NEW with source port `sport`.
pub fn is_probe(ev: &Value, sport: u16) -> bool {
    ev["src_addr"] == "10.255.0.1" && ev["src_port"] == sport && ev["type"] == "NEW"
}

/// One injected connection.
#[derive(Debug, Clone)]
pub struct Entry {
    pub prot: &'static str,
    pub src: String,
    pub dst: String,
    pub sport: u16,
    pub dport: u16,
}

/// 20 connections: TCP and UDP, IPv4 and IPv6, to destinations the GeoIP
/// test database (`mmdb::edge_city_db`) knows fully, without a city, or
/// without coordinates. Sources are private (never looked up).
pub fn scenario() -> Vec<Entry> {
    (0..20u16)
        .map(|i| {
            let (prot, v6) = [("tcp", false), ("udp", false), ("tcp", true), ("udp", true)][usize::from(i % 4)];
            let (src, dst) = if v6 {
                (format!("fd00::{}", i + 1), format!("2001:db8:1::{}", i + 1))
            } else {
                let dst = match i % 3 {
                    0 => format!("203.0.113.{}", 10 + i),
                    1 => format!("198.51.100.{}", 5 + i),
                    _ => format!("198.51.100.{}", 140 + i),
                };
                (format!("10.1.0.{}", i + 1), dst)
            };
            Entry { prot, src, dst, sport: 41_000 + i, dport: if prot == "tcp" { 443 } else { 53 } }
        })
        .collect()
}

/// Every entry created (NEW), changed (UPDATE) and deleted (DESTROY): 60 events.
pub fn inject(ns: &Netns, entries: &[Entry]) {
    for e in entries {
        let (sport, dport) = (e.sport.to_string(), e.dport.to_string());
        let tuple = ["-p", e.prot, "-s", &e.src, "-d", &e.dst, "--sport", &sport, "--dport", &dport];
        let tcp = e.prot == "tcp";
        let new: &[&str] = if tcp { &["-t", "60", "--state", "SYN_SENT"] } else { &["-t", "60"] };
        let update: &[&str] = if tcp { &["-t", "120", "--state", "ESTABLISHED"] } else { &["-t", "120"] };
        conntrack(ns, &[&["-I"][..], &tuple, new].concat());
        conntrack(ns, &[&["-U"][..], &tuple, update].concat());
        conntrack(ns, &[&["-D"][..], &tuple].concat());
    }
}

/// True when the event (any sink's JSON fields) is one of the scenario's.
pub fn in_scenario(entries: &[Entry], src_addr: &str, src_port: &str) -> bool {
    entries.iter().any(|e| e.src == src_addr && e.sport.to_string() == src_port)
}

/// Nanoseconds since the epoch of an RFC 3339 time (`Z` or `±hh:mm`), and
/// the number of fraction digits it was written with.
pub fn rfc3339(text: &str) -> (i128, usize) {
    let bad = || -> ! { panic!("not an RFC 3339 time: {text:?}") };
    let num = |s: &str| s.parse::<i64>().unwrap_or_else(|_| bad());
    let (date, rest) = text.split_once('T').unwrap_or_else(|| bad());
    let d: Vec<i64> = date.split('-').map(num).collect();
    let zone_at = rest.rfind(['Z', '+', '-']).unwrap_or_else(|| bad());
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let t: Vec<i64> = hms.split(':').map(num).collect();
    let offset = match zone {
        "Z" => 0,
        z => {
            let (h, m) = z[1..].split_once(':').unwrap_or_else(|| bad());
            (num(h) * 3600 + num(m) * 60) * if z.starts_with('-') { -1 } else { 1 }
        }
    };
    if d.len() != 3 || t.len() != 3 {
        bad();
    }
    // Days from civil (Howard Hinnant).
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2] - offset;
    let nanos = if frac.is_empty() { 0 } else { num(&format!("{frac:0<9}")[..9]) };
    (i128::from(secs) * 1_000_000_000 + i128::from(nanos), frac.len())
}

/// The keys of the README's list of remaining differences (in backticks in
/// the first cell of each row between the `original-differences` markers;
/// a row may name several) that start with `prefix`.
pub fn documented(prefix: &str) -> BTreeSet<String> {
    let readme = include_str!("../../../README.md");
    let start = readme.find("<!-- original-differences -->").expect("README: no <!-- original-differences --> marker");
    let end = readme.find("<!-- /original-differences -->").expect("README: no <!-- /original-differences --> marker");
    readme[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once(" |").map(|(cell, _)| format!("`{cell}")))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>())
        .filter(|k| k.starts_with(prefix))
        .collect()
}

/// The test's verdict: every difference it measured is documented, and
/// every documented difference of its area was measured.
pub fn assert_documented(prefix: &str, measured: &BTreeSet<String>) {
    let listed = documented(prefix);
    let new: Vec<&String> = measured.difference(&listed).collect();
    let gone: Vec<&String> = listed.difference(measured).collect();
    assert!(new.is_empty(), "differences from the original not listed in the README's migration guide: {new:?}");
    assert!(gone.is_empty(), "the README lists differences that no longer show: {gone:?} (remove them from the migration guide)");
}
