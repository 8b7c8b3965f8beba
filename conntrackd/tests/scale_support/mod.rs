//! Helpers of the namespace scale test: sets of `ip netns` namespaces and
//! `unshare --net` holders that clean up after themselves, the daemon's
//! "watching"/"removed" log lines by namespace, /metrics, and what /proc
//! says about the daemon (its BPF objects, RSS, CPU).
use std::{
    collections::{HashMap, HashSet},
    io::Write,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::common::{Daemon, Netns};

/// `ip netns` namespaces named `PREFIX-PID-N`, deleted on drop.
pub struct NamedSet {
    prefix: String,
    next: usize,
    live: HashSet<String>,
}

impl NamedSet {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: format!("{prefix}-{}", std::process::id()), next: 0, live: HashSet::new() }
    }

    pub fn path(name: &str) -> PathBuf {
        PathBuf::from("/run/netns").join(name)
    }

    /// Creates `n` more with one `ip -batch`; returns their names.
    pub fn create(&mut self, n: usize) -> Vec<String> {
        let names: Vec<String> = (self.next..self.next + n).map(|i| format!("{}-{i}", self.prefix)).collect();
        self.next += n;
        batch(&names.iter().map(|n| format!("netns add {n}")).collect::<Vec<_>>());
        self.live.extend(names.iter().cloned());
        names
    }

    pub fn delete(&mut self, name: &str) {
        if self.live.remove(name) {
            batch(&[format!("netns delete {name}")]);
        }
    }
}

impl Drop for NamedSet {
    fn drop(&mut self) {
        let lines: Vec<String> = self.live.drain().map(|n| format!("netns delete {n}")).collect();
        if !lines.is_empty() {
            let _ = run_batch(&lines);
        }
    }
}

fn batch(lines: &[String]) {
    let out = run_batch(lines);
    assert!(out.status.success(), "ip -batch failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn run_batch(lines: &[String]) -> std::process::Output {
    let mut child = Command::new("ip").args(["-batch", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("run ip -batch");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all((lines.join("\n") + "\n").as_bytes()).expect("write ip -batch input");
    drop(stdin);
    child.wait_with_output().expect("wait for ip -batch")
}

/// An `unshare --net sleep` process: a namespace with a process and no bind mount. Killed on drop.
pub struct Holder {
    child: Child,
    pub created: Instant,
    ino: u64,
}

impl Holder {
    pub fn spawn() -> Self {
        let own = link_inode(&std::fs::read_link("/proc/self/ns/net").expect("own namespace"));
        let child = Command::new("unshare").args(["--net", "sleep", "600"]).stdin(Stdio::null()).spawn().expect("run unshare (util-linux)");
        // Owned right away, so a failure below still kills it.
        let mut holder = Self { child, created: Instant::now(), ino: own };
        let deadline = Instant::now() + Duration::from_secs(10);
        // Until unshare has made the namespace (then it execs sleep in it).
        while holder.ino == own {
            assert!(Instant::now() < deadline, "unshare --net never left our namespace");
            std::thread::sleep(Duration::from_millis(2));
            holder.ino = std::fs::read_link(format!("/proc/{}/ns/net", holder.child.id())).map(|l| link_inode(&l)).unwrap_or(own);
        }
        holder.created = Instant::now();
        holder
    }

    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.child.id()))
    }

    pub fn netns_inode(&self) -> u64 {
        self.ino
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn link_inode(link: &std::path::Path) -> u64 {
    let text = link.to_string_lossy();
    text.strip_prefix("net:[").and_then(|r| r.strip_suffix(']')).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not a netns link: {text}"))
}

/// When the daemon said it watches and released each namespace, by label.
#[derive(Default)]
pub struct Watcher {
    watched: HashMap<String, Instant>,
    released: HashMap<String, Instant>,
    refused: Vec<String>,
}

impl Watcher {
    /// Takes the log lines that arrived.
    pub fn poll(&mut self, d: &Daemon) {
        for line in d.new_logs() {
            let Some(label) = netns_of(&line) else { continue };
            if line.contains("watching network namespace") {
                self.watched.entry(label).or_insert_with(Instant::now);
            } else if line.contains("network namespace removed") {
                self.released.entry(label).or_insert_with(Instant::now);
            } else if line.contains("cannot watch") {
                self.refused.push(line);
            }
        }
    }

    pub fn is_watched(&self, label: &str) -> bool {
        self.watched.contains_key(label)
    }

    pub fn watched_at(&self, label: &str) -> Instant {
        self.watched[label]
    }

    pub fn released_at(&self, label: &str) -> Instant {
        self.released[label]
    }

    pub fn wait_watched<'a>(&mut self, d: &Daemon, labels: impl Iterator<Item = &'a str> + Clone, wait: Duration) {
        self.wait(d, labels, wait, "watched", |w, l| w.watched.contains_key(l));
    }

    pub fn wait_released<'a>(&mut self, d: &Daemon, labels: impl Iterator<Item = &'a str> + Clone, wait: Duration) {
        self.wait(d, labels, wait, "released", |w, l| w.released.contains_key(l));
    }

    fn wait<'a>(&mut self, d: &Daemon, labels: impl Iterator<Item = &'a str> + Clone, wait: Duration, what: &str, done: impl Fn(&Self, &str) -> bool) {
        let deadline = Instant::now() + wait;
        loop {
            self.poll(d);
            let missing: Vec<&str> = labels.clone().filter(|l| !done(self, l)).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} namespaces never {what}, e.g. {:?}; refused: {:?}",
                missing.len(),
                &missing[..missing.len().min(5)],
                self.refused
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `netns=VALUE` of a text log line.
fn netns_of(line: &str) -> Option<String> {
    let value = line.split_whitespace().find_map(|t| t.strip_prefix("netns="))?;
    Some(value.trim_matches('"').to_string())
}

/// GET `path` from 127.0.0.1:`port` inside `ns`: the body.
pub fn get(ns: &Netns, port: u16, path: &str) -> String {
    crate::common::http_get(ns, port, path).1
}

/// The value of the metric line that is exactly `series VALUE`.
pub fn metric(body: &str, series: &str) -> f64 {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or_else(|| panic!("no {series} in:\n{body}"))
}

/// The daemon's BPF programs (by id) and maps (id -> type, max entries, memlock bytes), from its fdinfo.
pub struct BpfObjects {
    pub programs: HashSet<u64>,
    pub maps: HashMap<u64, (u64, u64, u64)>,
}

impl BpfObjects {
    pub fn map_memlock(&self) -> u64 {
        self.maps.values().map(|m| m.2).sum()
    }
}

pub fn bpf_objects(pid: u32) -> BpfObjects {
    let mut objects = BpfObjects { programs: HashSet::new(), maps: HashMap::new() };
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("the daemon's fdinfo").flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok());
        if let Some(id) = field("prog_id:") {
            objects.programs.insert(id);
        } else if let Some(id) = field("map_id:") {
            objects.maps.insert(id, (field("map_type:").unwrap_or(0), field("max_entries:").unwrap_or(0), field("memlock:").unwrap_or(0)));
        }
    }
    objects
}

/// utime + stime of the whole process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the daemon's stat");
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<u64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
}

/// A `VmXXX:` line of /proc/PID/status, in KiB.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon's status");
    let line = status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).unwrap_or_else(|| panic!("no {key} in status"));
    line.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0)
}
