//! What to do after a push attempt, as a pure function, and the backoff
//! between retries (exponential, with jitter, capped).
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::time::Duration;

/// How a push attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The server answered with this HTTP status.
    Status(u16),
    /// No answer: connection refused or closed, timeout, TLS failure.
    Transport,
}

/// The decision for a batch after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Accepted: forget the batch.
    Accepted,
    /// Keep the batch and send it again after a backoff.
    Retry,
    /// The server will never take it: drop it and count its events.
    Reject,
}

/// 2xx accepted; 429, 5xx and transport errors retried; any other status rejected.
pub(crate) fn decide(outcome: Outcome) -> Decision {
    match outcome {
        Outcome::Status(200..=299) => Decision::Accepted,
        Outcome::Status(429) | Outcome::Status(500..=599) | Outcome::Transport => Decision::Retry,
        Outcome::Status(_) => Decision::Reject,
    }
}

/// Exponential backoff from `min` doubling to `max`, with "equal jitter":
/// each delay is uniformly drawn from [d/2, d] so that clients spread out.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max, current: min }
    }

    /// The next delay; `unit` is a random number in [0, 1).
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let base = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        // mul_f64 cannot panic: the factor is in [0, 0.5] and base <= max_backoff <= 24 h (config).
        (base / 2).saturating_add(base.mul_f64(unit.clamp(0.0, 1.0) / 2.0))
    }

    /// After a success the next failure starts at `min` again.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        assert_eq!(decide(Outcome::Status(204)), Decision::Accepted);
        assert_eq!(decide(Outcome::Status(200)), Decision::Accepted);
        assert_eq!(decide(Outcome::Status(429)), Decision::Retry);
        assert_eq!(decide(Outcome::Status(500)), Decision::Retry);
        assert_eq!(decide(Outcome::Status(503)), Decision::Retry);
        assert_eq!(decide(Outcome::Transport), Decision::Retry);
        assert_eq!(decide(Outcome::Status(400)), Decision::Reject);
        assert_eq!(decide(Outcome::Status(401)), Decision::Reject);
        assert_eq!(decide(Outcome::Status(404)), Decision::Reject);
        assert_eq!(decide(Outcome::Status(413)), Decision::Reject);
        assert_eq!(decide(Outcome::Status(301)), Decision::Reject);
    }

    #[test]
    fn backoff_doubles_with_jitter_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(300));
        assert_eq!(b.next_delay(0.0), Duration::from_millis(250));
        let d = b.next_delay(0.999_999);
        assert!(d > Duration::from_millis(999) && d <= Duration::from_millis(1000), "{d:?}");
        for _ in 0..20 {
            b.next_delay(0.5);
        }
        assert_eq!(b.next_delay(0.0), Duration::from_secs(150));
        assert!(b.next_delay(1.0) <= Duration::from_secs(300));
        b.reset();
        assert!(b.next_delay(1.0) <= Duration::from_millis(500));
    }
}
