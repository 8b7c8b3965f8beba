//! Sinks: where kept events go. Each sink runs on its own thread behind its own
//! bounded queue, so a slow sink never blocks the source or the other sinks;
//! events that do not fit are dropped and counted per sink.
//!
//! Sinks live across reloads. A reload is a diff: [`prepare`] (off the event
//! path: it may open files, sockets and spools) starts a sink only for a
//! section that is new or changed; [`Sinks::apply`] (on the event path, never
//! blocking) swaps them in, leaves every unchanged sink running with its
//! queue and spool untouched, and retires the replaced ones: their queues
//! are closed and they drain on their own threads, joined by a [`Retiring`]
//! thread. A replaced Loki sink hands its outbox to its successor.
//! `config.rs` holds the `[sink]` sections and their validation.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
pub(crate) mod config;
pub(crate) mod journal;
pub(crate) mod json;
pub(crate) mod loki;
pub(crate) mod queue;
pub(crate) mod stream;
pub(crate) mod syslog;

use std::{
    sync::{mpsc, Arc},
    thread::JoinHandle,
};

use crate::event::Event;

pub(crate) use self::config::{RawSinks, SinkConfigError, SinksConfig, StreamConfig};
use self::queue::BoundedQueue;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkError {
    #[error("cannot start the {name} sink: {reason} (set sink.{name}.optional = true to run without it)")]
    Start { name: &'static str, reason: String },
    #[error("cannot start a sink thread: {0}")]
    Spawn(#[from] std::io::Error),
    #[error(transparent)]
    Loki(#[from] loki::LokiError),
}

/// One sink's validated section: what a reload compares.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SinkSpec {
    Stream(StreamConfig),
    Journal(journal::JournalConfig),
    Syslog(syslog::SyslogConfig),
    Loki(Box<loki::config::LokiConfig>),
}

impl SinkSpec {
    /// Every sink the config enables, in a fixed order.
    pub fn all(config: &SinksConfig) -> Vec<SinkSpec> {
        let stream = config.stream.clone().map(SinkSpec::Stream);
        let journal = config.journal.clone().map(SinkSpec::Journal);
        let syslog = config.syslog.clone().map(SinkSpec::Syslog);
        let loki = config.loki.clone().map(|c| SinkSpec::Loki(Box::new(c)));
        [stream, journal, syslog, loki].into_iter().flatten().collect()
    }

    pub fn name(&self) -> &'static str {
        match self {
            SinkSpec::Stream(_) => "stream",
            SinkSpec::Journal(_) => "journal",
            SinkSpec::Syslog(_) => "syslog",
            SinkSpec::Loki(_) => "loki",
        }
    }

    fn optional(&self) -> bool {
        match self {
            SinkSpec::Stream(_) => false,
            SinkSpec::Journal(c) => c.optional,
            SinkSpec::Syslog(c) => c.optional,
            SinkSpec::Loki(c) => c.optional,
        }
    }

    fn queue_events(&self) -> usize {
        match self {
            SinkSpec::Stream(c) => c.queue_events,
            SinkSpec::Journal(c) => c.queue_events,
            SinkSpec::Syslog(c) => c.queue_events,
            SinkSpec::Loki(c) => c.queue_events,
        }
    }

    /// What the sink needs before its thread starts.
    fn ready(&self) -> Result<(), String> {
        match self {
            SinkSpec::Stream(_) => Ok(()),
            SinkSpec::Journal(c) => exists(&c.socket, "journald's socket"),
            SinkSpec::Syslog(c) => match &c.address {
                syslog::transport::Address::Unix(path) | syslog::transport::Address::UnixGram(path) => exists(path, "the syslog socket"),
                _ => Ok(()),
            },
            SinkSpec::Loki(c) => {
                c.spool_dir.as_deref().map_or(Ok(()), |dir| std::fs::create_dir_all(dir).map_err(|e| format!("cannot create spool_dir {}: {e}", dir.display())))
            }
        }
    }

    /// Starts the sink's thread; a Loki successor waits for `handover`.
    fn spawn(
        &self,
        queue: Arc<BoundedQueue>,
        handover: Option<mpsc::Receiver<loki::spool::Outbox>>,
    ) -> Result<(JoinHandle<()>, Option<loki::Successor>), SinkError> {
        Ok(match self {
            SinkSpec::Stream(c) => (stream::spawn(c.writer, queue)?, None),
            SinkSpec::Journal(c) => (journal::spawn(c, queue)?, None),
            SinkSpec::Syslog(c) => (syslog::spawn(c, queue)?, None),
            SinkSpec::Loki(c) => {
                let start = handover.map_or(loki::Start::Open, loki::Start::Successor);
                let (thread, successor) = loki::spawn(c.as_ref().clone(), queue, start)?;
                (thread, Some(successor))
            }
        })
    }
}

fn exists(path: &std::path::Path, what: &str) -> Result<(), String> {
    if path.exists() {
        Ok(())
    } else {
        Err(format!("{what} {} does not exist", path.display()))
    }
}

/// Counters of one sink, readable while it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SinkStats {
    /// Events the sink wrote.
    pub written: u64,
    /// Events dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Events lost because writing failed.
    pub dropped_write_error: u64,
}

