//! `[sink.loki]`: the raw keys as written and their validation into a
//! [`LokiConfig`]. Credentials in the address are split off here, so the
//! address that is ever shown (logs, errors, `check`) has none.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

/// Problems with a `[sink.loki]` key; each names the key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LokiConfigError {
    #[error("sink.loki.{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// `[sink.loki]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLoki {
    /// Push events to Loki.
    pub enable: Option<bool>,
    /// Base URL; a path prefix and `user:password@` credentials work (default http://localhost:3100).
    pub address: Option<String>,
    /// Extra stream labels as `key=value`; they may override the defaults.
    pub labels: Option<Vec<String>>,
    /// Sent as `X-Scope-OrgID`.
    pub tenant_id: Option<String>,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// `[sink.loki.tls]`
    pub tls: Option<RawTls>,
    /// Longest time an event waits for its batch to fill (default "1s").
    pub batch_wait: Option<String>,
    /// A batch is sent once its entries hold this many bytes (default 1048576).
    pub batch_bytes: Option<usize>,
    /// Timeout of one HTTP request (default "10s").
    pub timeout: Option<String>,
    /// First retry delay (default "500ms").
    pub min_backoff: Option<String>,
    /// Longest retry delay (default "5m").
    pub max_backoff: Option<String>,
    /// Also make flow, prot, addresses and ports stream labels (default false).
    pub per_flow_labels: Option<bool>,
    /// "text" (the message) or "json" (the whole event line) (default "text").
    pub line_format: Option<String>,
    /// "protobuf" (snappy-compressed) or "json" (default "protobuf").
    pub encoding: Option<String>,
    /// Directory for batches the server has not accepted yet; unset = memory only.
    pub spool_dir: Option<PathBuf>,
    /// Bound on spooled batches in bytes; past it the oldest are dropped (default 268435456).
    pub spool_max_bytes: Option<u64>,
    /// How long SIGTERM waits for pending batches before spooling them (default "5s").
    pub shutdown_timeout: Option<String>,
    /// Events queued for this sink before new ones are dropped (default 65536).
    pub queue_events: Option<usize>,
    /// Run without this sink (with a warning) when it cannot start.
    pub optional: Option<bool>,
}

/// `[sink.loki.tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    /// PEM file with the CA certificates that sign the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    pub insecure_skip_verify: Option<bool>,
}

/// What a log line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineFormat {
    Text,
    Json,
}

/// How a push request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Protobuf,
    Json,
}

/// The push endpoint, without credentials, and the headers that carry them.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Base URL without user info and without a trailing slash.
    pub base: String,
    /// `Basic ...` from the URL's user info.
    pub basic_auth: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = if self.basic_auth.is_some() { " (basic auth)" } else { "" };
        write!(f, "{}{auth}", self.base)
    }
}

/// Validated `[sink.loki]`.
#[derive(Clone, PartialEq)]
pub(crate) struct LokiConfig {
    pub endpoint: Endpoint,
    /// Sorted, deduplicated stream labels besides `type` (and the per-flow ones).
    pub labels: Vec<(String, String)>,
    pub tenant_id: Option<String>,
    pub bearer_token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub batch_wait: Duration,
    pub batch_bytes: usize,
    pub timeout: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub per_flow_labels: bool,
    pub line_format: LineFormat,
    pub encoding: Encoding,
    pub spool_dir: Option<PathBuf>,
    pub spool_max_bytes: u64,
    pub shutdown_timeout: Duration,
    pub queue_events: usize,
    /// Run without this sink (with a warning) when it cannot start.
    pub optional: bool,
}

impl std::fmt::Debug for LokiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LokiConfig")
            .field("endpoint", &self.endpoint)
            .field("labels", &self.labels)
            .field("tenant_id", &self.tenant_id)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<redacted>"))
            .field("encoding", &self.encoding)
            .field("spool_dir", &self.spool_dir)
            .finish_non_exhaustive()
    }
}

