//! Configuration: the raw TOML file as parsed, and the validated [`Config`].
//!
//! Parsing (serde, `deny_unknown_fields`) only checks shape; validation turns
//! raw values into checked settings and names the key that is wrong.
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tracing_subscriber::filter::LevelFilter;

use crate::{
    filter::{Rules, RulesError, DEFAULT_RULES},
    sink::loki::config::{LokiConfig, LokiConfigError, RawLoki},
};

/// Where the daemon looks when `--config` is not given; a missing file is fine.
pub(crate) const DEFAULT_PATH: &str = "/etc/conntrackd/conntrackd.toml";

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(transparent)]
    Loki(#[from] LokiConfigError),
    #[error("{origin}:\n{errors}")]
    Rules { origin: String, errors: RulesError },
}

/// Command-line values that replace the file's.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub log_level: Option<String>,
    /// `--filter` rules; when any are given they replace the file's `filter`.
    pub filter: Vec<String>,
}

/// The file as written. Every table denies unknown keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Rules, first match wins; absent = log every TCP/UDP event.
    filter: Option<Vec<String>>,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    source: RawSource,
    #[serde(default)]
    sink: RawSinks,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    /// debug | info | warn | error (default info).
    level: Option<String>,
}

/// `[source]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    /// Size of the kernel -> daemon ring buffer in bytes (power of two, >= 64 KiB).
    ring_buffer_bytes: Option<u64>,
    /// How often the daemon drains the ring without a wakeup, in milliseconds.
    drain_interval_ms: Option<u64>,
    /// Let the kernel drop events no rule can log (default true).
    kernel_prefilter: Option<bool>,
}

/// `[sink]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSinks {
    stream: Option<RawStream>,
    loki: Option<RawLoki>,
}

/// `[sink.stream]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    /// Write events as JSON lines.
    enable: Option<bool>,
    /// stdout | stderr | discard.
    writer: Option<String>,
    /// Events queued for this sink before new ones are dropped (and counted).
    queue_events: Option<usize>,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub rules: Rules,
    pub log: LogConfig,
    pub source: SourceConfig,
    pub stream: Option<StreamConfig>,
    pub loki: Option<LokiConfig>,
}

#[derive(Debug, Clone)]
pub(crate) struct LogConfig {
    pub level: LevelFilter,
}

#[derive(Debug, Clone)]
pub(crate) struct SourceConfig {
    pub ring_buffer_bytes: u32,
    pub drain_interval: std::time::Duration,
    /// false: the kernel passes every TCP/UDP event on and only the rules decide.
    pub kernel_prefilter: bool,
}

#[derive(Debug, Clone)]
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
    /// Reads `path` (or the default path if it exists, or the built-in
    /// default), applies the command-line overrides and validates.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let (raw, origin) = match path {
            Some(path) => (read(path)?, format!("config file {}: filter", path.display())),
            None if Path::new(DEFAULT_PATH).exists() => (read(Path::new(DEFAULT_PATH))?, format!("config file {DEFAULT_PATH}: filter")),
            None => (default_raw(), "built-in default filter".to_string()),
        };
        Self::validate(raw, overrides, origin)
    }

    /// Parses a config from a string (tests and `read`).
    #[cfg(test)]
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::validate(parse(Path::new("<test>"), text)?, &Overrides::default(), "<test>: filter".into())
    }

    fn validate(raw: RawConfig, overrides: &Overrides, origin: String) -> Result<Self, ConfigError> {
        let (texts, origin) = if overrides.filter.is_empty() {
            (raw.filter.unwrap_or_default(), origin)
        } else {
            (overrides.filter.clone(), "--filter".to_string())
        };
        let rules = Rules::compile(&texts).map_err(|errors| ConfigError::Rules { origin, errors })?;
        let level = overrides.log_level.as_deref().or(raw.log.level.as_deref()).unwrap_or("info");
        let level = match level.to_ascii_lowercase().as_str() {
            "debug" => LevelFilter::DEBUG,
            "info" => LevelFilter::INFO,
            "warn" => LevelFilter::WARN,
            "error" => LevelFilter::ERROR,
            other => return invalid("log.level", format!("expected debug, info, warn or error, found {other:?}")),
        };
        let ring = raw.source.ring_buffer_bytes.unwrap_or(u64::from(conntrackd_common::DEFAULT_RING_BYTES));
        if !ring.is_power_of_two() || !(64 << 10..=1 << 30).contains(&ring) {
            return invalid("source.ring_buffer_bytes", format!("expected a power of two between 65536 and 1073741824, found {ring}"));
        }
        let drain_ms = raw.source.drain_interval_ms.unwrap_or(50);
        if !(1..=10_000).contains(&drain_ms) {
            return invalid("source.drain_interval_ms", format!("expected 1..=10000, found {drain_ms}"));
        }
        let stream = validate_stream(raw.sink.stream)?;
        let loki = raw.sink.loki.map(RawLoki::validate).transpose()?.flatten();
        if stream.is_none() && loki.is_none() {
            return invalid("sink", "no sink is enabled; enable one, e.g. [sink.stream] enable = true".into());
        }
        Ok(Self {
            rules,
            log: LogConfig { level },
            source: SourceConfig {
                ring_buffer_bytes: ring as u32,
                drain_interval: std::time::Duration::from_millis(drain_ms),
                kernel_prefilter: raw.source.kernel_prefilter.unwrap_or(true),
            },
            stream,
            loki,
        })
    }
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
    let queue_events = raw.queue_events.unwrap_or(65_536);
    if queue_events == 0 {
        return invalid("sink.stream.queue_events", "expected at least 1".into());
    }
    Ok(Some(StreamConfig { writer, queue_events }))
}