impl SinkStats {
    /// Adds another instance's counters (a sink replaced on reload).
    pub fn add(&mut self, other: &SinkStats) {
        self.written += other.written;
        self.dropped_queue_full += other.dropped_queue_full;
        self.dropped_write_error += other.dropped_write_error;
    }
}

/// A running sink: its section, queue and thread.
struct Running {
    spec: SinkSpec,
    queue: Arc<BoundedQueue>,
    thread: JoinHandle<()>,
    /// Loki: where this sender hands its outbox when it is replaced.
    successor: Option<loki::Successor>,
}

impl Running {
    fn name(&self) -> &'static str {
        self.spec.name()
    }
}

/// A reload's new sinks, started and waiting to be swapped in.
pub(crate) struct Prepared {
    slots: Vec<Slot>,
}

enum Slot {
    /// The running sink of this name stays as it is.
    Keep(&'static str),
    /// A new sink; `handover` goes to the running one it replaces (Loki's outbox).
    Start { sink: Box<Running>, handover: Option<mpsc::Sender<loki::spool::Outbox>> },
}

impl Prepared {
    /// Names of the sinks the swap starts (new or changed).
    pub fn started(&self) -> Vec<&'static str> {
        self.slots.iter().filter_map(|s| if let Slot::Start { sink, .. } = s { Some(sink.name()) } else { None }).collect()
    }

    /// An abandoned reload: stops what it started. Queues are closed before
    /// the hand-over channels go, so a Loki successor knows it was never used.
    pub fn abandon(self) {
        let started: Vec<Running> = self
            .slots
            .into_iter()
            .filter_map(|slot| match slot {
                Slot::Start { sink, handover } => {
                    sink.queue.close();
                    drop(handover);
                    Some(*sink)
                }
                Slot::Keep(_) => None,
            })
            .collect();
        join_all(started);
    }
}

