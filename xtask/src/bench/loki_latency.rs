//! Loki sink latency for `cargo xtask bench`: a recording proxy in front of
//! VictoriaLogs (both in the client namespace) notes when each push was
//! accepted by the receiver; the sink runs with `encoding = "json"` so the
//! proxy can read every entry's kernel timestamp. Latency = accepted - event
//! time, over NEW events (generated at the paced rate; the DESTROY events come
//! in one burst from the flush). The proxy also sums the bytes of every
//! accepted push body ([`super::loki_bytes`]).
use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{Arc, Mutex},
    thread,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{loki_bytes::BodyBytes, netns};

/// Latencies of NEW entries in milliseconds, as the proxy saw them accepted.
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    latencies_ms: Arc<Mutex<Vec<f64>>>,
    bytes: Arc<Mutex<BodyBytes>>,
}

impl Recorder {
    /// The body bytes accepted since the last call.
    pub fn take_bytes(&self) -> BodyBytes {
        self.bytes.lock().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default()
    }

    /// Forgets the latencies recorded so far.
    pub fn clear_latencies(&self) {
        if let Ok(mut v) = self.latencies_ms.lock() {
            v.clear();
        }
    }

    /// Summary: count, p50, p99, max.
    pub fn summary(&self) -> (usize, f64, f64, f64) {
        let mut v = self.latencies_ms.lock().map(|v| v.clone()).unwrap_or_default();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
        (v.len(), at(0.50), at(0.99), v.last().copied().unwrap_or(0.0))
    }

    fn record(&self, body: &[u8], accepted_ns: i128) {
        let Ok(push) = serde_json::from_slice::<Value>(body) else { return };
        let mut out = Vec::new();
        for stream in push["streams"].as_array().into_iter().flatten() {
            if stream["stream"]["type"] != "NEW" {
                continue;
            }
            for value in stream["values"].as_array().into_iter().flatten() {
                if let Some(ns) = value[0].as_str().and_then(|s| s.parse::<i128>().ok()) {
                    out.push((accepted_ns - ns) as f64 / 1e6);
                }
            }
        }
        if let Ok(mut v) = self.latencies_ms.lock() {
            v.extend(out);
        }
    }
}

/// Starts the proxy on 127.0.0.1:`port` of the client namespace, forwarding to `upstream`.
pub(crate) fn start_proxy(port: u16, upstream: u16) -> Result<Recorder> {
    let recorder = Recorder::default();
    let rec = recorder.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let listener = enter_client().and_then(|()| Ok(TcpListener::bind(("127.0.0.1", port))?));
        let listener = match listener {
            Ok(l) => {
                let _ = tx.send(Ok(()));
                l
            }
            Err(e) => return drop(tx.send(Err(e))),
        };
        for conn in listener.incoming().flatten() {
            let rec = rec.clone();
            // Threads inherit this thread's namespace.
            thread::spawn(move || {
                let _ = serve(conn, upstream, &rec);
            });
        }
    });
    rx.recv().context("latency proxy thread")??;
    Ok(recorder)
}

fn enter_client() -> Result<()> {
    let ns = fs::File::open(netns::path(netns::CLIENT))?;
    // SAFETY: valid namespace fd; affects only the calling thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// One request per connection (answered with `Connection: close`).
fn serve(conn: TcpStream, upstream: u16, recorder: &Recorder) -> Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = String::new();
    let (mut length, mut content_type) = (0, String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse()?;
            }
            if k.eq_ignore_ascii_case("content-type") {
                content_type = v.trim().to_string();
            }
            if k.eq_ignore_ascii_case("connection") {
                continue;
            }
        }
        if line == "\r\n" {
            head.push_str("Connection: close\r\n\r\n");
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    if response.starts_with(b"HTTP/1.1 2") && head.starts_with("POST") {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        recorder.record(&body, now);
        if let Ok(mut bytes) = recorder.bytes.lock() {
            bytes.add(&content_type, &body);
        }
    }
    let mut conn = conn;
    conn.write_all(&response)?;
    Ok(())
}