/// Longest accepted duration (batch_wait, timeout, backoffs, shutdown_timeout).
const MAX_DURATION: Duration = Duration::from_secs(86_400);
/// Largest `batch_bytes`: Loki servers refuse far smaller pushes already.
const MAX_BATCH_BYTES: usize = 256 << 20;

fn invalid<T>(key: &'static str, message: impl Into<String>) -> Result<T, LokiConfigError> {
    Err(LokiConfigError::Invalid { key, message: message.into() })
}

impl RawLoki {
    /// Checks every key; `None` when the sink is not enabled.
    pub fn validate(self) -> Result<Option<LokiConfig>, LokiConfigError> {
        if self.enable != Some(true) {
            return Ok(None);
        }
        let endpoint = parse_address(self.address.as_deref().unwrap_or("http://localhost:3100"))?;
        let duration = |key, value: &Option<String>, default| match value {
            None => Ok(default),
            Some(text) => match parse_duration(text) {
                Ok(d) if d <= MAX_DURATION => Ok(d),
                Ok(_) => invalid(key, format!("expected at most 24h, found {text:?}")),
                Err(message) => invalid(key, message),
            },
        };
        let min_backoff = duration("min_backoff", &self.min_backoff, Duration::from_millis(500))?;
        let max_backoff = duration("max_backoff", &self.max_backoff, Duration::from_secs(300))?;
        if min_backoff.is_zero() || max_backoff < min_backoff {
            return invalid("max_backoff", "expected 0 < min_backoff <= max_backoff");
        }
        let batch_wait = duration("batch_wait", &self.batch_wait, Duration::from_secs(1))?;
        let timeout = duration("timeout", &self.timeout, Duration::from_secs(10))?;
        if timeout.is_zero() {
            return invalid("timeout", "expected more than 0s");
        }
        let batch_bytes = self.batch_bytes.unwrap_or(1 << 20);
        if !(1..=MAX_BATCH_BYTES).contains(&batch_bytes) {
            return invalid("batch_bytes", format!("expected 1..={MAX_BATCH_BYTES}, found {batch_bytes}"));
        }
        let spool_max_bytes = self.spool_max_bytes.unwrap_or(256 << 20);
        // Cannot truncate: usize is at most 64 bits wide.
        if spool_max_bytes < batch_bytes as u64 {
            return invalid(
                "spool_max_bytes",
                format!("expected at least batch_bytes ({batch_bytes}): a smaller spool drops every full batch, found {spool_max_bytes}"),
            );
        }
        let queue_events = crate::sink::config::queue_events(self.queue_events).or_else(|message| invalid("queue_events", message))?;
        // The CA file is read when the sink starts (and by `conntrackd check`).
        let tls = self.tls.unwrap_or_default();
        Ok(Some(LokiConfig {
            endpoint,
            labels: parse_labels(self.labels.as_deref().unwrap_or_default())?,
            tenant_id: self.tenant_id.filter(|t| !t.is_empty()),
            bearer_token: self.bearer_token.filter(|t| !t.is_empty()),
            ca_file: tls.ca_file,
            insecure_skip_verify: tls.insecure_skip_verify.unwrap_or(false),
            batch_wait,
            batch_bytes,
            timeout,
            min_backoff,
            max_backoff,
            per_flow_labels: self.per_flow_labels.unwrap_or(false),
            // Case-insensitive, like every other enumerated key.
            line_format: match self.line_format.as_deref().unwrap_or("text").to_ascii_lowercase().as_str() {
                "text" => LineFormat::Text,
                "json" => LineFormat::Json,
                other => return invalid("line_format", format!("expected \"text\" or \"json\", found {other:?}")),
            },
            encoding: match self.encoding.as_deref().unwrap_or("protobuf").to_ascii_lowercase().as_str() {
                "protobuf" => Encoding::Protobuf,
                "json" => Encoding::Json,
                other => return invalid("encoding", format!("expected \"protobuf\" or \"json\", found {other:?}")),
            },
            spool_dir: self.spool_dir,
            spool_max_bytes,
            shutdown_timeout: duration("shutdown_timeout", &self.shutdown_timeout, Duration::from_secs(5))?,
            queue_events,
            optional: self.optional.unwrap_or(false),
        }))
    }
}

