//! Run-time evaluation errors of CEL rules: a rule whose expression fails on
//! an event (`1 / (destination.port - 443) > 0` on port 443, `int("x")`)
//! does not match that event. Each failure is counted per rule (the
//! `conntrackd_rule_evaluation_errors_total` metric) and logged at most once a
//! minute per rule, with how many were not logged since.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use super::cel::EvalError;

/// At most one warning per rule per interval.
pub(crate) const WARN_INTERVAL: Duration = Duration::from_secs(60);

const NEVER: u64 = u64::MAX;

#[derive(Debug)]
struct PerRule {
    count: AtomicU64,
    /// Milliseconds since `EvalErrors::start` of the last warning.
    last_warn_ms: AtomicU64,
    /// Failures since the last warning that were not logged.
    unlogged: AtomicU64,
}

/// The counters of one compiled rule list (reset when the rules are reloaded).
#[derive(Debug)]
pub(crate) struct EvalErrors {
    start: Instant,
    rules: Vec<PerRule>,
}

impl Default for EvalErrors {
    fn default() -> Self {
        Self::new(0)
    }
}

impl EvalErrors {
    pub fn new(rules: usize) -> Self {
        let per_rule = || PerRule { count: AtomicU64::new(0), last_warn_ms: AtomicU64::new(NEVER), unlogged: AtomicU64::new(0) };
        Self { start: Instant::now(), rules: (0..rules).map(|_| per_rule()).collect() }
    }

    /// Counts a failure of rule `index` (0-based) and logs it unless it logged one less than a minute ago.
    pub fn record(&self, index: usize, text: &str, error: &EvalError) {
        let Some(rule) = self.rules.get(index) else { return };
        rule.count.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NEVER - 1);
        let last = rule.last_warn_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(WARN_INTERVAL.as_millis()).unwrap_or(NEVER);
        if last != NEVER && now.saturating_sub(last) < interval {
            rule.unlogged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        rule.last_warn_ms.store(now, Ordering::Relaxed);
        let unlogged = rule.unlogged.swap(0, Ordering::Relaxed);
        tracing::warn!(
            rule = index + 1,
            text,
            error = %error,
            not_logged_since_last = unlogged,
            total = rule.count.load(Ordering::Relaxed),
            "a rule failed on an event and does not match it (logged at most once a minute per rule)"
        );
    }

    /// The failures of each rule, in rule order.
    pub fn counts(&self) -> Vec<u64> {
        self.rules.iter().map(|r| r.count.load(Ordering::Relaxed)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_failure_and_warns_once_per_interval() {
        let mut errors = EvalErrors::new(2);
        // Pretend the rules were loaded two minutes ago.
        errors.start = Instant::now().checked_sub(Duration::from_secs(120)).unwrap_or(errors.start);
        let e = EvalError("boom".into());
        for _ in 0..5 {
            errors.record(1, "log x", &e);
        }
        errors.record(7, "no such rule", &e);
        assert_eq!(errors.counts(), vec![0, 5]);
        let rule = &errors.rules[1];
        assert_eq!(rule.unlogged.load(Ordering::Relaxed), 4, "the first was logged, the next four within the minute were not");
        // A minute after the last warning the next failure is logged, and the unlogged count restarts.
        let last = rule.last_warn_ms.load(Ordering::Relaxed);
        rule.last_warn_ms.store(last.saturating_sub(WARN_INTERVAL.as_millis() as u64 + 1), Ordering::Relaxed);
        errors.record(1, "log x", &e);
        assert_eq!((rule.unlogged.load(Ordering::Relaxed), errors.counts()[1]), (0, 6));
    }
}
