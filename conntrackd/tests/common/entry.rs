//! Conntrack entries made with `conntrack -I` inside a test namespace
//! (ctnetlink: no packet is sent), the one helper every test file uses:
//! `Entry::tcp("10.99.0.1", "8.8.8.8", 40001, 443).insert(&ns)` creates one
//! entry and so one NEW event. IPv6 addresses work as they are.
use std::process::{Command, Stdio};

use super::{conntrack_in, Netns};

/// One entry: its original tuple and what `-I` sets besides it.
#[derive(Debug, Clone)]
pub struct Entry {
    proto: &'static str,
    src: String,
    dst: String,
    sport: String,
    dport: String,
    /// The TCP state (`--state`), none for UDP.
    state: Option<&'static str>,
    /// Seconds until the kernel expires it (a DESTROY event).
    timeout: u32,
    /// `-u SEEN_REPLY`: the entry looks answered.
    seen_reply: bool,
    mark: Option<u32>,
}

impl Entry {
    /// A TCP entry src:sport -> dst:dport in SYN_SENT, expiring in 60 s.
    pub fn tcp(src: &str, dst: &str, sport: u16, dport: u16) -> Self {
        Self::new("tcp", src, dst, sport, dport, Some("SYN_SENT"))
    }

    /// A UDP entry src:sport -> dst:dport, expiring in 60 s.
    pub fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Self {
        Self::new("udp", src, dst, sport, dport, None)
    }

    fn new(proto: &'static str, src: &str, dst: &str, sport: u16, dport: u16, state: Option<&'static str>) -> Self {
        let (src, dst, sport, dport) = (src.to_string(), dst.to_string(), sport.to_string(), dport.to_string());
        Self { proto, src, dst, sport, dport, state, timeout: 60, seen_reply: false, mark: None }
    }

    /// An answered TCP connection: ESTABLISHED, SEEN_REPLY, expiring in 120 s.
    pub fn established(self) -> Self {
        Self { state: Some("ESTABLISHED"), timeout: 120, seen_reply: true, ..self }
    }

    /// Created with the mark `mark` (`-m`).
    pub fn mark(self, mark: u32) -> Self {
        Self { mark: Some(mark), ..self }
    }

    /// `-p P -s SRC -d DST --sport S --dport D`: what names the entry.
    fn tuple(&self) -> Vec<String> {
        [("-p", self.proto), ("-s", &self.src), ("-d", &self.dst), ("--sport", &self.sport), ("--dport", &self.dport)]
            .into_iter()
            .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
            .collect()
    }

    /// The arguments of `conntrack -I` for this entry.
    fn insert_args(&self) -> Vec<String> {
        let mut args = vec!["-I".to_string()];
        args.extend(self.tuple());
        if let Some(state) = self.state {
            args.extend(["--state".into(), state.into()]);
        }
        args.extend(["-t".into(), self.timeout.to_string()]);
        if self.seen_reply {
            args.extend(["-u".into(), "SEEN_REPLY".into()]);
        }
        if let Some(mark) = self.mark {
            args.extend(["-m".into(), mark.to_string()]);
        }
        args
    }

    /// Creates the entry in `ns`; fails the test with conntrack's error.
    pub fn insert(&self, ns: &Netns) {
        self.insert_in(&ns.name);
    }

    /// Creates the entry in the namespace named `ns` (from a thread that has only the name).
    pub fn insert_in(&self, ns: &str) {
        conntrack_in(ns, &strs(&self.insert_args()));
    }

    /// Creates the entry in `ns` and returns the pid of the `conntrack` that
    /// did (`ip netns exec` execs it, so the pid is conntrack's own): the task
    /// the kernel program records.
    pub fn insert_reporting_pid(&self, ns: &Netns) -> u32 {
        let args = self.insert_args();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "conntrack"])
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run conntrack");
        let pid = child.id();
        let out = child.wait_with_output().expect("wait conntrack");
        assert!(out.status.success(), "conntrack {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        pid
    }

    /// `conntrack -U` of this entry with `changes` (e.g. `["-m", "42"]`): one UPDATE event.
    pub fn update(&self, ns: &Netns, changes: &[&str]) {
        let tuple = self.tuple();
        conntrack_in(&ns.name, &[&["-U"], &strs(&tuple)[..], changes].concat());
    }

    /// `conntrack -D` of this entry: one DESTROY event.
    pub fn delete(&self, ns: &Netns) {
        let tuple = self.tuple();
        conntrack_in(&ns.name, &[&["-D"], &strs(&tuple)[..]].concat());
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
