//! Configuration: the raw file as parsed (`raw.rs`; TOML, YAML or JSON, see
//! `format.rs`), overridden by the environment and flags (`keys.rs`), and
//! validated into [`Config`].
//!
//! Parsing (serde, `deny_unknown_fields`) only checks shape; validation turns
//! raw values into checked settings and names the key that is wrong. The
//! components own their sections (`source::config`, `enrich::config`,
//! `sink::config`: raw keys, validated settings, error); this module composes
//! them and never opens anything but the config file itself.
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

use self::raw::RawConfig;
use crate::schema::Choice;

use crate::{
    enrich::{GeoipConfig, GeoipConfigError},
    filter::{Rules, RulesError},
    sink::{SinkConfigError, SinksConfig},
    source::{SourceConfig, SourceConfigError},
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
    Source(#[from] SourceConfigError),
    #[error(transparent)]
    Geoip(#[from] GeoipConfigError),
    #[error(transparent)]
    Sink(#[from] SinkConfigError),
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
    pub sinks: SinksConfig,
    pub geoip: GeoipConfig,
    /// `community_id_seed`.
    pub community_id_seed: u16,
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
        let profiler = raw.profiler.enable;
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
        let level = level::parse(&raw.log.level).map_err(|message| ConfigError::Invalid { key: "log.level", message })?;
        let format = raw.log.format.map(|f| f.name().to_string());
        let source = raw.source.validate()?;
        let sinks = raw.sink.validate()?;
        let metrics = validate_metrics(&raw.metrics)?;
        let community_id_seed = u16::try_from(raw.community_id_seed)
            .map_err(|_| ConfigError::Invalid { key: "community_id_seed", message: format!("expected 0 to 65535, found {}", raw.community_id_seed) })?;
        Ok(Self {
            file: None,
            warnings: Vec::new(),
            rules,
            metrics,
            log: LogConfig { level, format },
            source,
            sinks,
            geoip: raw.geoip.validate()?,
            community_id_seed,
        })
    }
}

fn validate_metrics(raw: &raw::RawMetrics) -> Result<MetricsConfig, ConfigError> {
    let listen = match raw.listen.as_deref() {
        None => None,
        Some(text) => match text.parse::<std::net::SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => return invalid("metrics.listen", format!("expected IP:PORT such as 127.0.0.1:9469, found {text:?}")),
        },
    };
    let secs = raw.unhealthy_after_s;
    if !(1..=MAX_UNHEALTHY_AFTER_S).contains(&secs) {
        return invalid("metrics.unhealthy_after_s", format!("expected 1..={MAX_UNHEALTHY_AFTER_S} (a week), found {secs}"));
    }
    Ok(MetricsConfig { listen, unhealthy_after: std::time::Duration::from_secs(secs) })
}

/// Largest `metrics.unhealthy_after_s`: a week.
const MAX_UNHEALTHY_AFTER_S: u64 = 7 * 86_400;

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
#[cfg(test)]
mod tests_contrib;
