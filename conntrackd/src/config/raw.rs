//! The configuration file as written, declared once per key with
//! [`crate::schema::section!`] (type, default, help; every table denies
//! unknown keys). The components' tables are theirs (`source`, `sink`,
//! `geoip`); this file declares the top level, `[log]`, `[metrics]` and
//! `[profiler]`.
use crate::{
    enrich::RawGeoip,
    schema::{choice, section, Choice},
    sink::RawSinks,
    source::RawSource,
};

section! {
    /// The file as written.
    pub(crate) struct RawConfig at "" {
        /// A rule (`log|drop <expression>`); repeat for a list. Replaces the file's rules
        filter: Option<Vec<String>> = None, List, shown "log protocol tcp and destination network public; drop any";
        /// Seed of every event's community_id (Community ID v1), 0 to 65535; peers hashing the same flows must use the same seed
        community_id_seed: u64 = 0, Int;
        /// `[log]`
        log: RawLog = RawLog::default(), Table(RawLog::keys);
        /// `[source]`
        source: RawSource = RawSource::default(), Table(RawSource::keys);
        /// `[sink]`
        sink: RawSinks = RawSinks::default(), Table(RawSinks::keys);
        /// `[geoip]`
        geoip: RawGeoip = RawGeoip::default(), Table(RawGeoip::keys);
        /// `[metrics]`
        metrics: RawMetrics = RawMetrics::default(), Table(RawMetrics::keys);
        /// `[profiler]`
        profiler: RawProfiler = RawProfiler::default(), Table(RawProfiler::keys);
    }
}

section! {
    /// `[log]`
    pub(crate) struct RawLog at "log" {
        /// Log level, any case, optionally with an offset (info+2)
        level: String = "info".into(), Enum(&super::level::LEVEL_NAMES);
        /// Log format
        format: Option<LogFormat> = None, Enum(LogFormat::NAMES), shown "text on a terminal, json otherwise";
    }
}

choice! {
    /// `log.format`.
    pub(crate) enum LogFormat { Text = "text", Json = "json" }
}

section! {
    /// `[metrics]`
    pub(crate) struct RawMetrics at "metrics" {
        /// Serve /metrics and /healthz on this address, e.g. 127.0.0.1:9469
        listen: Option<String> = None, Str, shown "off";
        /// /healthz fails once a sink has failed this long
        unhealthy_after_s: u64 = 60, Int;
    }
}

section! {
    /// `[profiler]`: the original's continuous profiling (Pyroscope). Accepted
    /// so its files and flags keep working; conntrackd does not profile and
    /// says so at start when `enable` is true (`address` is never read).
    #[allow(dead_code)]
    pub(crate) struct RawProfiler at "profiler" {
        /// The original's continuous profiling: accepted, not supported (a warning at start)
        enable: bool = false, Bool;
        /// The original's Pyroscope server address: accepted and ignored
        address: Option<String> = None, Str, shown "http://localhost:4040";
    }
}
