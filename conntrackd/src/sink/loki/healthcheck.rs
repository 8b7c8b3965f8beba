//! The `GET <address>/ready` probe: run at start, reported, retried with
//! backoff until it (or a push) succeeds; never fatal.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::time::{Duration, Instant};

use super::{
    retry::{decide, Backoff, Decision},
    service::Service,
};

/// Probe state; done once the server has answered ready or accepted a push.
pub(crate) struct Healthcheck {
    next: Option<Instant>,
    backoff: Backoff,
    failures: u32,
}

impl Healthcheck {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { next: Some(Instant::now()), backoff: Backoff::new(min, max), failures: 0 }
    }

    /// When the next probe is due, if one is.
    pub fn due_at(&self) -> Option<Instant> {
        self.next
    }

    /// A push succeeded: the server is evidently ready.
    pub fn mark_ready(&mut self) {
        self.next = None;
    }

    /// Probes if due; logs the first success and the failures (sparingly).
    pub fn run(&mut self, service: &Service, endpoint: &str, now: Instant) {
        if self.next.is_none_or(|t| t > now) {
            return;
        }
        let result = service.ready();
        if decide(result.outcome) == Decision::Accepted {
            tracing::info!(sink = "loki", address = endpoint, "loki is ready");
            self.next = None;
            return;
        }
        self.failures += 1;
        let delay = self.backoff.next_delay(fastrand::f64());
        if self.failures.is_power_of_two() {
            tracing::warn!(
                sink = "loki",
                address = endpoint,
                outcome = ?result.outcome,
                error = %result.message,
                retry_in = ?delay,
                "loki readiness probe failed; events are kept and retried"
            );
        }
        // Cannot overflow: delay <= max_backoff <= 24 h (config).
        self.next = Some(now + delay);
    }
}