fn invalid<T>(key: &'static str, message: String) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid { key, message })
}

/// The built-in default: the default rules and the stream sink on stdout.
fn default_raw() -> RawConfig {
    RawConfig {
        filter: Some(DEFAULT_RULES.iter().map(ToString::to_string).collect()),
        sink: RawSinks {
            stream: Some(RawStream { enable: Some(true), writer: Some("stdout".into()), queue_events: None }),
            loki: None,
        },
        ..RawConfig::default()
    }
}

fn read(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|err| ConfigError::Parse { path: path.into(), message: describe(text, &err) })
}

/// "line L, column C: message" from a toml error's span.
fn describe(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end().to_string();
    let Some(span) = err.span() else { return message };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    format!("line {line}, column {column}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_sink_settings() {
        let c = Config::from_toml("[sink.stream]\nenable = true\nwriter = \"discard\"\n").unwrap();
        assert_eq!(c.stream.unwrap().writer, Writer::Discard);
        assert_eq!(c.source.ring_buffer_bytes, 4 << 20);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = Config::from_toml("[sink.stream]\nenable = true\nwritter = \"stdout\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line 3, column 1"), "{text}");
        assert!(text.contains("writter"), "{text}");
    }

    #[test]
    fn filter_key_and_overrides() {
        let c = Config::from_toml("filter = [\"drop any\"]\n[sink.stream]\nenable = true\n").unwrap();
        assert_eq!(c.rules.rules.len(), 1);
        let c = Config::from_toml("[sink.stream]\nenable = true\n").unwrap();
        assert!(c.rules.rules.is_empty(), "no filter key logs everything");
        let raw = parse(Path::new("x"), "filter = [\"drop any\"]\n[sink.stream]\nenable = true\n").unwrap();
        let over = Overrides { filter: vec!["log type NEW".into(), "drop any".into()], ..Overrides::default() };
        assert_eq!(Config::validate(raw, &over, "x".into()).unwrap().rules.rules.len(), 2);
        assert_eq!(Config::validate(default_raw(), &Overrides::default(), "d".into()).unwrap().rules, Rules::defaults());
    }

    #[test]
    fn bad_rules_name_the_origin_and_rule() {
        let err = Config::from_toml("filter = [\"log any\", \"drop port 80\"]\n[sink.stream]\nenable = true\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("<test>: filter:\nrule 2 \"drop port 80\", column 6:"), "{text}");
    }

    #[test]
    fn no_sink_is_an_error() {
        let err = Config::from_toml("[sink.stream]\nenable = false\n").unwrap_err();
        assert!(err.to_string().contains("no sink is enabled"), "{err}");
    }

    #[test]
    fn bad_ring_size_is_rejected() {
        let err = Config::from_toml("[source]\nring_buffer_bytes = 1000\n[sink.stream]\nenable = true\n").unwrap_err();
        assert!(err.to_string().contains("source.ring_buffer_bytes"), "{err}");
    }
}
