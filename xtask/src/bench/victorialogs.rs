//! VictoriaLogs (built by `cargo xtask setup`) in the benchmark's client
//! namespace on 127.0.0.1, the Loki-protocol receiver of the benchmark's Loki
//! runs and of the reload test; read back with LogsQL. Also the plain HTTP GET
//! into the client namespace that reads it (and the daemon's `/metrics`).
use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    os::fd::AsRawFd,
    path::Path,
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::netns;

/// How long VictoriaLogs may take to answer `/health` after it started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running VictoriaLogs; dropping it kills it.
pub(crate) struct VictoriaLogs {
    child: Child,
    port: u16,
}

impl VictoriaLogs {
    /// Starts it on 127.0.0.1:`port` of the client namespace, storing in `data`.
    pub fn start(data: &Path, port: u16) -> Result<Self> {
        let binary = crate::setup_victorialogs::binary()?;
        if !binary.is_file() {
            bail!("{} is missing: run cargo xtask setup (it builds VictoriaLogs with Go)", binary.display());
        }
        netns::run_in(netns::CLIENT, &["ip", "link", "set", "lo", "up"])?;
        let child = netns::command_in(
            netns::CLIENT,
            &[&binary.to_string_lossy(), &format!("-httpListenAddr=127.0.0.1:{port}"), &format!("-storageDataPath={}", data.display())],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
        let vl = Self { child, port };
        let until = Instant::now() + START_TIMEOUT;
        while get(port, "/health").is_err() {
            if Instant::now() > until {
                bail!("VictoriaLogs did not answer /health on port {port} within {START_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(vl)
    }

    /// The result rows of a LogsQL query (one JSON object per line).
    pub fn query(&self, logsql: &str) -> Result<Vec<Value>> {
        let body = get(self.port, &format!("/select/logsql/query?query={}", encode_query(logsql)))?;
        body.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).with_context(|| format!("LogsQL answered {l:?}"))).collect()
    }

    /// A number `stats` put in the first row under `name` (LogsQL returns it as a string).
    pub fn stat(&self, logsql: &str, name: &str) -> Result<u64> {
        let rows = self.query(logsql)?;
        let value = rows.first().map(|r| &r[name]).with_context(|| format!("{logsql:?} returned no row"))?;
        value.as_str().and_then(|n| n.parse().ok()).or_else(|| value.as_u64()).with_context(|| format!("{logsql:?}: {name} is {value}, not a number"))
    }

    /// Polls the stored row count until it reaches `expected` (or 60 s pass).
    pub fn wait_count(&self, expected: u64) -> Result<u64> {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let n = self.stat("* | stats count() as n", "n")?;
            if n >= expected || Instant::now() > until {
                return Ok(n);
            }
            thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for VictoriaLogs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a LogsQL query for the URL.
fn encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// HTTP/1.0 GET of 127.0.0.1:`port``path` from a thread that entered the client
/// namespace; the body of a 200 answer.
pub(crate) fn get(port: u16, path: &str) -> Result<String> {
    let path = path.to_string();
    thread::spawn(move || -> Result<String> {
        let ns = fs::File::open(netns::path(netns::CLIENT))?;
        // SAFETY: valid namespace fd; affects only this short-lived thread.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        let mut conn = TcpStream::connect(("127.0.0.1", port))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(conn, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut response = String::new();
        conn.read_to_string(&mut response)?;
        let (head, body) = response.split_once("\r\n\r\n").context("no HTTP header")?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            bail!("127.0.0.1:{port} answered {}", head.lines().next().unwrap_or_default());
        }
        Ok(body.to_string())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("HTTP thread panicked"))?
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(super::encode_query("* | stats count() as n"), "%2A%20%7C%20stats%20count%28%29%20as%20n");
    }
}
