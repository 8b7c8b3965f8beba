//! Sources of conntrack events from a ctnetlink socket in every watched
//! network namespace: `ebpf` (one kernel program, attached to all of them,
//! parses and pre-filters; records arrive through one ring buffer) or
//! `netlink` (each socket read and decoded in userspace, one task per
//! namespace). `auto` tries eBPF and falls back to netlink, saying why. The
//! namespace worker (`worker.rs`) opens the sockets and, with
//! `netns = ["all"]`, finds namespaces as they come and go (`discover.rs`).
//! `config.rs` holds the `[source]` keys and their validation.
// Audited, with every submodule: nothing read from the kernel, a file, /proc
// or the command line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
pub(crate) mod config;
pub(crate) mod discover;
pub(crate) mod ebpf;
pub(crate) mod local_addrs;
pub(crate) mod netlink;
pub(crate) mod netns;
pub(crate) mod socket;
pub(crate) mod stats;
pub(crate) mod sysctl;
#[cfg(test)]
pub(crate) mod testmsg;

mod manager;
mod tasks;
mod worker;

pub(crate) use config::{RawSource, SourceConfig, SourceConfigError};
pub(crate) use manager::Sources;
pub(crate) use stats::{Snapshots, StopReport};

use conntrackd_common::{Counter, COUNTER_COUNT};

crate::schema::choice! {
    /// Which source reads the ctnetlink socket.
    pub(crate) enum Kind { Auto = "auto", Ebpf = "ebpf", Netlink = "netlink" }
}

/// Outcome counters summed over CPUs (kernel) or kept in userspace (netlink),
/// indexed like [`Counter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KernelCounters(pub [u64; COUNTER_COUNT as usize]);

impl KernelCounters {
    pub fn get(&self, c: Counter) -> u64 {
        // Every `Counter` is below COUNTER_COUNT, the array's length.
        self.0.get(c as usize).copied().unwrap_or(0)
    }

    pub fn add(&mut self, other: &KernelCounters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// `key=value` pairs for a log line.
    pub fn describe(&self) -> String {
        Counter::ALL.iter().map(|&c| format!("{}={}", c.name(), self.get(c))).collect::<Vec<_>>().join(" ")
    }
}
