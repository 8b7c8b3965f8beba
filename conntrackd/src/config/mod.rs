//! Configuration: the raw file as parsed (`raw.rs`; TOML, YAML or JSON, see
//! `format.rs`), overridden by the environment and flags (`keys.rs`), and
//! validated into [`Config`].
//!
//! Parsing (serde, `deny_unknown_fields`) only checks shape; validation turns
//! raw values into checked settings and names the key that is wrong.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
mod format;
pub(crate) mod keys;
mod level;
mod raw;
use std::path::{Path, PathBuf};

use tracing_subscriber::filter::LevelFilter;

use self::raw::{RawConfig, RawStream};

use crate::{
    filter::{Rules, RulesError},
    sink::{journal::JournalConfig, syslog::SyslogConfig},
};

pub(crate) use self::format::Format;

/// Said at start when the original's `profiler.enable` is true.
pub(crate) const PROFILER_WARNING: &str =
    "profiler.enable is true: continuous profiling (the original's Pyroscope client) is not supported by conntrackd; running without it";

/// The built-in default: the configuration the installer writes.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("../../../contrib/conntrackd.toml");

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Override(#[from] keys::OverrideError),
    #[error(transparent)]
    Loki(#[from] crate::sink::loki::config::LokiConfigError),
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("{origin}:\n{errors}")]
    Rules { origin: String, errors: RulesError },
}

/// Values that replace the file's: `CONNTRACKD_*` variables, then flags.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    /// (name, value) of the process environment; only `CONNTRACKD_*` are used.
    pub env: Vec<(String, String)>,
    /// (key path, values) of the flags given.
    pub flags: Vec<(&'static str, Vec<String>)>,
}

impl Overrides {
    /// Where the rules come from, for error messages.
    fn rules_origin(&self, file: &str) -> String {
        if self.flags.iter().any(|(p, _)| *p == "filter") {
            "--filter".into()
        } else if self.env.iter().any(|(n, _)| n == "CONNTRACKD_FILTER") {
            "environment variable CONNTRACKD_FILTER".into()
        } else {
            file.into()
        }
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The file read; None for the built-in default.
    pub file: Option<PathBuf>,
    /// Things to warn about once logging is up (e.g. unknown CONNTRACKD_* variables).
    pub warnings: Vec<String>,
    pub rules: Rules,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub source: SourceConfig,
    pub stream: Option<StreamConfig>,
    pub journal: Option<JournalConfig>,
    pub syslog: Option<SyslogConfig>,
    pub loki: Option<crate::sink::loki::config::LokiConfig>,
    pub geoip: GeoipConfig,
}

/// `[geoip]`: the databases are opened by `enrich::Enricher::open`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GeoipConfig {
    pub database: Option<PathBuf>,
    pub asn_database: Option<PathBuf>,
    pub cache_entries: usize,
    /// None: no periodic check of the files (SIGHUP still reloads).
    pub watch_interval: Option<std::time::Duration>,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetricsConfig {
    pub listen: Option<std::net::SocketAddr>,
    pub unhealthy_after: std::time::Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct LogConfig {
    pub level: LevelFilter,
    /// "text" or "json"; None = decided by whether stderr is a terminal.
    pub format: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceConfig {
    pub ring_buffer_bytes: u32,
    pub drain_interval: std::time::Duration,
    /// false: the kernel passes every TCP/UDP event on and only the rules decide.
    pub kernel_prefilter: bool,
    pub kind: crate::source::Kind,
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
    /// The explicit namespaces, opened for their identity.
    pub fn namespaces(&self) -> Result<Vec<crate::source::netns::Namespace>, crate::source::netns::NetnsError> {
        use crate::source::netns::Namespace;
        self.netns.iter().map(|p| p.as_deref().map_or_else(Namespace::own, Namespace::at)).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StreamConfig {
    pub writer: Writer,
    pub queue_events: usize,
}

/// Destination of the stream sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    Stdout,
    Stderr,
    Discard,
}

impl Config {
    /// Reads `path` (or the default file if one exists, or the built-in
    /// default), applies the command-line overrides and validates.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let file = match path {
            Some(path) => Some(path.to_path_buf()),
            None => format::default_file(Path::new(format::DEFAULT_DIR))?,
        };
        let Some(file) = file else {
            return Self::from_document(Path::new("<built-in default>"), Format::Toml, DEFAULT_CONFIG, overrides, true);
        };
        let format = Format::of(&file)?;
        let mut config = Self::from_document(&file, format, &read(&file)?, overrides, false)?;
        config.file = Some(file);
        Ok(config)
    }

    /// A TOML text (tests).
    #[cfg(test)]
    pub fn from_text(file: &Path, text: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::from_document(file, Format::Toml, text, overrides, false)
    }

    /// A text in any of the formats (the fuzz targets).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn from_text_as(file: &Path, format: Format, text: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::from_document(file, format, text, overrides, false)
    }

    /// Checks the file's own shape (errors with line and column), applies the
    /// environment and flags, and validates. The built-in default's stream
    /// sink applies only when the environment and flags enable no sink.
    fn from_document(file: &Path, format: Format, text: &str, overrides: &Overrides, builtin: bool) -> Result<Self, ConfigError> {
        let mut doc = format::document(format, file, text)?;
        if builtin && enables_a_sink(overrides)? {
            if let Some(toml::Value::Table(sinks)) = doc.get_mut("sink") {
                sinks.remove("stream");
            }
        }
        let unknown_env = keys::apply_env(&mut doc, &overrides.env)?;
        keys::apply_flags(&mut doc, &overrides.flags)?;
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(doc)).map_err(|e| ConfigError::Parse {
            path: file.to_path_buf(),
            message: format!("after applying the environment and flags: {}", format::keyed(&e)),
        })?;
        let profiler = raw.profiler.enable == Some(true);
        let mut config = Self::validate(raw, overrides.rules_origin(&format!("config file {}: filter", file.display())))?;
        config.warnings = unknown_env
            .into_iter()
            .map(|v| format!("environment variable {v} is not a configuration key (variables are CONNTRACKD_ + the key path with '_', e.g. CONNTRACKD_SINK_STREAM_ENABLE); ignored"))
            .collect();
        if profiler {
            config.warnings.push(PROFILER_WARNING.into());
        }
        Ok(config)
    }