impl LokiConfig {
    /// Warns when `file` holds credentials and other users may read it.
    pub fn warn_if_secrets_readable(&self, file: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        if self.endpoint.basic_auth.is_none() && self.bearer_token.is_none() {
            return;
        }
        if std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o004 != 0) {
            tracing::warn!(
                file = %file.display(),
                "the config file holds Loki credentials and is readable by every user; chmod 600 it"
            );
        }
    }
}

/// Parses a duration: a number and a unit, repeated, such as "500ms", "1s",
/// "5m", "1h", "250us", "1m30s" or "1.5s" (humantime's syntax: ns, us, ms, s,
/// m, h, d and their long forms).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|err| format!("expected a duration such as \"500ms\", \"1s\" or \"5m\", found {text:?} ({err})"))
}

/// Splits user info off the address; only http and https are accepted.
fn parse_address(text: &str) -> Result<Endpoint, LokiConfigError> {
    // Never echo the text: it may hold a password.
    let mut url = url::Url::parse(text)
        .map_err(|err| LokiConfigError::Invalid { key: "address", message: format!("expected a URL such as http://localhost:3100 ({err})") })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return invalid("address", "expected an http:// or https:// URL with a host");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return invalid("address", "expected no query or fragment");
    }
    let basic_auth = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        Some(basic_auth(&decode(url.username()), &decode(url.password().unwrap_or(""))))
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let base = url.as_str().trim_end_matches('/').to_string();
    Ok(Endpoint { base, basic_auth })
}

