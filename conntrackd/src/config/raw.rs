//! The configuration file as written: serde structs that only check shape.
//! Every table denies unknown keys; `///` docs say what each key does.
use serde::Deserialize;

/// The file as written. Every table denies unknown keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// Rules, first match wins; absent = log every TCP/UDP event.
    pub(super) filter: Option<Vec<String>>,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) source: RawSource,
    #[serde(default)]
    pub(super) sink: RawSinks,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    #[serde(default)]
    pub(super) geoip: RawGeoip,
    #[serde(default)]
    pub(super) profiler: RawProfiler,
}

/// `[profiler]`: the original's continuous profiling (Pyroscope). Accepted
/// so its files and flags keep working; conntrackd does not profile and
/// says so at start when `enable` is true.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfiler {
    /// Accepted and ignored (with a warning when true).
    pub(super) enable: Option<bool>,
    /// The original's Pyroscope server address; accepted and ignored.
    #[allow(dead_code)]
    pub(super) address: Option<String>,
}

/// `[geoip]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGeoip {
    /// City database (GeoLite2-City, GeoIP2-City, DB-IP City Lite); empty = none.
    pub(super) database: Option<std::path::PathBuf>,
    /// Optional ASN database (GeoLite2-ASN); empty = none.
    pub(super) asn_database: Option<std::path::PathBuf>,
    /// Addresses whose lookup result is cached (LRU); 0 disables the cache.
    pub(super) cache_entries: Option<usize>,
    /// How often the files are checked for a replacement, in milliseconds; 0 = only on SIGHUP.
    pub(super) watch_interval_ms: Option<u64>,
}

/// `[metrics]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    /// Serve Prometheus text at http://LISTEN/metrics and /healthz (off when absent).
    pub(super) listen: Option<String>,
    /// /healthz fails once a sink has been failing this long (seconds, default 60).
    pub(super) unhealthy_after_s: Option<u64>,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    /// debug | info | warn | error (default info), any case, optionally
    /// with an offset as the original's slog takes it (`info+2`, `DEBUG-4`).
    pub(super) level: Option<String>,
    /// text | json (default: text on a terminal, JSON lines otherwise).
    pub(super) format: Option<String>,
}

/// `[source]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    /// Size of the kernel -> daemon ring buffer in bytes (power of two, >= 64 KiB).
    pub(super) ring_buffer_bytes: Option<u64>,
    /// How often the daemon drains the ring without a wakeup, in milliseconds.
    pub(super) drain_interval_ms: Option<u64>,
    /// Let the kernel drop events no rule can log (default true).
    pub(super) kernel_prefilter: Option<bool>,
    /// auto | ebpf | netlink (default auto: eBPF, else netlink with a warning).
    pub(super) kind: Option<String>,
    /// netlink: NETLINK_BROADCAST_ERROR + NETLINK_NO_ENOBUFS (conntrack-tools' reliable mode).
    pub(super) reliable: Option<bool>,
    /// netlink: socket receive buffer in bytes (SO_RCVBUFFORCE when permitted).
    pub(super) receive_buffer_bytes: Option<u64>,
    /// Namespaces to watch: ["self"] (default), paths, or ["all"].
    pub(super) netns: Option<Vec<String>>,
    /// Set nf_conntrack_events, _acct and _timestamp to 1 in watched namespaces.
    pub(super) set_sysctls: Option<bool>,
}

/// `[sink]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSinks {
    pub(super) stream: Option<RawStream>,
    pub(super) journal: Option<crate::sink::journal::RawJournal>,
    pub(super) syslog: Option<crate::sink::syslog::RawSyslog>,
    pub(super) loki: Option<crate::sink::loki::config::RawLoki>,
}

/// `[sink.stream]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStream {
    /// Write events as JSON lines.
    pub(super) enable: Option<bool>,
    /// stdout | stderr | discard.
    pub(super) writer: Option<String>,
    /// Events queued for this sink before new ones are dropped (and counted).
    pub(super) queue_events: Option<usize>,
    /// Accepted for symmetry with the other sinks; the stream sink always starts.
    #[allow(dead_code)]
    pub(super) optional: Option<bool>,
}
