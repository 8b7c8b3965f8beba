//! Sources of conntrack events, one per watched network namespace: `ebpf`
//! (the kernel program parses and pre-filters, records arrive through a ring
//! buffer) or `netlink` (the same socket read and decoded in userspace).
//! `auto` tries eBPF and falls back to netlink, saying why. Each namespace's
//! source runs as its own task and sends batches to the pipeline.
pub(crate) mod ebpf;
pub(crate) mod local_addrs;
pub(crate) mod netlink;
pub(crate) mod netns;
pub(crate) mod socket;
pub(crate) mod sysctl;
#[cfg(test)]
pub(crate) mod testmsg;

mod manager;

pub(crate) use manager::{Snapshots, Sources, StopReport};

use conntrackd_common::{Counter, COUNTER_COUNT};

/// Which source reads the ctnetlink socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Auto,
    Ebpf,
    Netlink,
}

/// Outcome counters summed over CPUs (kernel) or kept in userspace (netlink),
/// indexed like [`Counter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KernelCounters(pub [u64; COUNTER_COUNT as usize]);

impl KernelCounters {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
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