/// The `Authorization` value of HTTP Basic authentication (RFC 7617).
pub(crate) fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// `key=value` strings; names must be valid Prometheus label names.
fn parse_labels(items: &[String]) -> Result<Vec<(String, String)>, LokiConfigError> {
    let mut labels: Vec<(String, String)> = Vec::new();
    for item in items {
        let Some((key, value)) = item.split_once('=') else {
            return invalid("labels", format!("expected \"key=value\", found {item:?}"));
        };
        let key = key.trim();
        let valid_start = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        if !valid_start || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return invalid("labels", format!("label name {key:?} must match [a-zA-Z_][a-zA-Z0-9_]*"));
        }
        labels.retain(|(k, _)| k != key);
        labels.push((key.to_string(), value.trim().to_string()));
    }
    labels.sort();
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(extra: &str) -> RawLoki {
        toml::from_str(&format!("enable = true\n{extra}")).unwrap()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration(" 2h "), Ok(Duration::from_secs(7200)));
        for bad in ["", "5", "s", "-1s", "10x", "1s!", "99999999999999999999h"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("expected a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults() {
        let c = raw("").validate().unwrap().unwrap();
        assert_eq!(c.endpoint.base, "http://localhost:3100");
        assert_eq!(c.batch_wait, Duration::from_secs(1));
        assert_eq!(c.batch_bytes, 1 << 20);
        assert_eq!((c.min_backoff, c.max_backoff), (Duration::from_millis(500), Duration::from_secs(300)));
        assert_eq!(c.spool_max_bytes, 256 << 20);
        assert!(!c.per_flow_labels);
        assert_eq!((c.line_format, c.encoding), (LineFormat::Text, Encoding::Protobuf));
        let off: RawLoki = toml::from_str("enable = false").unwrap();
        assert!(off.validate().unwrap().is_none());
    }

    #[test]
    fn credentials_are_split_off_and_never_shown() {
        let c = raw("address = \"https://us%40r:s3cr%3At@loki.example:8443/prefix/\"").validate().unwrap().unwrap();
        assert_eq!(c.endpoint.base, "https://loki.example:8443/prefix");
        // base64("us@r:s3cr:t"), as `printf %s 'us@r:s3cr:t' | base64` prints it.
        assert_eq!(c.endpoint.basic_auth.as_deref(), Some("Basic dXNAcjpzM2NyOnQ="));
        assert!(!format!("{c:?}").contains("s3cr"));
        let err = raw("address = \"ftp://u:s3cret@host\"").validate().unwrap_err().to_string();
        assert!(err.contains("sink.loki.address") && !err.contains("s3cret"), "{err}");
        let err = raw("address = \"http://u:s3cret@[::1\"").validate().unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn basic_auth_header() {
        assert_eq!(basic_auth("Aladdin", "open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "RFC 7617's example");
        assert_eq!(basic_auth("", ""), "Basic Og==");
    }

    #[test]
    fn labels_and_bad_values_name_the_key() {
        let c = raw("labels = [\"env=prod\", \"host=override\", \"env=staging\"]").validate().unwrap().unwrap();
        assert_eq!(c.labels, vec![("env".into(), "staging".into()), ("host".into(), "override".into())]);
        let c = raw("encoding = \"JSON\"\nline_format = \"Json\"").validate().unwrap().unwrap();
        assert_eq!((c.encoding, c.line_format), (Encoding::Json, LineFormat::Json), "case-insensitive like every enumerated key");
        for (text, key) in [
            ("labels = [\"nokey\"]", "sink.loki.labels"),
            ("labels = [\"1x=y\"]", "sink.loki.labels"),
            ("batch_wait = \"soon\"", "sink.loki.batch_wait"),
            ("min_backoff = \"10s\"\nmax_backoff = \"1s\"", "sink.loki.max_backoff"),
            ("line_format = \"xml\"", "sink.loki.line_format"),
            ("encoding = \"avro\"", "sink.loki.encoding"),
        ] {
            let err = raw(text).validate().unwrap_err().to_string();
            assert!(err.starts_with(key), "{text}: {err}");
        }
    }

    #[test]
    fn out_of_range_numbers_and_durations_name_the_key() {
        let c = raw("batch_wait = \"0s\"\nshutdown_timeout = \"24h\"\nbatch_bytes = 268435456\nspool_max_bytes = 268435456").validate().unwrap().unwrap();
        assert_eq!((c.batch_wait, c.shutdown_timeout, c.batch_bytes), (Duration::ZERO, Duration::from_secs(86_400), 256 << 20));
        for (text, want) in [
            ("batch_wait = \"25h\"", "sink.loki.batch_wait: expected at most 24h, found \"25h\""),
            ("shutdown_timeout = \"2d\"", "sink.loki.shutdown_timeout: expected at most 24h, found \"2d\""),
            ("max_backoff = \"9999999999999h\"", "sink.loki.max_backoff: expected at most 24h, found \"9999999999999h\""),
            ("min_backoff = \"0s\"", "sink.loki.max_backoff: expected 0 < min_backoff <= max_backoff"),
            ("timeout = \"0ms\"", "sink.loki.timeout: expected more than 0s"),
            (
                "timeout = \"99999999999999999999s\"",
                "sink.loki.timeout: expected a duration such as \"500ms\", \"1s\" or \"5m\", found \"99999999999999999999s\" (number is too large",
            ),
            ("batch_bytes = 0", "sink.loki.batch_bytes: expected 1..=268435456, found 0"),
            ("batch_bytes = 268435457", "sink.loki.batch_bytes: expected 1..=268435456, found 268435457"),
            ("spool_max_bytes = 0", "sink.loki.spool_max_bytes: expected at least batch_bytes (1048576): a smaller spool drops every full batch, found 0"),
            ("queue_events = 0", "sink.loki.queue_events: expected 1..=10000000, found 0"),
        ] {
            let err = raw(text).validate().unwrap_err().to_string();
            assert!(err.starts_with(want), "got:  {err}\nwant: {want}");
        }
    }
}
