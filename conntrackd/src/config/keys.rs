//! Every configuration key in one table, which drives the environment
//! variables (`CONNTRACKD_` + path with `_`), the command-line flags (the
//! original's dotted names) and their help texts. Overrides are applied to
//! the parsed TOML document before it is deserialized, so precedence is
//! defaults < file < environment < flags for every key alike.
//!
//! Enumerations list their values here (`Kind::Enum`, and the schemes of a
//! `Kind::Url`): clap offers and checks them, and tests derive their cases
//! from them (a unit test proves validation accepts exactly these). The file
//! is self-contained (toml and thiserror only) so that integration tests can
//! compile it with `#[path]` and iterate the same table.
use toml::{Table, Value};

/// How a key's value is written on the command line or in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int,
    Str,
    /// One of these values (lower case, as documented).
    Enum(&'static [&'static str]),
    /// A URL whose scheme, the transport, is one of these.
    Url(&'static [&'static str]),
    /// A list of strings: repeat the flag; the environment takes a TOML array.
    List,
}

/// The syslog facilities by name (RFC 5424 codes 0-11 and 16-23).
pub(crate) const FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// One key: its dotted path, kind and help text (with the default).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    pub path: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn key(path: &'static str, kind: Kind, help: &'static str) -> Key {
    Key { path, kind, help }
}