    /// Parses a config from a string (tests).
    #[cfg(test)]
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_text(Path::new("<test>"), text, &Overrides::default())
    }

    fn validate(raw: RawConfig, origin: String) -> Result<Self, ConfigError> {
        let rules = Rules::compile(&raw.filter.unwrap_or_default()).map_err(|errors| ConfigError::Rules { origin, errors })?;
        let level = level::parse(raw.log.level.as_deref().unwrap_or("info")).map_err(|message| ConfigError::Invalid { key: "log.level", message })?;
        let format = match raw.log.format.as_deref().map(str::to_ascii_lowercase) {
            None => None,
            Some(f) if f == "text" || f == "json" => Some(f),
            Some(other) => return invalid("log.format", format!("expected text or json, found {other:?}")),
        };
        let ring = raw.source.ring_buffer_bytes.unwrap_or(u64::from(conntrackd_common::DEFAULT_RING_BYTES));
        if !ring.is_power_of_two() || !(64 << 10..=1 << 30).contains(&ring) {
            return invalid("source.ring_buffer_bytes", format!("expected a power of two between 65536 and 1073741824, found {ring}"));
        }
        let drain_ms = raw.source.drain_interval_ms.unwrap_or(50);
        if !(1..=10_000).contains(&drain_ms) {
            return invalid("source.drain_interval_ms", format!("expected 1..=10000, found {drain_ms}"));
        }
        let (netns, all_namespaces) = validate_netns(raw.source.netns.unwrap_or_else(|| vec!["self".into()]))?;
        let kind = match raw.source.kind.as_deref().unwrap_or("auto").to_ascii_lowercase().as_str() {
            "auto" => crate::source::Kind::Auto,
            "ebpf" => crate::source::Kind::Ebpf,
            "netlink" => crate::source::Kind::Netlink,
            other => return invalid("source.kind", format!("expected auto, ebpf or netlink, found {other:?}")),
        };
        let rcvbuf = raw.source.receive_buffer_bytes.unwrap_or(8 << 20);
        if !(64 << 10..=1 << 30).contains(&rcvbuf) {
            return invalid("source.receive_buffer_bytes", format!("expected 65536..=1073741824, found {rcvbuf}"));
        }
        let stream = validate_stream(raw.sink.stream)?;
        let journal = crate::sink::journal::validate(raw.sink.journal)?;
        let syslog = crate::sink::syslog::validate(raw.sink.syslog)?;
        let loki = raw.sink.loki.map(crate::sink::loki::config::RawLoki::validate).transpose()?.flatten();
        if stream.is_none() && journal.is_none() && syslog.is_none() && loki.is_none() {
            return invalid("sink", "no sink is enabled; enable one, e.g. [sink.stream] enable = true".into());
        }
        let metrics = validate_metrics(&raw.metrics)?;
        Ok(Self {
            file: None,
            warnings: Vec::new(),
            rules,
            metrics,
            log: LogConfig { level, format },
            source: SourceConfig {
                // Cannot fail: checked to be at most 1 GiB above.
                ring_buffer_bytes: u32::try_from(ring).unwrap_or(conntrackd_common::DEFAULT_RING_BYTES),
                drain_interval: std::time::Duration::from_millis(drain_ms),
                kernel_prefilter: raw.source.kernel_prefilter.unwrap_or(true),
                kind,
                reliable: raw.source.reliable.unwrap_or(false),
                // Cannot fail: checked to be at most 1 GiB above.
                receive_buffer_bytes: usize::try_from(rcvbuf).unwrap_or(8 << 20),
                set_sysctls: raw.source.set_sysctls.unwrap_or(false),
                label_events: all_namespaces || netns != [None],
                netns,
                all_namespaces,
            },
            stream,
            journal,
            syslog,
            loki,
            geoip: validate_geoip(raw.geoip)?,
        })
    }
}

