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

use crate::{
    schema::{choice, section, Choice},
    sink::config::{queue_events, DEFAULT_QUEUE_EVENTS},
};

/// Problems with a `[sink.loki]` key; each names the key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LokiConfigError {
    #[error("sink.loki.{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

section! {
    /// `[sink.loki]`
    pub(crate) struct RawLoki at "sink.loki" {
        /// Push events to Grafana Loki
        enable: bool = false, Bool;
        /// Loki base URL, http:// or https://; a path prefix and user:password@ work
        address: String = "http://localhost:3100".into(), Url(&["http", "https"]);
        /// Extra stream labels key=value; repeat the flag or separate them with commas
        labels: Vec<String> = Vec::new(), List;
        /// Sent as X-Scope-OrgID
        tenant_id: Option<String> = None, Str;
        /// Sent as Authorization: Bearer
        bearer_token: Option<String> = None, Str;
        /// `[sink.loki.tls]`
        tls: RawTls = RawTls::default(), Table(RawTls::keys);
        /// Longest wait before a batch is sent
        batch_wait: String = "1s".into(), Str;
        /// Largest batch
        batch_bytes: usize = 1 << 20, Int;
        /// HTTP request timeout
        timeout: String = "10s".into(), Str;
        /// First retry delay
        min_backoff: String = "500ms".into(), Str;
        /// Longest retry delay
        max_backoff: String = "5m".into(), Str;
        /// Also label streams by addresses, ports and flow (many streams)
        per_flow_labels: bool = false, Bool;
        /// Log line: text (the message) or json (the whole event)
        line_format: LineFormat = LineFormat::Text, Enum(LineFormat::NAMES);
        /// Push encoding: protobuf (snappy) or json
        encoding: Encoding = Encoding::Protobuf, Enum(Encoding::NAMES);
        /// Directory for batches Loki has not accepted
        spool_dir: Option<PathBuf> = None, Str;
        /// Spool bound; the oldest data is dropped past it
        spool_max_bytes: u64 = 256 << 20, Int;
        /// How long SIGTERM keeps sending
        shutdown_timeout: String = "5s".into(), Str;
        /// Run without the loki sink (with a warning) if it cannot start
        optional: bool = false, Bool;
        /// Events queued for the Loki sink before drops
        queue_events: usize = DEFAULT_QUEUE_EVENTS, Int;
    }
}

section! {
    /// `[sink.loki.tls]`
    pub(crate) struct RawTls at "sink.loki.tls" {
        /// PEM CA bundle to trust
        ca_file: Option<PathBuf> = None, Str, shown "the system's";
        /// Accept any server certificate
        insecure_skip_verify: bool = false, Bool;
    }
}

choice! {
    /// What a log line holds.
    pub(crate) enum LineFormat { Text = "text", Json = "json" }
}

choice! {
    /// How a push request body is encoded.
    pub(crate) enum Encoding { Protobuf = "protobuf", Json = "json" }
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
        if !self.enable {
            return Ok(None);
        }
        let endpoint = parse_address(&self.address)?;
        let duration = |key, text: &str| match parse_duration(text) {
            Ok(d) if d <= MAX_DURATION => Ok(d),
            Ok(_) => invalid(key, format!("expected at most 24h, found {text:?}")),
            Err(message) => invalid(key, message),
        };
        let min_backoff = duration("min_backoff", &self.min_backoff)?;
        let max_backoff = duration("max_backoff", &self.max_backoff)?;
        if min_backoff.is_zero() || max_backoff < min_backoff {
            return invalid("max_backoff", "expected 0 < min_backoff <= max_backoff");
        }
        let batch_wait = duration("batch_wait", &self.batch_wait)?;
        let timeout = duration("timeout", &self.timeout)?;
        if timeout.is_zero() {
            return invalid("timeout", "expected more than 0s");
        }
        let batch_bytes = self.batch_bytes;
        if !(1..=MAX_BATCH_BYTES).contains(&batch_bytes) {
            return invalid("batch_bytes", format!("expected 1..={MAX_BATCH_BYTES}, found {batch_bytes}"));
        }
        let spool_max_bytes = self.spool_max_bytes;
        // Cannot truncate: usize is at most 64 bits wide.
        if spool_max_bytes < batch_bytes as u64 {
            return invalid(
                "spool_max_bytes",
                format!("expected at least batch_bytes ({batch_bytes}): a smaller spool drops every full batch, found {spool_max_bytes}"),
            );
        }
        let queue_events = queue_events(self.queue_events).or_else(|message| invalid("queue_events", message))?;
        // The CA file is read when the sink starts (and by `conntrackd check`).
        let tls = self.tls;
        Ok(Some(LokiConfig {
            endpoint,
            labels: parse_labels(&self.labels)?,
            tenant_id: self.tenant_id.filter(|t| !t.is_empty()),
            bearer_token: self.bearer_token.filter(|t| !t.is_empty()),
            ca_file: tls.ca_file,
            insecure_skip_verify: tls.insecure_skip_verify,
            batch_wait,
            batch_bytes,
            timeout,
            min_backoff,
            max_backoff,
            per_flow_labels: self.per_flow_labels,
            line_format: self.line_format,
            encoding: self.encoding,
            spool_dir: self.spool_dir,
            spool_max_bytes,
            shutdown_timeout: duration("shutdown_timeout", &self.shutdown_timeout)?,
            queue_events,
            optional: self.optional,
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
        ] {
            let err = raw(text).validate().unwrap_err().to_string();
            assert!(err.starts_with(key), "{text}: {err}");
        }
        // The enumerated keys are choices: the parser refuses other values, naming the key and the allowed ones.
        for (text, want) in
            [("line_format = \"xml\"", "expected text or json, found \"xml\""), ("encoding = \"avro\"", "expected protobuf or json, found \"avro\"")]
        {
            let err = toml::from_str::<RawLoki>(text).unwrap_err();
            assert_eq!(err.message(), want, "{text}");
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
