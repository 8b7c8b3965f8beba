//! The configuration file as written: serde structs that only check shape.
//! Every table denies unknown keys; `///` docs say what each key does. The
//! components' sections are theirs (`source`, `sink`, `geoip`).
use serde::Deserialize;

use crate::{enrich::RawGeoip, sink::RawSinks, source::RawSource};

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