/// Starts the sinks `config` enables that are not running as they are
/// (`running`: the sections of the running sinks). A sink that cannot start
/// is an error, unless it is `optional`: then it is left out with a warning.
/// May block (files, sockets, spool directories): call it off the event path.
pub(crate) fn prepare(config: &SinksConfig, running: &[SinkSpec]) -> Result<Prepared, SinkError> {
    let mut slots = Vec::new();
    for spec in SinkSpec::all(config) {
        if running.contains(&spec) {
            slots.push(Slot::Keep(spec.name()));
            continue;
        }
        // A changed Loki sink with the same spool takes over its predecessor's outbox.
        let replaces_loki = running.iter().any(|old| matches!((old, &spec), (SinkSpec::Loki(o), SinkSpec::Loki(n)) if o.spool_dir == n.spool_dir));
        let (tx, rx) = if replaces_loki {
            let (tx, rx) = mpsc::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let queue = Arc::new(BoundedQueue::new(spec.queue_events()));
        let started = spec.ready().map_err(|reason| SinkError::Start { name: spec.name(), reason }).and_then(|()| spec.spawn(Arc::clone(&queue), rx));
        match started {
            Ok((thread, successor)) => slots.push(Slot::Start { sink: Box::new(Running { spec, queue, thread, successor }), handover: tx }),
            Err(err) if spec.optional() => tracing::warn!(sink = spec.name(), error = %err, "optional sink not started; running without it"),
            Err(err) => {
                Prepared { slots }.abandon();
                return Err(match err {
                    SinkError::Spawn(source) => SinkError::Start { name: spec.name(), reason: source.to_string() },
                    err => err,
                });
            }
        }
    }
    Ok(Prepared { slots })
}

/// Sinks replaced or removed by a reload, draining on their own threads.
pub(crate) struct Retiring {
    thread: Option<JoinHandle<Vec<(&'static str, SinkStats)>>>,
}

impl Retiring {
    /// Waits for the retired sinks to finish; their final counters.
    pub fn finish(self) -> Vec<(&'static str, SinkStats)> {
        self.thread.map(|t| t.join().unwrap_or_default()).unwrap_or_default()
    }
}

/// All running sinks; [`Sinks::send`] fans a batch out to each queue.
pub(crate) struct Sinks {
    running: Vec<Running>,
}

impl Sinks {
    /// Starts every sink the config enables (see [`prepare`]).
    pub fn start(config: &SinksConfig) -> Result<Self, SinkError> {
        let mut sinks = Self { running: Vec::new() };
        let none = sinks.apply(prepare(config, &[])?);
        debug_assert!(none.thread.is_none());
        Ok(sinks)
    }

    /// The running sinks' sections, for [`prepare`].
    pub fn specs(&self) -> Vec<SinkSpec> {
        self.running.iter().map(|s| s.spec.clone()).collect()
    }

    /// Swaps in a prepared reload without waiting for anything: kept sinks
    /// stay, new ones join, the others are retired (queues closed, a Loki
    /// predecessor told where to hand its outbox) and joined on a thread.
    pub fn apply(&mut self, prepared: Prepared) -> Retiring {
        let mut old = std::mem::take(&mut self.running);
        let mut handovers = Vec::new();
        for slot in prepared.slots {
            match slot {
                Slot::Keep(name) => {
                    if let Some(at) = old.iter().position(|s| s.name() == name) {
                        self.running.push(old.swap_remove(at));
                    }
                }
                Slot::Start { sink, handover } => {
                    handovers.extend(handover);
                    self.running.push(*sink);
                }
            }
        }
        for (retired, next) in old.iter().filter(|s| s.successor.is_some()).zip(handovers) {
            if let Some(slot) = &retired.successor {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(next);
            }
        }
        if old.is_empty() {
            return Retiring { thread: None };
        }
        old.iter().for_each(|s| s.queue.close());
        let joiner = std::thread::Builder::new().name("sink-retire".into()).spawn(move || join_all(old));
        match joiner {
            Ok(thread) => Retiring { thread: Some(thread) },
            Err(err) => {
                tracing::error!(error = %err, "cannot start a thread to retire the replaced sinks; they drain unobserved");
                Retiring { thread: None }
            }
        }
    }

    /// Queues a batch on every sink; never blocks on a slow sink.
    pub fn send(&self, batch: &[Event]) {
        for sink in &self.running {
            sink.queue.push_batch(batch);
        }
    }

    /// Each sink's queue, for the metrics endpoint.
    pub fn queues(&self) -> Vec<(&'static str, Arc<BoundedQueue>)> {
        self.running.iter().map(|s| (s.name(), Arc::clone(&s.queue))).collect()
    }

    /// Per-sink counters.
    pub fn stats(&self) -> Vec<(&'static str, SinkStats)> {
        self.running.iter().map(|s| (s.name(), s.queue.stats())).collect()
    }

    /// Lets every sink write what it has queued, then stops it; returns the final counters.
    pub fn shutdown(self) -> Vec<(&'static str, SinkStats)> {
        self.running.iter().for_each(|s| s.queue.close());
        join_all(self.running)
    }
}

/// Joins closed sinks' threads; their final counters.
fn join_all(sinks: Vec<Running>) -> Vec<(&'static str, SinkStats)> {
    sinks
        .into_iter()
        .map(|sink| {
            let name = sink.name();
            if sink.thread.join().is_err() {
                tracing::error!(sink = name, "sink thread panicked");
            }
            (name, sink.queue.stats())
        })
        .collect()
}

#[cfg(test)]
mod tests;