/// Every key of the file (tests check this table against `raw.rs` and the example config).
pub(crate) const KEYS: &[Key] = &[
    key(
        "filter",
        Kind::List,
        "A rule (`log|drop <expression>`); repeat for a list. Replaces the file's rules [default: log protocol tcp and destination network public; drop any]",
    ),
    key("log.level", Kind::Enum(&["debug", "info", "warn", "error"]), "Log level [default: info]"),
    key("log.format", Kind::Enum(&["text", "json"]), "Log format [default: text on a terminal, json otherwise]"),
    key("source.kind", Kind::Enum(&["auto", "ebpf", "netlink"]), "Source: eBPF, netlink, or eBPF with a netlink fallback [default: auto]"),
    key("source.netns", Kind::List, "Network namespaces: self, all, or paths such as /run/netns/NAME [default: self]"),
    key("source.set_sysctls", Kind::Bool, "Set nf_conntrack_events/_acct/_timestamp to 1 in watched namespaces [default: false]"),
    key("source.ring_buffer_bytes", Kind::Int, "eBPF ring buffer size, a power of two [default: 4194304]"),
    key("source.drain_interval_ms", Kind::Int, "How often the ring is drained without a wakeup [default: 50]"),
    key("source.kernel_prefilter", Kind::Bool, "Let the kernel drop events no rule can log [default: true]"),
    key("source.receive_buffer_bytes", Kind::Int, "netlink source receive buffer [default: 8388608]"),
    key("source.reliable", Kind::Bool, "netlink source reliable mode (kernel re-sends DESTROY) [default: false]"),
    key("sink.stream.enable", Kind::Bool, "Write events as JSON lines [default: true without a config file]"),
    key("sink.stream.writer", Kind::Enum(&["stdout", "stderr", "discard"]), "Where the stream sink writes [default: stdout]"),
    key("sink.stream.optional", Kind::Bool, "Run without the stream sink (with a warning) if it cannot start [default: false]"),
    key("sink.stream.queue_events", Kind::Int, "Events queued for the stream sink before drops [default: 65536]"),
    key("sink.journal.enable", Kind::Bool, "Write events to the systemd journal (native protocol) [default: false]"),
    key("sink.journal.socket", Kind::Str, "journald's native socket [default: /run/systemd/journal/socket]"),
    key("sink.journal.optional", Kind::Bool, "Run without the journal sink (with a warning) if it cannot start [default: false]"),
    key("sink.journal.queue_events", Kind::Int, "Events queued for the journal sink before drops [default: 65536]"),
    key("sink.syslog.enable", Kind::Bool, "Write events to syslog [default: false]"),
    key(
        "sink.syslog.address",
        Kind::Url(&["udp", "tcp", "unix", "unixgram"]),
        "udp://host[:port], tcp://host[:port], unix:///path or unixgram:///path [default: udp://localhost:514]",
    ),
    key("sink.syslog.format", Kind::Enum(&["rfc5424", "rfc3164"]), "Syslog message format [default: rfc5424]"),
    key("sink.syslog.facility", Kind::Enum(FACILITIES), "Syslog facility [default: daemon]"),
    key("sink.syslog.optional", Kind::Bool, "Run without the syslog sink (with a warning) if it cannot start [default: false]"),
    key("sink.syslog.queue_events", Kind::Int, "Events queued for the syslog sink before drops [default: 65536]"),
    key("sink.loki.enable", Kind::Bool, "Push events to Grafana Loki [default: false]"),
    key(
        "sink.loki.address",
        Kind::Url(&["http", "https"]),
        "Loki base URL, http:// or https://; a path prefix and user:password@ work [default: http://localhost:3100]",
    ),
    key("sink.loki.labels", Kind::List, "Extra stream labels key=value; repeat the flag [default: none]"),
    key("sink.loki.tenant_id", Kind::Str, "Sent as X-Scope-OrgID [default: none]"),
    key("sink.loki.bearer_token", Kind::Str, "Sent as Authorization: Bearer [default: none]"),
    key("sink.loki.tls.ca_file", Kind::Str, "PEM CA bundle to trust [default: the system's]"),
    key("sink.loki.tls.insecure_skip_verify", Kind::Bool, "Accept any server certificate [default: false]"),
    key("sink.loki.batch_wait", Kind::Str, "Longest wait before a batch is sent [default: 1s]"),
    key("sink.loki.batch_bytes", Kind::Int, "Largest batch [default: 1048576]"),
    key("sink.loki.timeout", Kind::Str, "HTTP request timeout [default: 10s]"),
    key("sink.loki.min_backoff", Kind::Str, "First retry delay [default: 500ms]"),
    key("sink.loki.max_backoff", Kind::Str, "Longest retry delay [default: 5m]"),
    key("sink.loki.per_flow_labels", Kind::Bool, "Also label streams by addresses, ports and flow (many streams) [default: false]"),
    key("sink.loki.line_format", Kind::Enum(&["text", "json"]), "Log line: text (the message) or json (the whole event) [default: text]"),
    key("sink.loki.encoding", Kind::Enum(&["protobuf", "json"]), "Push encoding: protobuf (snappy) or json [default: protobuf]"),
    key("sink.loki.spool_dir", Kind::Str, "Directory for batches Loki has not accepted [default: none]"),
    key("sink.loki.spool_max_bytes", Kind::Int, "Spool bound; the oldest data is dropped past it [default: 268435456]"),
    key("sink.loki.shutdown_timeout", Kind::Str, "How long SIGTERM keeps sending [default: 5s]"),
    key("sink.loki.optional", Kind::Bool, "Run without the loki sink (with a warning) if it cannot start [default: false]"),
    key("sink.loki.queue_events", Kind::Int, "Events queued for the Loki sink before drops [default: 65536]"),
    key("geoip.database", Kind::Str, "GeoIP City database (GeoLite2-City, GeoIP2-City, DB-IP City Lite) [default: none]"),
    key("geoip.asn_database", Kind::Str, "GeoIP ASN database (GeoLite2-ASN) [default: none]"),
    key("geoip.cache_entries", Kind::Int, "GeoIP lookup cache size; 0 disables it [default: 4096]"),
    key("geoip.watch_interval_ms", Kind::Int, "How often the GeoIP files are checked for a replacement; 0 = only SIGHUP [default: 10000]"),
    key("metrics.listen", Kind::Str, "Serve /metrics and /healthz on this address, e.g. 127.0.0.1:9469 [default: off]"),
    key("metrics.unhealthy_after_s", Kind::Int, "/healthz fails once a sink has failed this long [default: 60]"),
];

