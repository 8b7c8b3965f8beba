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
    #[error("cannot start the {name} sink thread: {source}")]
    Spawn { name: &'static str, source: std::io::Error },
    #[error(transparent)]
    Loki(#[from] loki::LokiError),
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
    /// Starts every sink the config enables.
    pub fn start(config: &Config) -> Result<Self, SinkError> {
        let mut running = Vec::new();
        if let Some(stream) = &config.stream {
            let queue = Arc::new(BoundedQueue::new(stream.queue_events));
            let thread = stream::spawn(stream.writer, Arc::clone(&queue))
                .map_err(|source| SinkError::Spawn { name: "stream", source })?;
            running.push(Running { name: "stream", queue, thread });
        }
        if let Some(journal) = &config.journal {
            let queue = Arc::new(BoundedQueue::new(journal.queue_events));
            let thread = journal::spawn(journal, Arc::clone(&queue)).map_err(|source| SinkError::Spawn { name: "journal", source })?;
            running.push(Running { name: "journal", queue, thread });
        }
        if let Some(syslog) = &config.syslog {
            let queue = Arc::new(BoundedQueue::new(syslog.queue_events));
            let thread = syslog::spawn(syslog, Arc::clone(&queue)).map_err(|source| SinkError::Spawn { name: "syslog", source })?;
            running.push(Running { name: "syslog", queue, thread });
        }
        if let Some(loki) = &config.loki {
            let queue = Arc::new(BoundedQueue::new(loki.queue_events));
            let thread = loki::spawn(loki.clone(), Arc::clone(&queue))?;
            running.push(Running { name: "loki", queue, thread });
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
