//! Helpers of the install script tests (`install.rs`, `install_geoip.rs`):
//! artifacts made by `cargo xtask dist` (packaging the debug binary, so no
//! release build runs in the tests), a small HTTP server on 127.0.0.1 that
//! stands in for the release host and the GeoIP hosts (and records what it
//! was asked), and runs of contrib/install.sh into temporary roots (DESTDIR).
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{Arc, Mutex, OnceLock},
};

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/install.sh");
pub const CONTRIB_CONFIG: &str = include_str!("../../../contrib/conntrackd.toml");
pub const INSTALLED: [&str; 4] =
    ["usr/local/bin/conntrackd", "etc/systemd/system/conntrackd.service", "usr/local/share/man/man1/conntrackd.1", "usr/local/share/man/man1/conntrackd-run.1"];
/// Where every GeoIP download goes unless a test serves one: nothing listens
/// on the discard port, so no test ever reaches a real GeoIP host.
pub const NO_HOST: &str = "http://127.0.0.1:9/no-geoip-host";

/// A directory under the target dir, emptied first.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("install-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// `cargo xtask dist --binary <debug binary> --out DIR`, once per test binary.
pub fn artifacts() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // One directory per test binary, replaced by every run (a per-run name would pile up stripped binaries).
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-dist", env!("CARGO_CRATE_NAME")));
        let _ = std::fs::remove_dir_all(&out);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["run", "--quiet", "--package", "xtask", "--", "dist", "--binary", env!("CARGO_BIN_EXE_conntrackd"), "--out"])
            .arg(&out)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("run cargo xtask dist");
        assert!(status.success(), "cargo xtask dist --binary failed: {status}");
        out
    })
}

/// One request the server answered: path with query, and its Authorization header.
#[derive(Debug, Clone)]
pub struct Request {
    pub target: String,
    pub authorization: Option<String>,
}

/// A file server on 127.0.0.1 (random port), from a thread.
pub struct Server {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// Serves the files of `dir` (the query is ignored); with `auth`, only to
    /// requests whose `Authorization` header is exactly it (401 otherwise).
    pub fn start(dir: PathBuf, auth: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = String::new();
                let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                // Headers up to the blank line.
                let (mut line, mut authorization) = (String::new(), None);
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("authorization") {
                            authorization = Some(value.trim().to_string());
                        }
                    }
                    line.clear();
                }
                let target = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                log.lock().unwrap().push(Request { target: target.clone(), authorization: authorization.clone() });
                if auth.is_some() && authorization != auth {
                    let _ = stream.write_all(b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n");
                    continue;
                }
                let name = target.split('?').next().unwrap_or_default().trim_start_matches('/');
                let file = (!name.contains("..")).then(|| std::fs::read(dir.join(name)).ok()).flatten();
                let _ = match file {
                    Some(body) => {
                        stream.write_all(format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes()).and_then(|()| stream.write_all(&body))
                    }
                    None => stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                };
            }
        });
        Self { url, requests }
    }

    /// The request targets so far, in order.
    pub fn targets(&self) -> Vec<String> {
        self.requests.lock().unwrap().iter().map(|r| r.target.clone()).collect()
    }
}

/// Serves `dir` without authentication; returns the base URL.
pub fn serve(dir: PathBuf) -> String {
    Server::start(dir, None).url
}

pub fn base_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| serve(artifacts().to_path_buf()))
}

/// Runs install.sh with `args` into `root`, with extra environment (the
/// GeoIP hosts point at [`NO_HOST`] unless `env` sets them).
pub fn install(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("sh")
        .arg(SCRIPT)
        .args(args)
        .env("DESTDIR", root)
        .env("BASE_URL", base_url())
        .env("ARCH", "amd64")
        .env("NO_COLOR", "1")
        .env("DBIP_BASE_URL", NO_HOST)
        .env("MAXMIND_BASE_URL", NO_HOST)
        .envs(env.iter().copied())
        .output()
        .expect("run install.sh")
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

pub fn succeeded(out: &Output) -> String {
    let all = text(out);
    assert!(out.status.success(), "install.sh failed ({}):\n{all}", out.status);
    assert!(!all.contains('\u{1b}'), "NO_COLOR: no escape sequences:\n{all}");
    all
}

pub fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every file below `root`, relative.
pub fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).expect("prefix").display().to_string());
            }
        }
    }
    out.sort();
    out
}
