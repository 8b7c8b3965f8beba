//! A bounded multi-producer queue of events, counted in events, for one sink.
//!
//! Producers push whole batches under one lock and never wait; what does not
//! fit is dropped and counted. The sink thread takes everything queued at once.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Condvar, Mutex, MutexGuard,
    },
    time::Instant,
};

use super::SinkStats;
use crate::event::Event;

/// What [`BoundedQueue::pop_until`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pop {
    Events,
    Timeout,
    Closed,
}

#[derive(Default)]
struct State {
    events: VecDeque<Event>,
    closed: bool,
}

pub(crate) struct BoundedQueue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    dropped_queue_full: AtomicU64,
    dropped_write_error: AtomicU64,
    written: AtomicU64,
    /// Unix ms since writes started failing; 0 while the sink is healthy.
    failing_since_ms: AtomicU64,
    /// Bytes the sink holds beyond the queue (e.g. Loki's spooled batches).
    pending_bytes: AtomicU64,
}

impl BoundedQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            capacity,
            dropped_queue_full: AtomicU64::new(0),
            dropped_write_error: AtomicU64::new(0),
            written: AtomicU64::new(0),
            failing_since_ms: AtomicU64::new(0),
            pending_bytes: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking holder cannot leave the deque inconsistent; keep going.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues as much of `batch` as fits; counts the rest as dropped.
    pub fn push_batch(&self, batch: &[Event]) {
        if batch.is_empty() {
            return;
        }
        let mut state = self.lock();
        let room = self.capacity.saturating_sub(state.events.len());
        let take = room.min(batch.len());
        state.events.extend(batch.iter().take(take).cloned());
        drop(state);
        // Cannot underflow: take <= batch.len().
        let dropped = batch.len() - take;
        if dropped > 0 {
            self.dropped_queue_full.fetch_add(dropped as u64, Ordering::Relaxed);
        }
        if take > 0 {
            self.ready.notify_one();
        }
    }

    /// Blocks until events are queued, then moves them all into `out`.
    /// Returns false once the queue is closed and empty.
    pub fn pop_all(&self, out: &mut Vec<Event>) -> bool {
        let mut state = self.lock();
        while state.events.is_empty() && !state.closed {
            state = self.ready.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if state.events.is_empty() {
            return false;
        }
        out.extend(state.events.drain(..));
        true
    }

    /// Like [`Self::pop_all`], but waits at most until `deadline` (`None`: no limit).
    pub fn pop_until(&self, out: &mut Vec<Event>, deadline: Option<Instant>) -> Pop {
        let mut state = self.lock();
        while state.events.is_empty() && !state.closed {
            let Some(deadline) = deadline else {
                state = self.ready.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Pop::Timeout;
            }
            state = self.ready.wait_timeout(state, left).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
        }
        if state.events.is_empty() {
            return Pop::Closed;
        }
        out.extend(state.events.drain(..));
        Pop::Events
    }

    /// No more pushes; the consumer drains what is left and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// True once [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits up to `timeout` (without taking events); true once the queue is closed.
    pub fn wait_closed(&self, timeout: std::time::Duration) -> bool {
        let start = Instant::now();
        let mut state = self.lock();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if state.closed || left.is_zero() {
                return state.closed;
            }
            state = self.ready.wait_timeout(state, left).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
        }
    }

    /// Events delivered; the sink is healthy again.
    pub fn record_written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
        self.failing_since_ms.store(0, Ordering::Relaxed);
    }

    /// Events lost to a failed write; the sink is failing from now on, if it was not already.
    pub fn record_write_error(&self, n: u64) {
        self.dropped_write_error.fetch_add(n, Ordering::Relaxed);
        self.mark_failing();
    }

    /// The sink cannot deliver (e.g. its peer is down) without losing events yet.
    pub fn mark_failing(&self) {
        let now = crate::event::time::unix_ms();
        let _ = self.failing_since_ms.compare_exchange(0, now.max(1), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Unix ms since when the sink has been failing, if it is.
    pub fn failing_since_ms(&self) -> Option<u64> {
        Some(self.failing_since_ms.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// Records what the sink holds beyond the queue (spooled or in memory), in bytes.
    pub fn set_pending_bytes(&self, bytes: u64) {
        self.pending_bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes.load(Ordering::Relaxed)
    }

    /// Events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.lock().events.len()
    }

    pub fn stats(&self) -> SinkStats {
        SinkStats {
            written: self.written.load(Ordering::Relaxed),
            dropped_queue_full: self.dropped_queue_full.load(Ordering::Relaxed),
            dropped_write_error: self.dropped_write_error.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{tests::tcp_v4_record, Event};

    #[test]
    fn overflow_is_counted_and_close_drains() {
        let q = BoundedQueue::new(3);
        let ev = Event::from_record(&tcp_v4_record(), 0).unwrap();
        q.push_batch(&[ev.clone(), ev.clone()]);
        q.push_batch(&[ev.clone(), ev.clone(), ev.clone()]);
        assert_eq!(q.stats().dropped_queue_full, 2);
        q.close();
        let mut out = Vec::new();
        assert!(q.pop_all(&mut out));
        assert_eq!(out.len(), 3);
        assert!(!q.pop_all(&mut out));
    }
}
