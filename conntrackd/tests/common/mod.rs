//! Test harness for kernel tests: network namespaces that clean up after
//! themselves, and the real daemon running inside one, read line by line.
#![allow(dead_code)]

pub mod entry;
pub mod inject;
pub mod launch;
pub mod tcp;

use std::{
    io::{BufRead, BufReader, Write},
    os::fd::AsRawFd,
    process::{Child, Command, Stdio},
    sync::mpsc::{channel, Receiver},
    thread,
    time::Duration,
};

use serde_json::Value;

/// How long a test waits for something the kernel or the daemon must produce.
pub const WAIT: Duration = Duration::from_secs(15);

/// Fails the test unless it runs as root with the tools it drives installed.
pub fn require_root_and_tools() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "kernel tests need root: run `sudo cargo xtask test`");
    for (tool, package) in [("ip", "iproute2"), ("conntrack", "conntrack"), ("nft", "nftables")] {
        let found = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        assert!(found, "`{tool}` is missing: install the Debian package {package} (`cargo xtask setup` does)");
    }
}

/// Runs a command and fails the test with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `conntrack <args>` inside `ns`; fails the test with conntrack's error.
pub fn conntrack(ns: &Netns, args: &[&str]) {
    conntrack_in(&ns.name, args);
}

/// `conntrack <args>` inside the namespace named `ns`; fails the test with conntrack's error.
pub fn conntrack_in(ns: &str, args: &[&str]) {
    let out = Command::new("ip").args(["netns", "exec", ns, "conntrack"]).args(args).output().expect("run conntrack");
    assert!(out.status.success(), "conntrack {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A network namespace, deleted on drop, with conntrack events enabled.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!("ctd-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns.exec(&["sysctl", "-qw", "net.netfilter.nf_conntrack_events=1"]);
        ns
    }

    /// Runs a command inside the namespace; fails the test if it fails.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Makes conntrack track this namespace's traffic (a `ct state` rule).
    pub fn track_connections(&self) {
        self.nft(
            "table inet ctd {\n\
               chain out { type filter hook output priority 0; ct state new,established,related accept; }\n\
               chain in { type filter hook input priority 0; ct state new,established,related accept; }\n\
             }\n",
        );
    }

    pub fn nft(&self, ruleset: &str) {
        let mut child = Command::new("ip").args(["netns", "exec", &self.name, "nft", "-f", "-"]).stdin(Stdio::piped()).spawn().expect("cannot run nft");
        child.stdin.take().expect("stdin").write_all(ruleset.as_bytes()).expect("write nft ruleset");
        assert!(child.wait().expect("nft").success(), "nft rejected: {ruleset}");
    }

    /// `conntrack -L -o id` inside the namespace: the id of the entry whose line contains `needle`.
    pub fn conntrack_id(&self, needle: &str) -> u32 {
        let list = self.exec(&["conntrack", "-L", "-o", "id"]);
        let line = list.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no entry with {needle:?} in:\n{list}"));
        let id = line.split_whitespace().find_map(|w| w.strip_prefix("id=")).unwrap_or_else(|| panic!("no id= in {line}"));
        id.parse().unwrap_or_else(|e| panic!("bad id {id}: {e}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Moves the calling thread (only this thread) into the named namespace.
pub fn enter_netns(name: &str) {
    let file = std::fs::File::open(format!("/var/run/netns/{name}")).expect("open netns");
    // SAFETY: valid namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// GET `path` from 127.0.0.1:`port` inside the namespace `ns`: (status line, body).
pub fn http_get(ns: &Netns, port: u16, path: &str) -> (String, String) {
    use std::io::Read;
    let (name, path) = (ns.name.clone(), path.to_string());
    thread::spawn(move || {
        enter_netns(&name);
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics endpoint");
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("response");
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.lines().next().unwrap_or_default().to_string(), body.to_string())
    })
    .join()
    .expect("http thread")
}

/// Joins two namespaces with a veth pair and addresses them.
pub fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) {
    let (ia, ib) = ("veth-a", "veth-b");
    sh(&["ip", "link", "add", ia, "netns", &a.name, "type", "veth", "peer", "name", ib, "netns", &b.name]);
    a.exec(&["ip", "addr", "add", a_addr, "dev", ia]);
    b.exec(&["ip", "addr", "add", b_addr, "dev", ib]);
    a.exec(&["ip", "link", "set", ia, "up"]);
    b.exec(&["ip", "link", "set", ib, "up"]);
}

/// Runs `conntrackd run` in `ns` with `config`, expecting it to refuse to
/// start; returns its stderr.
pub fn run_expecting_failure(ns: &Netns, config: &str) -> String {
    let out = run_to_exit(ns, config);
    assert!(!out.status.success(), "conntrackd should have refused to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `conntrackd run` in `ns` with `config` until it exits on its own (it
/// must refuse to start, or this waits forever).
pub fn run_to_exit(ns: &Netns, config: &str) -> std::process::Output {
    let config = tempfile_path::TempPath::with_contents(config);
    Command::new("ip")
        .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_conntrackd"), "run", "--config"])
        .arg(config.path())
        .output()
        .expect("run conntrackd")
}

/// The daemon under test, running in a namespace.
pub struct Daemon {
    child: Child,
    lines: Receiver<String>,
    logs: Receiver<String>,
    _config: tempfile_path::TempPath,
    seen_logs: std::cell::RefCell<Vec<String>>,
    /// How many of `seen_logs` `new_logs` has returned.
    returned_logs: std::cell::Cell<usize>,
    _notify: Option<launch::NotifySocket>,
}

/// Counters from the daemon's `conntrackd stopped` line.
#[derive(Debug)]
pub struct Stopped {
    pub fields: Vec<(String, u64)>,
    pub log: String,
    /// Every stderr line of the run.
    pub all_logs: String,
}

impl Stopped {
    pub fn get(&self, key: &str) -> u64 {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v).unwrap_or_else(|| panic!("no counter {key} in {:?}", self.log))
    }
}

impl Daemon {
    /// Starts `conntrackd run` in `ns` with `config` and waits until it is ready.
    pub fn start(ns: &Netns, config: &str) -> Self {
        Self::start_with(ns, config, &[])
    }

    /// Like [`Daemon::start`], with a command prefix (e.g. capsh) inside the namespace.
    pub fn start_with(ns: &Netns, config: &str, prefix: &[&str]) -> Self {
        Self::start_full(ns, config, prefix, &[])
    }

    /// Like [`Daemon::start`], with extra environment variables.
    pub fn start_env(ns: &Netns, config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_full(ns, config, &[], env)
    }

    fn start_full(ns: &Netns, config: &str, prefix: &[&str], env: &[(&str, &str)]) -> Self {
        let launch = launch::Launch {
            prefix: prefix.iter().map(|p| p.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..launch::Launch::default()
        };
        Self::launch(ns, config, &launch)
    }

    /// Every stderr line read so far (by wait_log) plus those waiting now.
    pub fn logs_so_far(&self) -> String {
        let mut seen = self.seen_logs.borrow_mut();
        seen.extend(self.logs.try_iter());
        seen.join("\n")
    }

    /// The next `n` JSON lines.
    pub fn events(&self, n: usize) -> Vec<Value> {
        (0..n).map(|_| self.next_event()).collect()
    }

    /// Lines until (and including) the first whose `key` equals `value`.
    pub fn events_until(&self, key: &str, value: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let ev = self.next_event();
            let done = &ev[key] == value;
            out.push(ev);
            if done {
                return out;
            }
        }
    }

    /// The daemon with the built-in default rules and the stream sink on stdout.
    pub fn start_default(ns: &Netns) -> Self {
        Self::start(
            ns,
            "filter = [\"log protocol tcp and destination network public\", \"drop any\"]\n\
             [sink.stream]\nenable = true\nwriter = \"stdout\"\n",
        )
    }

    /// The daemon's pid (`ip netns exec` execs it), e.g. to send it SIGHUP.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        loop {
            match self.logs.recv_timeout(WAIT) {
                Ok(line) => {
                    self.seen_logs.borrow_mut().push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("conntrackd never logged {needle:?}: {e}\n{}", self.seen_logs.borrow().join("\n")),
            }
        }
    }

    /// The stderr lines not returned by this before (without waiting),
    /// including those `wait_log` read.
    pub fn new_logs(&self) -> Vec<String> {
        let mut seen = self.seen_logs.borrow_mut();
        seen.extend(self.logs.try_iter());
        let from = self.returned_logs.replace(seen.len());
        seen[from..].to_vec()
    }

    /// The next JSON line on stdout, if one comes within `wait`.
    pub fn try_event(&self, wait: Duration) -> Option<Value> {
        let line = self.lines.recv_timeout(wait).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
    }

    /// The next JSON line on stdout.
    pub fn next_event(&self) -> Value {
        let line = self.lines.recv_timeout(WAIT).expect("no event line from conntrackd in time");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// The config file the daemon was started with (rewrite it before SIGHUP).
    pub fn config_path(&self) -> &std::path::Path {
        self._config.path()
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Sends SIGTERM, waits for exit, returns the final counters and any stdout lines left.
    pub fn stop(mut self) -> (Stopped, Vec<String>) {
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let line = self.wait_log("conntrackd stopped");
        let status = self.child.wait().expect("wait conntrackd");
        assert!(status.success(), "conntrackd exited with {status}");
        let rest: Vec<String> = self.lines.try_iter().collect();
        let all_logs = self.logs_so_far();
        (Stopped { fields: parse_counters(&line), log: line, all_logs }, rest)
    }
}

/// A test that fails before `stop` must not leave its daemon running.
impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads lines from a pipe on a thread.
fn forward(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Every `name=number` token of a log line (quotes and prefixes like `kernel=` stripped).
fn parse_counters(line: &str) -> Vec<(String, u64)> {
    line.split(|c: char| c.is_whitespace() || c == '"')
        .filter_map(|tok| {
            let (k, v) = tok.rsplit_once('=')?;
            let k = k.rsplit('=').next()?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Minimal temp file (the path is removed on drop).
pub mod tempfile_path {
    use std::path::{Path, PathBuf};

    pub struct TempPath(PathBuf);

    impl TempPath {
        pub fn with_contents(text: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("conntrackd-test-{}-{n}.toml", std::process::id()));
            std::fs::write(&path, text).expect("write temp config");
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
