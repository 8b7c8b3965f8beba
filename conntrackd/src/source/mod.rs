//! Sources of conntrack events. `ebpf` reads records the kernel program wrote
//! into a ring buffer after parsing and pre-filtering each ctnetlink message.
pub(crate) mod ebpf;
pub(crate) mod socket;
pub(crate) mod sysctl;
#[cfg(test)]
pub(crate) mod testmsg;

use conntrackd_common::{Counter, COUNTER_COUNT};

/// Kernel-side counters summed over CPUs, indexed like [`Counter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KernelCounters(pub [u64; COUNTER_COUNT as usize]);

impl KernelCounters {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    /// `key=value` pairs for a log line.
    pub fn describe(&self) -> String {
        Counter::ALL.iter().map(|&c| format!("{}={}", c.name(), self.get(c))).collect::<Vec<_>>().join(" ")
    }
}
