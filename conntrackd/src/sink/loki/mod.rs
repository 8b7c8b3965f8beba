//! The Loki sink, laid out like Vector's: `config` (keys), `request`
//! (batching), `encoding` (protobuf + snappy, JSON), `service` (HTTP),
//! `retry` (the decision and backoff), `healthcheck` (`/ready`), `spool`
//! (batches not yet accepted). It runs on its own thread behind its own
//! queue; HTTP is blocking there, so a slow Loki only fills that queue.
//!
//! Delivery: a batch is forgotten only once the server answered 2xx, or
//! rejected it with a 4xx other than 429 (dropped, counted). A timeout after
//! the server had in fact stored the batch makes it be sent again, so the
//! guarantee is at-least-once; refused connections and 429/5xx never duplicate.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
pub(crate) mod config;
pub(crate) mod encoding;
mod healthcheck;
pub(crate) mod request;
pub(crate) mod retry;
pub(crate) mod service;
pub(crate) mod spool;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_tls;
pub(crate) mod throughput;

use std::{
    sync::{
        mpsc::{self, TryRecvError},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use self::{
    config::LokiConfig,
    encoding::{encode, EncodeError},
    healthcheck::Healthcheck,
    request::{Batch, Batcher, StreamKeys},
    retry::{decide, Backoff, Decision},
    service::{Service, ServiceError},
    spool::{Outbox, Payload, SpoolError},
};
use super::queue::{BoundedQueue, Pop};

#[derive(Debug, thiserror::Error)]
pub(crate) enum LokiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot start the loki sink thread: {0}")]
    Spawn(std::io::Error),
}

/// Most batches sent from the outbox before the queue is looked at again.
const DRAIN_BURST: usize = 16;
/// How often a successor looks whether its predecessor's outbox has arrived.
const HANDOVER_POLL: Duration = Duration::from_millis(20);

/// Where a sender's outbox comes from.
pub(crate) enum Start {
    /// Open `spool_dir` (or memory) itself: the first sender of a run.
    Open,
    /// Wait for the predecessor's outbox (a reload that changed the sink).
    Successor(mpsc::Receiver<Outbox>),
}

/// Set by a reload before it closes the sender's queue: once drained, the
/// sender hands its outbox to this channel instead of shutting down.
pub(crate) type Successor = Arc<Mutex<Option<mpsc::Sender<Outbox>>>>;

/// Builds the client and opens the spool (errors are startup errors), then
/// starts the sink thread.
pub(crate) fn spawn(config: LokiConfig, queue: Arc<BoundedQueue>, start: Start) -> Result<(JoinHandle<()>, Successor), LokiError> {
    let successor = Successor::default();
    let sender = Sender::new(&config, Arc::clone(&queue), start, Arc::clone(&successor))?;
    let host = crate::host::hostname().unwrap_or_else(|| "unknown".into());
    let keys = StreamKeys::new(host, config.labels.clone(), config.per_flow_labels, config.line_format);
    let batcher = Batcher::new(keys, config.batch_wait, config.batch_bytes);
    let thread = thread::Builder::new().name("sink-loki".into()).spawn(move || sender.run(batcher)).map_err(LokiError::Spawn)?;
    Ok((thread, successor))
}

/// Sends batches in order: first the outbox, then fresh ones.
struct Sender {
    config: LokiConfig,
    service: Service,
    outbox: Outbox,
    queue: Arc<BoundedQueue>,
    backoff: Backoff,
    /// While set, the server failed and nothing is sent before this time.
    retry_at: Option<Instant>,
    health: Healthcheck,
    /// Set at shutdown: no request may outlast it.
    shutdown_deadline: Option<Instant>,
    failures: u64,
    sent_batches: u64,
    rejected_events: u64,
    outbox_drops_seen: u64,
    /// Until the predecessor's outbox arrives: nothing is sent.
    awaiting: Option<mpsc::Receiver<Outbox>>,
    /// Where to hand the outbox at the end instead of shutting down.
    successor: Successor,
}

impl Sender {
    fn new(config: &LokiConfig, queue: Arc<BoundedQueue>, start: Start, successor: Successor) -> Result<Self, LokiError> {
        let (outbox, awaiting) = match start {
            Start::Open => (Outbox::open(config.spool_dir.as_deref(), config.spool_max_bytes)?, None),
            Start::Successor(rx) => (Outbox::memory(config.spool_max_bytes), Some(rx)),
        };
        let (batches, events) = outbox.pending();
        if batches > 0 {
            tracing::info!(sink = "loki", batches, events, "spooled batches from an earlier run will be sent first");
        }
        Ok(Self {
            awaiting,
            successor,
            service: Service::new(config)?,
            outbox,
            queue,
            backoff: Backoff::new(config.min_backoff, config.max_backoff),
            retry_at: None,
            health: Healthcheck::new(config.min_backoff, config.max_backoff),
            shutdown_deadline: None,
            failures: 0,
            sent_batches: 0,
            rejected_events: 0,
            outbox_drops_seen: 0,
            config: config.clone(),
        })
    }

    fn run(mut self, mut batcher: Batcher) {
        let mut events = Vec::with_capacity(4096);
        loop {
            self.adopt(false);
            let now = Instant::now();
            self.health.run(&self.service, &self.config.endpoint.base, now);
            if let Some(batch) = batcher.due(now) {
                self.submit(&batch);
            }
            self.drain_outbox();
            self.queue.set_pending_bytes(self.outbox.bytes());
            // Pending batches: wake at the retry time, or at once if not backing off.
            let retry = (!self.outbox.is_empty()).then(|| self.retry_at.unwrap_or(now));
            let handover = self.awaiting.is_some().then(|| now + HANDOVER_POLL);
            let deadline = [batcher.deadline(), retry, self.health.due_at(), handover].into_iter().flatten().min();
            match self.queue.pop_until(&mut events, deadline) {
                Pop::Events => {
                    for ev in events.drain(..) {
                        if let Some(batch) = batcher.push(&ev, Instant::now()) {
                            self.submit(&batch);
                        }
                    }
                }
                Pop::Timeout => {}
                Pop::Closed => break,
            }
        }
        self.adopt(true);
        let successor = self.successor.lock().unwrap_or_else(|p| p.into_inner()).take();
        match successor {
            Some(next) => self.hand_over(batcher, &next),
            None => self.shutdown(batcher),
        }
    }

    /// Takes over the predecessor's outbox once it arrives (`wait`: block
    /// until it does or the predecessor is gone) and queues behind it what
    /// was batched meanwhile.
    fn adopt(&mut self, wait: bool) {
        let Some(rx) = &self.awaiting else { return };
        let handed = if wait {
            rx.recv().ok()
        } else {
            match rx.try_recv() {
                Ok(outbox) => Some(outbox),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => None,
            }
        };
        self.awaiting = None;
        let adopted = match handed {
            Some(outbox) => outbox,
            // The reload that started this sender was abandoned before the swap
            // (its queue is closed before the channel goes): nothing to take over.
            None if self.queue.is_closed() && self.outbox.is_empty() => return,
            // The predecessor ended without handing over (it cannot hold the spool any more): open it.
            None => match Outbox::open(self.config.spool_dir.as_deref(), self.config.spool_max_bytes) {
                Ok(outbox) => outbox,
                Err(err) => return tracing::error!(sink = "loki", error = %err, "cannot open the spool; batches stay in memory"),
            },
        };
        let (batches, events) = adopted.pending();
        tracing::info!(sink = "loki", batches, events, "took over the previous loki sink's pending batches");
        let waiting = std::mem::replace(&mut self.outbox, adopted);
        self.outbox.append(waiting);
    }

    /// Reload: the queue is drained; spool the open batch and give the
    /// outbox to the successor (if it is gone, shut down as usual).
    fn hand_over(mut self, mut batcher: Batcher, next: &mpsc::Sender<Outbox>) {
        if let Some(batch) = batcher.take() {
            self.spool(&batch);
        }
        let outbox = std::mem::replace(&mut self.outbox, Outbox::memory(self.config.spool_max_bytes));
        let (batches, events) = outbox.pending();
        match next.send(outbox) {
            Ok(()) => {
                tracing::info!(sink = "loki", batches, events, sent_batches = self.sent_batches, "loki sink replaced; pending batches handed to the new one")
            }
            Err(mpsc::SendError(outbox)) => {
                self.outbox = outbox;
                self.shutdown(batcher);
            }
        }
    }

    /// Encodes a cut batch into the outbox without sending it.
    fn spool(&mut self, batch: &Batch) {
        match encode(batch, self.config.encoding) {
            Ok(body) => self.outbox.push(Payload { encoding: self.config.encoding, events: batch.events() as u64, body }),
            Err(err) => self.encode_failed(batch.events(), &err),
        }
        self.sync_outbox_drops();
    }

    /// Encodes a cut batch; sends it now if nothing is pending, else queues it behind.
    fn submit(&mut self, batch: &Batch) {
        if !(self.outbox.is_empty() && self.retry_at.is_none() && self.awaiting.is_none()) {
            return self.spool(batch);
        }
        let payload = match encode(batch, self.config.encoding) {
            Ok(body) => Payload { encoding: self.config.encoding, events: batch.events() as u64, body },
            Err(err) => return self.encode_failed(batch.events(), &err),
        };
        if !self.send(&payload) {
            self.outbox.push(payload);
        }
        self.sync_outbox_drops();
    }

    /// Sends pending batches in order while the server takes them.
    fn drain_outbox(&mut self) {
        if self.awaiting.is_some() {
            return;
        }
        for _ in 0..DRAIN_BURST {
            if self.retry_at.is_some_and(|t| t > Instant::now()) {
                return;
            }
            let Some(payload) = self.outbox.front() else { break };
            if !self.send(&payload) {
                break;
            }
            self.outbox.pop_front();
        }
        self.sync_outbox_drops();
    }

    /// One attempt. True when the batch is done with (accepted or rejected),
    /// false when it must be kept for a retry (and the backoff is armed).
    fn send(&mut self, payload: &Payload) -> bool {
        let limit = self.shutdown_deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if limit.is_some_and(|l| l.is_zero()) {
            return false; // shutdown_timeout is over: the batch stays spooled
        }
        let result = self.service.push(&payload.body, payload.encoding, limit);
        match decide(result.outcome) {
            Decision::Accepted => {
                self.queue.record_written(payload.events);
                self.sent_batches += 1;
                self.backoff.reset();
                self.health.mark_ready();
                if self.retry_at.take().is_some() {
                    tracing::info!(sink = "loki", failures = self.failures, "loki accepts pushes again");
                }
                true
            }
            Decision::Reject => {
                self.queue.record_write_error(payload.events);
                self.rejected_events += payload.events;
                tracing::error!(
                    sink = "loki",
                    outcome = ?result.outcome,
                    server_message = %result.message,
                    events = payload.events,
                    total_rejected = self.rejected_events,
                    "loki rejected a batch; it is dropped"
                );
                true
            }
            Decision::Retry => {
                self.failures += 1;
                let delay = self.backoff.next_delay(fastrand::f64());
                self.retry_at = Some(Instant::now() + delay);
                if self.failures.is_power_of_two() {
                    tracing::warn!(
                        sink = "loki",
                        outcome = ?result.outcome,
                        error = %result.message,
                        failures = self.failures,
                        retry_in = ?delay,
                        "loki push failed; the batch is kept and retried"
                    );
                }
                false
            }
        }
    }

    fn encode_failed(&mut self, events: usize, err: &EncodeError) {
        self.queue.record_write_error(events as u64);
        tracing::error!(sink = "loki", events, error = %err, "cannot encode a batch; it is dropped");
    }

    /// Outbox drops (bound reached, unreadable file) count as write errors.
    fn sync_outbox_drops(&mut self) {
        let new = self.outbox.dropped_events - self.outbox_drops_seen;
        if new > 0 {
            self.queue.record_write_error(new);
            self.outbox_drops_seen = self.outbox.dropped_events;
        }
    }

    /// Sends what it can within `shutdown_timeout`; the rest stays spooled
    /// (or, without a spool directory, is lost and counted).
    fn shutdown(mut self, mut batcher: Batcher) {
        let deadline = Instant::now() + self.config.shutdown_timeout;
        self.shutdown_deadline = Some(deadline);
        if let Some(batch) = batcher.take() {
            self.submit(&batch);
        }
        while !self.outbox.is_empty() && Instant::now() < deadline {
            if let Some(at) = self.retry_at.filter(|&t| t > Instant::now()) {
                if at >= deadline {
                    break;
                }
                // Waiting out the backoff: nothing else is left to do.
                thread::sleep(at - Instant::now());
            }
            self.drain_outbox();
        }
        let (batches, events) = self.outbox.pending();
        if batches > 0 && self.config.spool_dir.is_none() {
            self.queue.record_write_error(events);
            tracing::error!(sink = "loki", batches, events, "loki did not accept these events before shutdown_timeout; without spool_dir they are lost");
        } else if batches > 0 {
            tracing::warn!(sink = "loki", batches, events, "loki did not accept these events before shutdown_timeout; they stay spooled for the next start");
        }
        tracing::info!(
            sink = "loki",
            sent_batches = self.sent_batches,
            rejected_events = self.rejected_events,
            spool_dropped_events = self.outbox.dropped_events,
            left_batches = batches,
            left_events = events,
            "loki sink stopped"
        );
    }
}
