//! What the sources count, published for /metrics, /healthz and the final
//! log line: outcome counters in total (the kernel program keeps one set for
//! every namespace), and per watched namespace the events it delivered.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use conntrackd_common::Counter;

use super::{netlink::Overflow, KernelCounters};

/// Counters of one reader (the eBPF source, or one netlink source), or of several summed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StopReport {
    pub counters: KernelCounters,
    /// Ring buffer records that could not be decoded.
    pub decode_errors: u64,
    /// Records whose socket cookie matched no watched namespace (delivered without `netns`).
    pub unattributed: u64,
    pub overflow: Overflow,
    /// Namespaces watched during the run.
    pub namespaces: usize,
}

impl StopReport {
    pub fn add(&mut self, other: &StopReport) {
        self.counters.add(&other.counters);
        self.decode_errors += other.decode_errors;
        self.unattributed += other.unattributed;
        self.overflow.overflows += other.overflow.overflows;
        self.overflow.lost += other.overflow.lost;
        self.namespaces += other.namespaces;
    }
}

/// A watched namespace as /metrics shows it.
#[derive(Debug, Clone)]
pub(crate) struct NamespaceStats {
    pub label: Arc<str>,
    /// Events it delivered to the pipeline.
    pub events: u64,
}

/// Everything the sources publish.
#[derive(Debug, Default)]
pub(crate) struct SourceStats {
    /// Readers that stopped (netlink sources of released namespaces), summed.
    pub retired: StopReport,
    /// The current counters of each running reader, by key (0 = the eBPF
    /// source; a netlink source by its namespace's inode).
    pub live: HashMap<u64, StopReport>,
    /// Attached namespaces by inode.
    pub namespaces: BTreeMap<u64, NamespaceStats>,
    /// Namespace scans (`netns = ["all"]`) and the CPU time they took.
    pub rescans: u64,
    pub rescan_cpu_ns: u64,
}

impl SourceStats {
    /// Every reader's counters, summed.
    pub fn total(&self) -> StopReport {
        let mut total = self.retired;
        for r in self.live.values() {
            total.add(r);
        }
        total
    }

    /// A reader stopped: its counters move to the retired sum.
    pub fn retire(&mut self, key: u64, report: &StopReport) {
        self.live.remove(&key);
        self.retired.add(report);
    }
}

/// Shared between the source tasks, the namespace worker and /metrics.
pub(crate) type Snapshots = Arc<Mutex<SourceStats>>;

/// Runs `f` on the stats (a poisoned lock is still usable: the data are counters).
pub(crate) fn with<T>(stats: &Snapshots, f: impl FnOnce(&mut SourceStats) -> T) -> T {
    f(&mut stats.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Warns about losses since the last report.
pub(crate) fn report_losses(now: &StopReport, last: &mut StopReport, netns: Option<&str>) {
    let netns = netns.unwrap_or("all");
    let ring_full = now.counters.get(Counter::RingFull);
    if ring_full > last.counters.get(Counter::RingFull) {
        let lost = ring_full - last.counters.get(Counter::RingFull);
        tracing::warn!(netns, lost, total = ring_full, "kernel ring buffer was full: events lost; raise source.ring_buffer_bytes");
    }
    if now.overflow.lost > last.overflow.lost {
        let lost = now.overflow.lost - last.overflow.lost;
        tracing::warn!(netns, lost, total = now.overflow.lost, "netlink receive buffer overflowed: events lost; raise source.receive_buffer_bytes");
    }
    let bad = |c: &KernelCounters| c.get(Counter::ParseError) + c.get(Counter::WalkLimit);
    if bad(&now.counters) > bad(&last.counters) {
        tracing::warn!(netns, new = bad(&now.counters) - bad(&last.counters), total = bad(&now.counters), "malformed ctnetlink messages");
    }
    if now.unattributed > last.unattributed {
        tracing::warn!(
            new = now.unattributed - last.unattributed,
            total = now.unattributed,
            "kernel records from a socket that is not watched (a namespace just released?): delivered without netns"
        );
    }
    *last = *now;
}
