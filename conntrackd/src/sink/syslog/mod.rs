//! The syslog sink: RFC 5424 (or 3164) messages with an `@cee:` JSON body
//! over UDP, TCP (octet counting) or a unix socket.
//!
//! When the TCP or unix peer goes away the sink keeps the batch it holds and
//! reconnects with exponential backoff (0.1 s doubling to 5 s); meanwhile new
//! events wait in the sink's bounded queue, and what does not fit is dropped
//! and counted (`syslog.dropped_queue_full`). A message is counted as written
//! once the kernel accepted it; after a broken stream the messages not fully
//! written are sent again on the new connection. Events still undeliverable
//! at shutdown are counted as `syslog.dropped_write_error`.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
pub(crate) mod format;
pub(crate) mod transport;

use std::{
    io,
    sync::Arc,
    thread::{self, JoinHandle},
    time::Duration,
};

use self::{
    format::{Facility, Format, Header, Severity},
    transport::{Address, Conn},
};
use super::{
    config::{queue_events, SinkConfigError, DEFAULT_QUEUE_EVENTS},
    queue::BoundedQueue,
};
use crate::{
    event::Event,
    schema::{section, Choice},
};

const DEFAULT_ADDRESS: &str = "udp://localhost:514";
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

section! {
    /// `[sink.syslog]`
    pub(crate) struct RawSyslog at "sink.syslog" {
        /// Write events to syslog
        enable: bool = false, Bool;
        /// udp://host[:port], tcp://host[:port], unix:///path, unixgram:///path or unixpacket:///path
        address: String = DEFAULT_ADDRESS.into(), Url(Address::SCHEMES);
        /// Syslog message format
        format: Format = Format::Rfc5424, Enum(Format::NAMES);
        /// Syslog facility
        facility: String = Facility::DAEMON.name().into(), Enum(&Facility::NAMES);
        /// Severity of every message
        severity: String = Severity::INFO.name().into(), Enum(&Severity::NAMES);
        /// Run without the syslog sink (with a warning) if it cannot start
        optional: bool = false, Bool;
        /// Events queued for the syslog sink before drops
        queue_events: usize = DEFAULT_QUEUE_EVENTS, Int;
    }
}

/// Validated `[sink.syslog]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyslogConfig {
    pub address: Address,
    pub format: Format,
    pub facility: Facility,
    pub severity: Severity,
    pub queue_events: usize,
    pub optional: bool,
}

/// Checks `[sink.syslog]`; `None` when the sink is absent or disabled.
pub(crate) fn validate(raw: Option<RawSyslog>) -> Result<Option<SyslogConfig>, SinkConfigError> {
    let Some(raw) = raw.filter(|r| r.enable) else { return Ok(None) };
    let invalid = |key, message: String| SinkConfigError::Invalid { key, message };
    let address = Address::parse(&raw.address).map_err(|e| invalid("sink.syslog.address", e.to_string()))?;
    let facility = Facility::parse(&raw.facility).map_err(|e| invalid("sink.syslog.facility", e.to_string()))?;
    let severity = Severity::parse(&raw.severity).map_err(|e| invalid("sink.syslog.severity", e.to_string()))?;
    let queue_events = queue_events(raw.queue_events).map_err(|message| invalid("sink.syslog.queue_events", message))?;
    Ok(Some(SyslogConfig { address, format: raw.format, facility, severity, queue_events, optional: raw.optional }))
}

/// Starts the sink thread.
pub(crate) fn spawn(config: &SyslogConfig, queue: Arc<BoundedQueue>) -> io::Result<JoinHandle<()>> {
    let local = matches!(config.address, Address::Unix(_) | Address::UnixGram(_) | Address::UnixPacket(_));
    let header =
        Header { format: config.format, facility: config.facility, severity: config.severity, hostname: format::hostname(), procid: std::process::id(), local };
    tracing::info!(sink = "syslog", address = %config.address, format = ?config.format, "syslog sink started");
    let mut sender = Sender::new(config.address.clone(), header);
    thread::Builder::new().name("sink-syslog".into()).spawn(move || {
        let mut events = Vec::with_capacity(1024);
        while queue.pop_all(&mut events) {
            sender.deliver(&events, &queue);
            events.clear();
        }
    })
}

/// The connection, its backoff state, and reused buffers.
struct Sender {
    address: Address,
    header: Header,
    conn: Option<Conn>,
    backoff: Duration,
    failures: u64,
    /// The queue closed and the attempt after that was made: give up on failure.
    last_attempt: bool,
    message: Vec<u8>,
    buf: Vec<u8>,
    /// End offset in `buf` of each framed message (stream connections).
    ends: Vec<usize>,
}