/// The environment variable of a key: `sink.loki.enable` -> `CONNTRACKD_SINK_LOKI_ENABLE`.
pub(crate) fn env_name(path: &str) -> String {
    format!("CONNTRACKD_{}", path.replace('.', "_").to_ascii_uppercase())
}

/// Where an override came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    Env(String),
    Flag(&'static str),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(path) => write!(f, "--{path}"),
        }
    }
}

/// A value that can not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub(crate) struct OverrideError {
    pub origin: Origin,
    pub message: String,
}

/// Variables that start like ours but are not configuration keys.
const NOT_KEYS: [&str; 1] = ["CONNTRACKD_EBPF_OBJ"];

/// Applies every `CONNTRACKD_*` variable that names a key; returns the names
/// of those that do not (to be warned about: a typo is not silently ignored).
pub(crate) fn apply_env(doc: &mut Table, vars: &[(String, String)]) -> Result<Vec<String>, OverrideError> {
    let mut unknown = Vec::new();
    for (name, text) in vars.iter().filter(|(n, _)| n.starts_with("CONNTRACKD_") && !NOT_KEYS.contains(&n.as_str())) {
        let origin = Origin::Env(name.clone());
        let Some(key) = KEYS.iter().find(|k| env_name(k.path) == *name) else {
            unknown.push(name.clone());
            continue;
        };
        let value = match key.kind {
            Kind::List => parse_array(text),
            kind => parse_scalar(kind, text),
        }
        .map_err(|message| OverrideError { origin, message })?;
        set(doc, key.path, value);
    }
    Ok(unknown)
}

/// Applies flags given as (key path, values); a list flag's values form the list.
pub(crate) fn apply_flags(doc: &mut Table, flags: &[(&'static str, Vec<String>)]) -> Result<(), OverrideError> {
    for (path, values) in flags {
        let Some(key) = KEYS.iter().find(|k| k.path == *path) else { continue };
        let origin = Origin::Flag(key.path);
        let value = match (key.kind, values.last()) {
            (Kind::List, _) => Ok(Value::Array(values.iter().cloned().map(Value::String).collect())),
            (kind, Some(text)) => parse_scalar(kind, text),
            (_, None) => continue,
        }
        .map_err(|message| OverrideError { origin, message })?;
        set(doc, key.path, value);
    }
    Ok(())
}

fn parse_scalar(kind: Kind, text: &str) -> Result<Value, String> {
    match kind {
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" => Ok(Value::Boolean(false)),
            _ => Err(format!("expected true or false, found {text:?}")),
        },
        // Every integer key is a count, size or interval: none is negative.
        Kind::Int => match text.trim().parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Value::Integer(n)),
            Ok(_) => Err(format!("expected a whole number of at least 0, found {text:?}")),
            Err(_) => Err(format!("expected a whole number, found {text:?}")),
        },
        Kind::Str | Kind::Enum(_) | Kind::Url(_) | Kind::List => Ok(Value::String(text.to_string())),
    }
}

/// A TOML array such as `["log any", "drop any"]`.
fn parse_array(text: &str) -> Result<Value, String> {
    let doc: Table = toml::from_str(&format!("v = {text}")).map_err(|e| format!("expected a TOML array of strings such as [\"a\", \"b\"]: {}", e.message()))?;
    match doc.get("v") {
        Some(Value::Array(items)) if items.iter().all(Value::is_str) => Ok(Value::Array(items.clone())),
        _ => Err(format!("expected a TOML array of strings such as [\"a\", \"b\"], found {text:?}")),
    }
}

/// Sets `a.b.c` in the document, creating tables on the way.
fn set(doc: &mut Table, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or(path);
    let mut table = doc;
    for part in parts {
        let entry = table.entry(part.to_string()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(inner) = entry else { return };
        table = inner;
    }
    table.insert(last.to_string(), value);
}
