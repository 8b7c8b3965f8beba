//! `[source]`: the keys as written ([`RawSource`]) and their validation into
//! a [`SourceConfig`]. Nothing here touches the system: the namespaces are
//! opened when the sources start ([`SourceConfig::namespaces`]).
use std::path::PathBuf;

use serde::Deserialize;

use super::{
    netns::{Namespace, NetnsError},
    Kind,
};

/// A `[source]` key with a value outside its range.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceConfigError {
    #[error("config {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// `[source]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    /// Size of the kernel -> daemon ring buffer in bytes (power of two, >= 64 KiB).
    pub ring_buffer_bytes: Option<u64>,
    /// How often the daemon drains the ring without a wakeup, in milliseconds.
    pub drain_interval_ms: Option<u64>,
    /// Let the kernel drop events no rule can log (default true).
    pub kernel_prefilter: Option<bool>,
    /// auto | ebpf | netlink (default auto: eBPF, else netlink with a warning).
    pub kind: Option<String>,
    /// netlink: NETLINK_BROADCAST_ERROR + NETLINK_NO_ENOBUFS (conntrack-tools' reliable mode).
    pub reliable: Option<bool>,
    /// netlink: socket receive buffer in bytes (SO_RCVBUFFORCE when permitted).
    pub receive_buffer_bytes: Option<u64>,
    /// Namespaces to watch: ["self"] (default), paths, or ["all"].
    pub netns: Option<Vec<String>>,
    /// Set nf_conntrack_events, _acct and _timestamp to 1 in watched namespaces.
    pub set_sysctls: Option<bool>,
}

/// Validated `[source]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceConfig {
    pub ring_buffer_bytes: u32,
    pub drain_interval: std::time::Duration,
    /// false: the kernel passes every TCP/UDP event on and only the rules decide.
    pub kernel_prefilter: bool,
    pub kind: Kind,
    pub reliable: bool,
    pub receive_buffer_bytes: usize,
    pub set_sysctls: bool,
    /// Explicit namespaces (None = the daemon's own); empty with `all_namespaces`.
    pub netns: Vec<Option<PathBuf>>,
    /// `netns = ["all"]`: every namespace on the host, discovered while running.
    pub all_namespaces: bool,
    /// Events carry `netns` unless only the daemon's own namespace is watched.
    pub label_events: bool,
}

impl SourceConfig {
    /// The explicit namespaces, opened for their identity (at start).
    pub fn namespaces(&self) -> Result<Vec<Namespace>, NetnsError> {
        self.netns.iter().map(|p| p.as_deref().map_or_else(Namespace::own, Namespace::at)).collect()
    }
}

fn invalid<T>(key: &'static str, message: String) -> Result<T, SourceConfigError> {
    Err(SourceConfigError::Invalid { key, message })
}

impl RawSource {
    /// Checks every key and fills in the defaults.
    pub fn validate(self) -> Result<SourceConfig, SourceConfigError> {
        let ring = self.ring_buffer_bytes.unwrap_or(u64::from(conntrackd_common::DEFAULT_RING_BYTES));
        if !ring.is_power_of_two() || !(64 << 10..=1 << 30).contains(&ring) {
            return invalid("source.ring_buffer_bytes", format!("expected a power of two between 65536 and 1073741824, found {ring}"));
        }
        let drain_ms = self.drain_interval_ms.unwrap_or(50);
        if !(1..=10_000).contains(&drain_ms) {
            return invalid("source.drain_interval_ms", format!("expected 1..=10000, found {drain_ms}"));
        }
        let (netns, all_namespaces) = validate_netns(self.netns.unwrap_or_else(|| vec!["self".into()]))?;
        let kind = match self.kind.as_deref().unwrap_or("auto").to_ascii_lowercase().as_str() {
            "auto" => Kind::Auto,
            "ebpf" => Kind::Ebpf,
            "netlink" => Kind::Netlink,
            other => return invalid("source.kind", format!("expected auto, ebpf or netlink, found {other:?}")),
        };
        let rcvbuf = self.receive_buffer_bytes.unwrap_or(8 << 20);
        if !(64 << 10..=1 << 30).contains(&rcvbuf) {
            return invalid("source.receive_buffer_bytes", format!("expected 65536..=1073741824, found {rcvbuf}"));
        }
        Ok(SourceConfig {
            // Cannot fail: checked to be at most 1 GiB above.
            ring_buffer_bytes: u32::try_from(ring).unwrap_or(conntrackd_common::DEFAULT_RING_BYTES),
            drain_interval: std::time::Duration::from_millis(drain_ms),
            kernel_prefilter: self.kernel_prefilter.unwrap_or(true),
            kind,
            reliable: self.reliable.unwrap_or(false),
            // Cannot fail: checked to be at most 1 GiB above.
            receive_buffer_bytes: usize::try_from(rcvbuf).unwrap_or(8 << 20),
            set_sysctls: self.set_sysctls.unwrap_or(false),
            label_events: all_namespaces || netns != [None],
            netns,
            all_namespaces,
        })
    }
}

/// `["self"]`, `["all"]`, or a list of "self" and absolute paths.
fn validate_netns(list: Vec<String>) -> Result<(Vec<Option<PathBuf>>, bool), SourceConfigError> {
    if list.iter().any(|n| n == "all") {
        if list.len() != 1 {
            return invalid("source.netns", "\"all\" already includes every namespace: use it alone".into());
        }
        return Ok((Vec::new(), true));
    }
    if list.is_empty() {
        return invalid("source.netns", "expected at least one namespace, e.g. [\"self\"]".into());
    }
    let mut out = Vec::new();
    for entry in list {
        match entry.as_str() {
            "self" => out.push(None),
            path if path.starts_with('/') => out.push(Some(PathBuf::from(path))),
            other => return invalid("source.netns", format!("expected \"self\", \"all\" or an absolute path such as /run/netns/NAME, found {other:?}")),
        }
    }
    Ok((out, false))
}
