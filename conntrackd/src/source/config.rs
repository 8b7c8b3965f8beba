//! `[source]`: the keys, declared once ([`RawSource`]: type, default, help),
//! and their validation into a [`SourceConfig`]. Nothing here touches the system: the namespaces are
//! opened when the sources start ([`SourceConfig::namespaces`]).
use std::path::PathBuf;

use super::{
    netns::{Namespace, NetnsError},
    Kind,
};
use crate::schema::{section, Choice};

/// A `[source]` key with a value outside its range.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceConfigError {
    #[error("config {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

section! {
    /// `[source]`
    pub(crate) struct RawSource at "source" {
        /// Source: eBPF, netlink, or eBPF with a netlink fallback
        kind: Kind = Kind::Auto, Enum(Kind::NAMES);
        /// Network namespaces: self, all, or paths such as /run/netns/NAME
        netns: Vec<String> = vec!["self".into()], List;
        /// Set nf_conntrack_events/_acct/_timestamp to 1 in watched namespaces
        set_sysctls: bool = false, Bool;
        /// eBPF ring buffer size, a power of two
        ring_buffer_bytes: u64 = u64::from(conntrackd_common::DEFAULT_RING_BYTES), Int;
        /// How often the ring is drained without a wakeup
        drain_interval_ms: u64 = 50, Int;
        /// Let the kernel drop events no rule can log
        kernel_prefilter: bool = true, Bool;
        /// netlink source receive buffer
        receive_buffer_bytes: u64 = 8 << 20, Int;
        /// netlink source reliable mode (kernel re-sends DESTROY)
        reliable: bool = false, Bool;
    }
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
        let ring = self.ring_buffer_bytes;
        if !ring.is_power_of_two() || !(64 << 10..=1 << 30).contains(&ring) {
            return invalid("source.ring_buffer_bytes", format!("expected a power of two between 65536 and 1073741824, found {ring}"));
        }
        let drain_ms = self.drain_interval_ms;
        if !(1..=10_000).contains(&drain_ms) {
            return invalid("source.drain_interval_ms", format!("expected 1..=10000, found {drain_ms}"));
        }
        let (netns, all_namespaces) = validate_netns(self.netns)?;
        let rcvbuf = self.receive_buffer_bytes;
        if !(64 << 10..=1 << 30).contains(&rcvbuf) {
            return invalid("source.receive_buffer_bytes", format!("expected 65536..=1073741824, found {rcvbuf}"));
        }
        Ok(SourceConfig {
            // Cannot fail: checked to be at most 1 GiB above.
            ring_buffer_bytes: u32::try_from(ring).unwrap_or(conntrackd_common::DEFAULT_RING_BYTES),
            drain_interval: std::time::Duration::from_millis(drain_ms),
            kernel_prefilter: self.kernel_prefilter,
            kind: self.kind,
            reliable: self.reliable,
            // Cannot fail: checked to be at most 1 GiB above.
            receive_buffer_bytes: usize::try_from(rcvbuf).unwrap_or(usize::MAX),
            set_sysctls: self.set_sysctls,
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
