//! Test helpers: load the kernel program and run single messages through it.
use std::time::Duration;

use conntrackd_common::Counter;

use aya::maps::{MapData, RingBuf};

use super::program::{decode, KernelProgram};
use crate::{
    event::{prefilter::Prefilter, Event},
    source::{KernelCounters, Kind, SourceConfig},
};

/// The program with the default rules' table; fails clearly without root.
pub(crate) fn load() -> KernelProgram {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "kernel program tests need root (CAP_BPF): run `sudo cargo xtask test`");
    let config = SourceConfig {
        ring_buffer_bytes: 1 << 20,
        drain_interval: Duration::from_millis(50),
        kernel_prefilter: true,
        kind: Kind::Ebpf,
        reliable: false,
        receive_buffer_bytes: 1 << 20,
        set_sysctls: false,
        netns: vec![None],
        all_namespaces: false,
        label_events: false,
    };
    KernelProgram::load(&config, &Prefilter::tcp_to_public()).expect("load the kernel program")
}

/// Decodes every waiting record; undecodable ones are counted in `errors`.
pub(crate) fn drain_ring(ring: &mut RingBuf<MapData>, offset: i128, out: &mut Vec<Event>, errors: &mut u64) -> usize {
    let mut read = 0;
    while let Some(item) = ring.next() {
        read += 1;
        match decode(&item, offset) {
            Ok((_, ev)) => out.push(ev),
            Err(_) => *errors += 1,
        }
    }
    read
}

/// Runs one message; returns what each counter gained and the events written.
pub(crate) fn run(p: &mut KernelProgram, msg: &[u8]) -> (KernelCounters, Vec<Event>) {
    let before = p.counters.read();
    assert_eq!(p.test_run(msg).expect("BPF_PROG_TEST_RUN"), 0, "the filter must never queue a message");
    let after = p.counters.read();
    let mut delta = KernelCounters::default();
    for (i, d) in delta.0.iter_mut().enumerate() {
        *d = after.0[i] - before.0[i];
    }
    let (mut events, mut errors) = (Vec::new(), 0);
    drain_ring(&mut p.ring, 0, &mut events, &mut errors);
    assert_eq!(errors, 0, "undecodable record");
    (delta, events)
}

/// The event the program emits for one message, or the outcome that stopped it.
pub(crate) fn run_one(p: &mut KernelProgram, msg: &[u8]) -> Result<Event, Counter> {
    let (delta, mut events) = run(p, msg);
    match events.pop() {
        Some(ev) => Ok(ev),
        None => Err(Counter::ALL.iter().skip(1).copied().find(|&c| delta.get(c) == 1).unwrap_or(Counter::Seen)),
    }
}
