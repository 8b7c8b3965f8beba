//! The settings a benchmark depends on, recorded for the report, and the one
//! global setting it may change: `nf_conntrack_max`, raised for the run when
//! the load's entries would not fit and restored by [`ConntrackMax`]'s `Drop`.
use std::{fs, net::Ipv4Addr, process::Command, thread};

use anyhow::{Context, Result};
use serde::Serialize;

use super::netns::{self, Lab};

const CONNTRACK_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

/// Everything the figures depend on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    /// `/proc/loadavg` when the benchmark started: other work skews the CPU figures.
    pub loadavg_at_start: String,
    pub conntrack_tools: String,
    pub nf_conntrack_max: u64,
    pub nf_conntrack_max_before: u64,
    pub nf_conntrack_buckets: u64,
    pub nf_conntrack_events: String,
    pub tcp_timeout_syn_sent_s: u64,
    pub netlink_rmem_default: u64,
    pub ring_buffer_bytes: u64,
    pub connections_per_run: u32,
    pub load_sources: Vec<Ipv4Addr>,
    pub load_destination: String,
    pub flush_policy: String,
    pub quiet_ms: u64,
}

/// What the caller decides; the rest is read from the machine.
pub(crate) struct Chosen {
    pub ring_buffer_bytes: u64,
    pub connections: u32,
    pub sources: Vec<Ipv4Addr>,
    pub quiet_ms: u64,
}

impl Settings {
    pub fn record(lab: &Lab, max: &ConntrackMax, chosen: Chosen) -> Result<Self> {
        Ok(Self {
            kernel: read_trimmed("/proc/sys/kernel/osrelease")?,
            cpus: thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpu_model(),
            loadavg_at_start: read_trimmed("/proc/loadavg")?.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            conntrack_tools: conntrack_version(),
            nf_conntrack_max: max.current,
            nf_conntrack_max_before: max.original,
            nf_conntrack_buckets: number(&lab.client_sysctl("net.netfilter.nf_conntrack_buckets")?)?,
            nf_conntrack_events: lab.client_sysctl("net.netfilter.nf_conntrack_events")?,
            tcp_timeout_syn_sent_s: number(&lab.client_sysctl("net.netfilter.nf_conntrack_tcp_timeout_syn_sent")?)?,
            netlink_rmem_default: number(&lab.client_sysctl("net.core.rmem_default")?)?,
            ring_buffer_bytes: chosen.ring_buffer_bytes,
            connections_per_run: chosen.connections,
            load_sources: chosen.sources,
            load_destination: format!("{}:{} (TCP SYN, dropped at the server's input)", netns::SERVER_ADDR, netns::LOAD_PORT),
            flush_policy: "conntrack -F in the client namespace before each consumer starts (not measured) and once after \
                           generation (measured: one DESTROY per entry); entries stay in SYN_SENT until then"
                .to_string(),
            quiet_ms: chosen.quiet_ms,
        })
    }
}

/// Holds `nf_conntrack_max` at least at a minimum; restores the old value on drop.
pub(crate) struct ConntrackMax {
    original: u64,
    current: u64,
}

impl ConntrackMax {
    pub fn ensure(minimum: u64) -> Result<Self> {
        let original = number(&read_trimmed(CONNTRACK_MAX)?)?;
        if original >= minimum {
            return Ok(Self { original, current: original });
        }
        write(minimum)?;
        eprintln!("bench: raised nf_conntrack_max from {original} to {minimum} for the run");
        Ok(Self { original, current: minimum })
    }
}

impl Drop for ConntrackMax {
    fn drop(&mut self) {
        if self.current != self.original {
            if let Err(err) = write(self.original) {
                eprintln!("bench: cannot restore nf_conntrack_max to {}: {err:#}", self.original);
            }
        }
    }
}

fn write(value: u64) -> Result<()> {
    fs::write(CONNTRACK_MAX, value.to_string()).with_context(|| format!("writing {value} to {CONNTRACK_MAX}"))
}

fn read_trimmed(path: &str) -> Result<String> {
    Ok(fs::read_to_string(path).with_context(|| format!("reading {path}"))?.trim().to_string())
}

fn number(text: &str) -> Result<u64> {
    text.trim().parse().with_context(|| format!("expected a number, found {text:?}"))
}

fn cpu_model() -> String {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, m)| m.trim().to_string());
    model.unwrap_or_else(|| "unknown".to_string())
}

fn conntrack_version() -> String {
    let out = Command::new("conntrack").arg("--version").output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_else(|_| "unknown".to_string())
}
