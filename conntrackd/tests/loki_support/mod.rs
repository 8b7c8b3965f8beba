//! Helpers of the Loki sink tests: a VictoriaLogs process in a namespace
//! (the real Loki-protocol receiver, built by `cargo xtask setup`), a fault
//! proxy in front of it, temporary directories, and a spool watcher.
#![allow(dead_code)]

pub mod spool_watch;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::Netns;

/// How long the receiver may take to make pushed rows queryable.
pub const QUERY_WAIT: Duration = Duration::from_secs(40);

pub fn victoria_logs_binary() -> PathBuf {
    let path = match std::env::var_os("CONNTRACKD_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/conntrackd"),
    }
    .join("victorialogs-v1.52.1/victoria-logs");
    assert!(path.is_file(), "{} is missing: run `cargo xtask setup` (it builds VictoriaLogs with Go)", path.display());
    path
}

/// A VictoriaLogs process in a namespace, on 127.0.0.1:`port`, storing in `data`.
pub struct VictoriaLogs {
    child: Option<Child>,
    ns: String,
    pub port: u16,
    data: PathBuf,
}

impl VictoriaLogs {
    /// Starts it on a free port of the namespace (the calling thread must be in it).
    pub fn start(ns: &Netns, data: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut vl = Self { child: None, ns: ns.name.clone(), port, data: data.to_path_buf() };
        vl.restart();
        vl
    }

    pub fn restart(&mut self) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(victoria_logs_binary())
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!("-storageDataPath={}", self.data.display()))
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(self.log_file())
            .spawn()
            .expect("start victoria-logs");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        while get(&self.url("/health")).is_none() {
            let log = std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default();
            assert!(Instant::now() < until, "VictoriaLogs did not become healthy on port {}:\n{log}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// VictoriaLogs' own log, next to its data directory (shown when it fails to start).
    fn log_file(&self) -> std::fs::File {
        let path = self.data.with_extension("log");
        std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("victoria-logs log file")
    }

    /// SIGTERM (VictoriaLogs flushes its data) and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our child's pid (ip netns exec execs the binary).
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            child.wait().expect("wait victoria-logs");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The address the sink gets: Loki's API lives under `/insert` here.
    pub fn sink_address(&self) -> String {
        self.url("/insert")
    }

    /// Every stored row, as JSON objects.
    pub fn rows(&self) -> Vec<Value> {
        let body = get(&self.url("/select/logsql/query?query=*&limit=100000")).unwrap_or_default();
        body.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("LogsQL JSON line")).collect()
    }

    /// Polls until `done(rows)` holds; returns the rows.
    pub fn wait_rows(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
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
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("conntrackd-loki-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("log"));
    }
}

/// What the fault proxy does with one push.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Pass it on to VictoriaLogs.
    Forward,
    Status(u16, &'static str),
    /// Read the request, close without answering.
    Close,
    /// Forward it (VictoriaLogs stores it), but answer only after this delay.
    Slow(Duration),
}

/// A proxy in front of VictoriaLogs that answers the next pushes from a
/// script, then forwards everything. Runs in the calling thread's namespace.
pub struct FaultProxy {
    pub port: u16,
    script: Arc<Mutex<Vec<Fault>>>,
}

impl FaultProxy {
    pub fn start(upstream: u16, faults: &[Fault]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(Mutex::new(faults.iter().rev().copied().collect::<Vec<_>>()));
        let shared = Arc::clone(&script);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || proxy_one(conn, upstream, &shared));
            }
        });
        Self { port, script }
    }

    pub fn left(&self) -> usize {
        self.script.lock().unwrap().len()
    }
}

fn proxy_one(conn: std::net::TcpStream, upstream: u16, script: &Mutex<Vec<Fault>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let (method, path) = {
        let mut parts = line.split(' ');
        (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string())
    };
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let Some((k, v)) = h.trim_end().split_once(": ") else { break };
        headers.push((k.to_string(), v.to_string()));
    }
    let len = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let fault = if method == "POST" { script.lock().unwrap().pop() } else { None };
    let forward = || {
        let url = format!("http://127.0.0.1:{upstream}{path}");
        let mut request = ureq::request(&method, &url);
        for (k, v) in headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("content-length")) {
            request = request.set(k, v);
        }
        match request.send_bytes(&body) {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
            Err(e) => (502, e.to_string()),
        }
    };
    let (status, text) = match fault {
        None | Some(Fault::Forward) => forward(),
        Some(Fault::Status(status, text)) => (status, text.to_string()),
        Some(Fault::Close) => return,
        Some(Fault::Slow(delay)) => {
            let answer = forward();
            std::thread::sleep(delay);
            answer
        }
    };
    let mut conn = conn;
    let _ = write!(conn, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
}
