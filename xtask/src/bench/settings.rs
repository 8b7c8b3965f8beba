//! The settings a benchmark depends on, recorded for the report, and the one
//! global setting it may change: `nf_conntrack_max`, raised for the run when
//! the load's entries would not fit and restored by [`ConntrackMax`]'s `Drop`.
use std::{fs, net::Ipv4Addr, process::Command, thread};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    daemon_config,
    mode::Mode,
    netns::{self, Lab},
};

const CONNTRACK_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

/// Everything the figures depend on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    /// `/proc/loadavg` when the benchmark started: other work skews the CPU figures.
    pub loadavg_at_start: String,
    /// `/proc/loadavg` when the runs ended (set by [`Settings::finish`]).
    pub loadavg_at_end: String,
    pub conntrack_tools: String,
    pub nf_conntrack_max: u64,
    pub nf_conntrack_max_before: u64,
    pub nf_conntrack_buckets: u64,
    pub nf_conntrack_events: String,
    pub tcp_timeout_syn_sent_s: u64,
    pub netlink_rmem_default: u64,
    pub ring_buffer_bytes: u64,
    pub receive_buffer_bytes: u64,
    pub daemon_rules: Vec<String>,
    pub connections_per_run: u32,
    pub load_sources: Vec<Ipv4Addr>,
    pub load_destination: String,
    /// Each load mode and what it sends.
    pub modes: Vec<String>,
    pub flush_policy: String,
    pub quiet_ms: u64,
}

/// What the caller decides; the rest is read from the machine.
pub(crate) struct Chosen {
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
            loadavg_at_start: loadavg(&read_trimmed("/proc/loadavg")?),
            loadavg_at_end: String::new(),
            conntrack_tools: conntrack_version(),
            nf_conntrack_max: max.current,
            nf_conntrack_max_before: max.original,
            nf_conntrack_buckets: number(&lab.client_sysctl("net.netfilter.nf_conntrack_buckets")?)?,
            nf_conntrack_events: lab.client_sysctl("net.netfilter.nf_conntrack_events")?,
            tcp_timeout_syn_sent_s: number(&lab.client_sysctl("net.netfilter.nf_conntrack_tcp_timeout_syn_sent")?)?,
            netlink_rmem_default: number(&lab.client_sysctl("net.core.rmem_default")?)?,
            ring_buffer_bytes: daemon_config::RING_BUFFER_BYTES,
            receive_buffer_bytes: daemon_config::RECEIVE_BUFFER_BYTES,
            daemon_rules: daemon_config::RULES.iter().map(ToString::to_string).collect(),
            connections_per_run: chosen.connections,
            load_sources: chosen.sources,
            load_destination: format!(
                "{} (PUBLIC) and {} (PRIVATE), port {} (TCP SYN, dropped at the server's input)",
                netns::SERVER_ADDR,
                netns::PRIVATE_SERVER_ADDR,
                netns::LOAD_PORT
            ),
            modes: Mode::ALL.iter().map(|m| format!("{}: {}", m.label(), m.describe())).collect(),
            flush_policy: "conntrack -F in the client namespace before each consumer starts (not measured) and once after \
                           generation (measured: one DESTROY per entry); entries stay in SYN_SENT until then"
                .to_string(),
            quiet_ms: chosen.quiet_ms,
        })
    }

    /// Records what changes during the runs.
    pub fn finish(&mut self) {
        self.loadavg_at_end = read_trimmed("/proc/loadavg").map(|l| loadavg(&l)).unwrap_or_else(|_| "unknown".into());
    }

    /// The settings as a Markdown list.
    pub fn markdown(&self) -> String {
        let sources: Vec<String> = self.load_sources.iter().map(ToString::to_string).collect();
        let max_note = if self.nf_conntrack_max == self.nf_conntrack_max_before {
            " (unchanged)".to_string()
        } else {
            format!(" (raised from {})", self.nf_conntrack_max_before)
        };
        let mut lines = vec![
            format!(
                "- kernel {}, {} CPUs ({}), load average at start {}, at end {}",
                self.kernel, self.cpus, self.cpu_model, self.loadavg_at_start, self.loadavg_at_end
            ),
            format!("- {}", self.conntrack_tools),
            format!("- nf_conntrack_max {}{max_note}, nf_conntrack_buckets {}", self.nf_conntrack_max, self.nf_conntrack_buckets),
            format!(
                "- client namespace: nf_conntrack_events={}, tcp_timeout_syn_sent={} s, rmem_default={} B",
                self.nf_conntrack_events, self.tcp_timeout_syn_sent_s, self.netlink_rmem_default
            ),
            format!("- load: {} connections per run from {} to {}", self.connections_per_run, sources.join(", "), self.load_destination),
        ];
        lines.extend(self.modes.iter().map(|m| format!("  - {m}")));
        lines.extend([
            format!("- flush policy: {}", self.flush_policy),
            format!(
                "- conntrackd: rules {:?}; ebpf ring_buffer_bytes={}; netlink receive_buffer_bytes={}; stream sink to a file; conntrack -E -o timestamp to a file",
                self.daemon_rules, self.ring_buffer_bytes, self.receive_buffer_bytes
            ),
            format!(
                "- ulogd2: `ulogd -c ulogd2.conf` in the foreground; NFCT input in event mode, hash_enable=0 (every NEW and DESTROY \
                 reaches the output), accept_dst_filter={} (a kernel socket filter), netlink socket buffer 217088 B growing to {} B; \
                 IP2STR; JSON output with sync=1 to a file",
                super::ulogd::PUBLIC_RANGE,
                self.receive_buffer_bytes
            ),
            "- loss: of the events the consumer should deliver (conntrackd and ulogd2: those to the PUBLIC address; conntrack -E and the Go original: all); \
             CPU per 100k: of all events the kernel generated (NEW + DESTROY of every connection)"
                .to_string(),
            "- consumer CPU is the consumer process only; the kernel work done as each event is emitted (conntrack, the \
             eBPF socket filter, copying to each listening socket) runs in the producer's context and is charged to the \
             producer: the generator thread (NEW) and conntrack -F (DESTROY), reported as producer CPU"
                .to_string(),
            format!("- a consumer is stopped once its output has not grown for {} ms; CPU counts from readiness to exit", self.quiet_ms),
        ]);
        lines.join("\n") + "\n"
    }
}

/// The first three fields of `/proc/loadavg`.
fn loadavg(text: &str) -> String {
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
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
