//! `[sink]`: the sections as written ([`RawSinks`]; `[sink.stream]` here, the
//! others beside their sinks) and their validation into a [`SinksConfig`],
//! with the limit every sink's queue shares. Nothing here touches the system:
//! sockets, files and spools are opened when a sink starts.
use serde::Deserialize;

use super::{
    journal::{self, JournalConfig, RawJournal},
    loki::config::{LokiConfig, LokiConfigError, RawLoki},
    syslog::{self, RawSyslog, SyslogConfig},
};

/// A `[sink.*]` key with a value outside its range, or no sink enabled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkConfigError {
    #[error("config {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(transparent)]
    Loki(#[from] LokiConfigError),
}

/// `[sink]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSinks {
    pub stream: Option<RawStream>,
    pub journal: Option<RawJournal>,
    pub syslog: Option<RawSyslog>,
    pub loki: Option<RawLoki>,
}

/// `[sink.stream]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStream {
    /// Write events as JSON lines.
    pub enable: Option<bool>,
    /// stdout | stderr | discard.
    pub writer: Option<String>,
    /// Events queued for this sink before new ones are dropped (and counted).
    pub queue_events: Option<usize>,
    /// Accepted for symmetry with the other sinks; the stream sink always starts.
    #[allow(dead_code)]
    pub optional: Option<bool>,
}

/// The enabled sinks, validated; at least one is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SinksConfig {
    pub stream: Option<StreamConfig>,
    pub journal: Option<JournalConfig>,
    pub syslog: Option<SyslogConfig>,
    pub loki: Option<LokiConfig>,
}

/// Validated `[sink.stream]`.
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

pub(crate) fn invalid<T>(key: &'static str, message: String) -> Result<T, SinkConfigError> {
    Err(SinkConfigError::Invalid { key, message })
}

impl RawSinks {
    /// Checks every enabled section; an error when none is enabled.
    pub fn validate(self) -> Result<SinksConfig, SinkConfigError> {
        let stream = validate_stream(self.stream)?;
        let journal = journal::validate(self.journal)?;
        let syslog = syslog::validate(self.syslog)?;
        let loki = self.loki.map(RawLoki::validate).transpose()?.flatten();
        if stream.is_none() && journal.is_none() && syslog.is_none() && loki.is_none() {
            return invalid("sink", "no sink is enabled; enable one, e.g. [sink.stream] enable = true".into());
        }
        Ok(SinksConfig { stream, journal, syslog, loki })
    }
}

fn validate_stream(raw: Option<RawStream>) -> Result<Option<StreamConfig>, SinkConfigError> {
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
