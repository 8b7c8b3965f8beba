//! The reload test's figures ([`super::reload_test`]): what it measured, the
//! one-paragraph summary it prints, and the expectations that failed.
use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use super::generator::Sent;

/// What one run measured.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    /// Connections asked of the generator, and SIGHUPs sent.
    pub requested: u32,
    pub sighups: u32,
    pub sent: Option<Sent>,
    /// Entries to the load's destination after the load (the generator's self-check).
    pub created: u64,
    /// `conntrackd_events_read_total` once the daemon caught up.
    pub read: u64,
    /// NEW rows for the load's destination, and distinct flows among them.
    pub stored: u64,
    pub distinct: u64,
    /// Any other rows (there should be none).
    pub other_rows: u64,
    /// The numbers on the daemon's `conntrackd stopped` line.
    pub counters: BTreeMap<String, u64>,
    pub reloads: u64,
    pub reload_failures: u64,
    /// Longest time `events_read_total` did not grow while the load ran.
    pub longest_pause: Duration,
    pub spool_left: usize,
    /// Whether the Loki sink went idle before the drain limit.
    pub drained: bool,
    pub drain: Duration,
    pub wall: Duration,
}

impl Figures {
    fn counter(&self, name: &str) -> Option<u64> {
        self.counters.get(name).copied()
    }

    pub fn describe(&self) -> String {
        let c = |name: &str| self.counter(name).map_or("missing".to_string(), |v| v.to_string());
        let mut out = String::from("reload test:");
        if let Some(s) = &self.sent {
            let _ = write!(out, " generated {} SYNs in {:.1} s ({:.0}/s),", s.packets, s.elapsed.as_secs_f64(), s.rate());
        }
        let _ = write!(
            out,
            " {} entries created, {} read by the daemon; {} SIGHUPs sent, {} reloads applied ({} failed); longest pause of the event path {} ms;\n  \
             ring_full={} overflows={} lost={} loki.written={} loki.dropped_queue_full={} loki.dropped_write_error={};\n  \
             VictoriaLogs: stored={} distinct={} duplicates={} missing={} (read by the daemon but neither stored nor counted as dropped: {}) \
             other_rows={}; spool files left={}; drain {:.1} s; wall time {:.1} s",
            self.created,
            self.read,
            self.sighups,
            self.reloads,
            self.reload_failures,
            self.longest_pause.as_millis(),
            c("ring_full"),
            c("overflows"),
            c("lost"),
            c("loki.written"),
            c("loki.dropped_queue_full"),
            c("loki.dropped_write_error"),
            self.stored,
            self.distinct,
            self.stored.saturating_sub(self.distinct),
            self.created.saturating_sub(self.distinct),
            self.unaccounted(),
            self.other_rows,
            self.spool_left,
            self.drain.as_secs_f64(),
            self.wall.as_secs_f64()
        );
        out
    }

    /// Events the daemon read (its rules keep all of them) that VictoriaLogs
    /// does not have and no drop counter accounts for.
    fn unaccounted(&self) -> u64 {
        let dropped = self.counter("loki.dropped_queue_full").unwrap_or(0) + self.counter("loki.dropped_write_error").unwrap_or(0);
        self.read.saturating_sub(self.distinct + dropped)
    }

    /// Every expectation that does not hold, one line each.
    pub fn failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        let mut expect = |ok: bool, what: String| {
            if !ok {
                failed.push(what);
            }
        };
        expect(
            self.created == u64::from(self.requested),
            format!("the generator created {} of {} entries: the scenario is void", self.created, self.requested),
        );
        for (name, what) in [
            ("ring_full", "events lost in a full ring buffer"),
            ("overflows", "source overflows"),
            ("lost", "events the kernel dropped"),
            ("loki.dropped_queue_full", "events dropped by a full Loki queue"),
            ("loki.dropped_write_error", "events the Loki sink lost"),
        ] {
            let n = self.counter(name);
            expect(n == Some(0), format!("{name}={}: {what}", n.map_or("missing from the stopped line".into(), |n| n.to_string())));
        }
        expect(
            self.reloads == u64::from(self.sighups) && self.reload_failures == 0,
            format!("{} of {} reloads applied, {} failed", self.reloads, self.sighups, self.reload_failures),
        );
        expect(self.stored.saturating_sub(self.distinct) == 0, format!("{} duplicates stored", self.stored.saturating_sub(self.distinct)));
        expect(
            self.distinct == self.created,
            format!("{} of {} events stored ({} missing)", self.distinct, self.created, self.created.saturating_sub(self.distinct)),
        );
        expect(
            self.counter("loki.written") == Some(self.stored),
            format!("loki.written={:?} but VictoriaLogs stored {}", self.counter("loki.written"), self.stored),
        );
        expect(
            self.drained,
            format!("the Loki sink was still busy when the test stopped waiting ({:.0} s): the machine is too slow or busy", self.drain.as_secs_f64()),
        );
        expect(self.spool_left == 0, format!("{} files left in the spool after it drained", self.spool_left));
        failed
    }
}
