//! `[sink]`: the sections, declared once ([`RawSinks`]; `[sink.stream]` here,
//! the others beside their sinks) and their validation into a [`SinksConfig`],
//! with the limit every sink's queue shares. Nothing here touches the system:
//! sockets, files and spools are opened when a sink starts.
use crate::schema::{choice, section, Choice};

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

section! {
    /// `[sink]`: each sink's table; an absent one is off.
    pub(crate) struct RawSinks at "sink" {
        /// `[sink.stream]`
        stream: Option<RawStream> = None, Table(RawStream::keys);
        /// `[sink.journal]`
        journal: Option<RawJournal> = None, Table(RawJournal::keys);
        /// `[sink.syslog]`
        syslog: Option<RawSyslog> = None, Table(RawSyslog::keys);
        /// `[sink.loki]`
        loki: Option<RawLoki> = None, Table(RawLoki::keys);
    }
}

section! {
    /// `[sink.stream]` (`optional` is accepted for symmetry and never read:
    /// the stream sink always starts).
    #[allow(dead_code)]
    pub(crate) struct RawStream at "sink.stream" {
        /// Write events as JSON lines
        enable: bool = false, Bool, shown "true without a config file";
        /// Where the stream sink writes
        writer: Writer = Writer::Stdout, Enum(Writer::NAMES);
        /// Run without the stream sink (with a warning) if it cannot start
        optional: bool = false, Bool;
        /// Events queued for the stream sink before drops
        queue_events: usize = DEFAULT_QUEUE_EVENTS, Int;
    }
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

choice! {
    /// Destination of the stream sink.
    pub(crate) enum Writer { Stdout = "stdout", Stderr = "stderr", Discard = "discard" }
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
    let Some(raw) = raw.filter(|r| r.enable) else { return Ok(None) };
    let queue_events = queue_events(raw.queue_events).or_else(|message| invalid("sink.stream.queue_events", message))?;
    Ok(Some(StreamConfig { writer: raw.writer, queue_events }))
}

/// Largest `queue_events` of a sink: ten million queued events are gigabytes of memory.
pub(crate) const MAX_QUEUE_EVENTS: usize = 10_000_000;

/// Every sink's `queue_events` default.
pub(crate) const DEFAULT_QUEUE_EVENTS: usize = 65_536;

/// A sink's `queue_events`, checked to be 1..=[`MAX_QUEUE_EVENTS`];
/// the error is the message for the sink's key.
pub(crate) fn queue_events(n: usize) -> Result<usize, String> {
    if (1..=MAX_QUEUE_EVENTS).contains(&n) {
        Ok(n)
    } else {
        Err(format!("expected 1..={MAX_QUEUE_EVENTS}, found {n}"))
    }
}