impl Sender {
    fn new(address: Address, header: Header) -> Self {
        Self { address, header, conn: None, backoff: BACKOFF_START, failures: 0, last_attempt: false, message: Vec::new(), buf: Vec::new(), ends: Vec::new() }
    }

    /// Sends `events`, reconnecting and retrying with backoff as long as it
    /// takes; gives up (and counts the rest as write errors) only once the
    /// queue is closed and a last attempt failed.
    fn deliver(&mut self, events: &[Event], queue: &BoundedQueue) {
        let mut done = 0;
        while let Some(rest) = events.get(done..).filter(|rest| !rest.is_empty()) {
            if !self.connect(queue) {
                queue.record_write_error(rest.len() as u64);
                return;
            }
            let Some(conn) = self.conn.as_mut() else { continue };
            let result = if conn.is_stream() {
                send_stream(conn, &self.header, rest, &mut self.message, &mut self.buf, &mut self.ends)
            } else {
                send_datagrams(conn, &self.header, rest, &mut self.message)
            };
            let (sent, err) = match result {
                Ok(()) => (rest.len(), None),
                Err((sent, err)) => (sent, Some(err)),
            };
            queue.record_written(sent as u64);
            done += sent;
            if sent > 0 || err.is_none() {
                self.recovered();
            }
            let Some(err) = err else { continue };
            self.broken(&err);
            if err.raw_os_error() == Some(libc::EMSGSIZE) {
                // This message can never be sent: skip it, do not retry forever.
                queue.record_write_error(1);
                done += 1;
            } else if !self.pause(queue) {
                queue.record_write_error(rest.len().saturating_sub(sent) as u64);
                return;
            }
        }
    }

    /// Ensures a connection, reopening it with backoff between attempts.
    /// Returns false when the queue was closed and the last attempt failed.
    fn connect(&mut self, queue: &BoundedQueue) -> bool {
        if self.conn.as_ref().is_some_and(Conn::peer_gone) {
            self.broken(&io::Error::from(io::ErrorKind::ConnectionReset));
        }
        while self.conn.is_none() {
            match Conn::open(&self.address) {
                Ok(conn) => self.conn = Some(conn),
                Err(err) => {
                    self.broken(&err);
                    if !self.pause(queue) {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Waits out the backoff (cut short when the queue closes: then one last
    /// attempt follows). False when that last attempt has been made.
    fn pause(&mut self, queue: &BoundedQueue) -> bool {
        if self.last_attempt {
            return false;
        }
        self.last_attempt = queue.wait_closed(self.backoff);
        self.backoff = self.backoff.saturating_mul(2).min(BACKOFF_MAX);
        true
    }

    /// A message went out: reset the backoff, say so after an outage.
    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(sink = "syslog", address = %self.address, "delivering to the syslog receiver again");
        }
        (self.backoff, self.failures) = (BACKOFF_START, 0);
    }

    /// Drops the connection and reports the failure (1st, 2nd, 4th, 8th, ...).
    fn broken(&mut self, err: &io::Error) {
        self.conn = None;
        self.failures += 1;
        if self.failures.is_power_of_two() {
            tracing::warn!(sink = "syslog", address = %self.address, error = %err, failures = self.failures,
                "syslog receiver unreachable; events wait in the queue and are retried");
        }
    }
}

/// One datagram per event; on error, how many were sent before it.
fn send_datagrams(conn: &Conn, header: &Header, events: &[Event], message: &mut Vec<u8>) -> Result<(), (usize, io::Error)> {
    for (i, ev) in events.iter().enumerate() {
        message.clear();
        header.write_message(message, ev);
        conn.send(message).map_err(|err| (i, err))?;
    }
    Ok(())
}

/// All events framed into one buffer and written; on error, how many
/// messages were completely written before it.
fn send_stream(
    conn: &mut Conn,
    header: &Header,
    events: &[Event],
    message: &mut Vec<u8>,
    buf: &mut Vec<u8>,
    ends: &mut Vec<usize>,
) -> Result<(), (usize, io::Error)> {
    buf.clear();
    ends.clear();
    for ev in events {
        message.clear();
        header.write_message(message, ev);
        conn.frame(buf, message);
        ends.push(buf.len());
    }
    conn.write_stream(buf).map_err(|(written, err)| (ends.iter().take_while(|&&end| end <= written).count(), err))
}

#[cfg(test)]
mod tests;