fn validate_geoip(raw: raw::RawGeoip) -> Result<GeoipConfig, ConfigError> {
    // An empty path means "no database", as in the original's default config.
    let path = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
    let cache_entries = raw.cache_entries.unwrap_or(4096);
    if cache_entries > 10_000_000 {
        return invalid("geoip.cache_entries", format!("expected 0 (no cache) to 10000000, found {cache_entries}"));
    }
    let watch_ms = raw.watch_interval_ms.unwrap_or(10_000);
    if watch_ms > 86_400_000 {
        return invalid("geoip.watch_interval_ms", format!("expected 0 (off) to 86400000, found {watch_ms}"));
    }
    Ok(GeoipConfig {
        database: path(raw.database),
        asn_database: path(raw.asn_database),
        cache_entries,
        watch_interval: (watch_ms > 0).then(|| std::time::Duration::from_millis(watch_ms)),
    })
}

fn validate_metrics(raw: &raw::RawMetrics) -> Result<MetricsConfig, ConfigError> {
    let listen = match raw.listen.as_deref() {
        None => None,
        Some(text) => match text.parse::<std::net::SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => return invalid("metrics.listen", format!("expected IP:PORT such as 127.0.0.1:9469, found {text:?}")),
        },
    };
    let secs = raw.unhealthy_after_s.unwrap_or(60);
    if !(1..=MAX_UNHEALTHY_AFTER_S).contains(&secs) {
        return invalid("metrics.unhealthy_after_s", format!("expected 1..={MAX_UNHEALTHY_AFTER_S} (a week), found {secs}"));
    }
    Ok(MetricsConfig { listen, unhealthy_after: std::time::Duration::from_secs(secs) })
}

/// `["self"]`, `["all"]`, or a list of "self" and absolute paths.
fn validate_netns(list: Vec<String>) -> Result<(Vec<Option<PathBuf>>, bool), ConfigError> {
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

fn validate_stream(raw: Option<RawStream>) -> Result<Option<StreamConfig>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.enable != Some(true) {
        return Ok(None);
    }
    let writer = match raw.writer.as_deref().unwrap_or("stdout").to_ascii_lowercase().as_str() {
        "stdout" => Writer::Stdout,
        "stderr" => Writer::Stderr,
        "discard" => Writer::Discard,
        other => return invalid("sink.stream.writer", format!("expected stdout, stderr or discard, found {other:?}")),
    };
    let queue_events = queue_events(raw.queue_events).or_else(|message| invalid("sink.stream.queue_events", message))?;
    Ok(Some(StreamConfig { writer, queue_events }))
}

/// Largest `queue_events` of a sink: ten million queued events are gigabytes of memory.
pub(crate) const MAX_QUEUE_EVENTS: usize = 10_000_000;
/// Largest `metrics.unhealthy_after_s`: a week.
const MAX_UNHEALTHY_AFTER_S: u64 = 7 * 86_400;

/// A sink's `queue_events` (default 65536), checked to be 1..=[`MAX_QUEUE_EVENTS`];
/// the error is the message for the sink's key.
pub(crate) fn queue_events(value: Option<usize>) -> Result<usize, String> {
    let n = value.unwrap_or(65_536);
    if (1..=MAX_QUEUE_EVENTS).contains(&n) {
        Ok(n)
    } else {
        Err(format!("expected 1..={MAX_QUEUE_EVENTS}, found {n}"))
    }
}

fn invalid<T>(key: &'static str, message: String) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid { key, message })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })
}

/// True when the environment or the flags enable some sink.
fn enables_a_sink(overrides: &Overrides) -> Result<bool, ConfigError> {
    let mut doc = toml::Table::new();
    keys::apply_env(&mut doc, &overrides.env)?;
    keys::apply_flags(&mut doc, &overrides.flags)?;
    let sinks = doc.get("sink").and_then(toml::Value::as_table);
    Ok(sinks.is_some_and(|t| t.values().any(|s| s.get("enable").and_then(toml::Value::as_bool) == Some(true))))
}

#[cfg(test)]
mod keys_tests;
#[cfg(test)]
mod tests;
