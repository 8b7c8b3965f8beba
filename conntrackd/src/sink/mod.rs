//! Sinks: where kept events go. Each sink runs on its own thread behind its own
//! bounded queue, so a slow sink never blocks the source or the other sinks;
//! events that do not fit are dropped and counted per sink.
pub(crate) mod journal;
pub(crate) mod json;
pub(crate) mod loki;
pub(crate) mod queue;
pub(crate) mod stream;
pub(crate) mod syslog;

use std::{sync::Arc, thread::JoinHandle};

use crate::{config::Config, event::Event};

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

/// Checks what a sink needs before its thread starts, then starts it;
/// an optional sink that cannot start is skipped with a warning.
fn start_one(
    name: &'static str,
    optional: bool,
    queue_events: usize,
    ready: Result<(), String>,
    spawn: impl FnOnce(Arc<BoundedQueue>) -> Result<JoinHandle<()>, SinkError>,
) -> Result<Option<Running>, SinkError> {
    let queue = Arc::new(BoundedQueue::new(queue_events));
    let started = ready.map_err(|reason| SinkError::Start { name, reason }).and_then(|()| spawn(Arc::clone(&queue)));
    match started {
        Ok(thread) => Ok(Some(Running { name, queue, thread })),
        Err(err) if optional => {
            tracing::warn!(sink = name, error = %err, "optional sink not started; running without it");
            Ok(None)
        }
        Err(SinkError::Spawn(source)) => Err(SinkError::Start { name, reason: source.to_string() }),
        Err(err) => Err(err),
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

/// A running sink: its queue and its thread.
struct Running {
    name: &'static str,
    queue: Arc<BoundedQueue>,
    thread: JoinHandle<()>,
}

/// All running sinks; [`Sinks::send`] fans a batch out to each queue.
pub(crate) struct Sinks {
    running: Vec<Running>,
}

impl Sinks {
    /// Starts every sink the config enables. A sink that cannot start is an
    /// error, unless it is `optional`: then it is left out with a warning.
    pub fn start(config: &Config) -> Result<Self, SinkError> {
        let mut running = Vec::new();
        if let Some(c) = &config.stream {
            running.extend(start_one("stream", false, c.queue_events, Ok(()), |q| Ok(stream::spawn(c.writer, q)?))?);
        }
        if let Some(c) = &config.journal {
            let ready = exists(&c.socket, "journald's socket");
            running.extend(start_one("journal", c.optional, c.queue_events, ready, |q| Ok(journal::spawn(c, q)?))?);
        }
        if let Some(c) = &config.syslog {
            let ready = match &c.address {
                syslog::transport::Address::Unix(path) | syslog::transport::Address::UnixGram(path) => exists(path, "the syslog socket"),
                _ => Ok(()),
            };
            running.extend(start_one("syslog", c.optional, c.queue_events, ready, |q| Ok(syslog::spawn(c, q)?))?);
        }
        if let Some(c) = &config.loki {
            let ready = c
                .spool_dir
                .as_deref()
                .map_or(Ok(()), |dir| std::fs::create_dir_all(dir).map_err(|e| format!("cannot create spool_dir {}: {e}", dir.display())));
            running.extend(start_one("loki", c.optional, c.queue_events, ready, |q| Ok(loki::spawn(c.clone(), q)?))?);
        }
        Ok(Self { running })
    }

    /// Queues a batch on every sink; never blocks on a slow sink.
    pub fn send(&self, batch: &[Event]) {
        for sink in &self.running {
            sink.queue.push_batch(batch);
        }
    }

    /// Each sink's queue, for the metrics endpoint.
    pub fn queues(&self) -> Vec<(&'static str, Arc<BoundedQueue>)> {
        self.running.iter().map(|s| (s.name, Arc::clone(&s.queue))).collect()
    }

    /// Per-sink counters.
    pub fn stats(&self) -> Vec<(&'static str, SinkStats)> {
        self.running.iter().map(|s| (s.name, s.queue.stats())).collect()
    }

    /// Lets every sink write what it has queued, then stops it; returns the final counters.
    pub fn shutdown(self) -> Vec<(&'static str, SinkStats)> {
        for sink in &self.running {
            sink.queue.close();
        }
        self.running
            .into_iter()
            .map(|sink| {
                if sink.thread.join().is_err() {
                    tracing::error!(sink = sink.name, "sink thread panicked");
                }
                (sink.name, sink.queue.stats())
            })
            .collect()
    }
}
