//! The eBPF source: the kernel program attached to the ctnetlink socket, read
//! through its ring buffer with tokio's `AsyncFd`.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
// Not audited yet (being rewritten elsewhere): exempt from this module's lints.
#[cfg_attr(
    not(test),
    allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
pub(crate) mod program;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_support;

use std::os::fd::OwnedFd;

use aya::{
    maps::{MapData, RingBuf},
    Ebpf,
};
use tokio::io::unix::AsyncFd;

use self::program::{decode, Counters, KernelProgram};
use super::{socket, KernelCounters};
use crate::{config::SourceConfig, event::Event, filter::Prefilter};

#[derive(Debug, thiserror::Error)]
pub(crate) enum EbpfSourceError {
    #[error(transparent)]
    Program(#[from] program::ProgramError),
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error("cannot poll the ring buffer: {0}")]
    Poll(std::io::Error),
}

/// A loaded and attached kernel program with its ring buffer.
pub(crate) struct EbpfSource {
    ring: AsyncFd<RingBuf<MapData>>,
    counters: Counters,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Records that could not be turned into events (a kernel/daemon mismatch).
    pub decode_errors: u64,
    wakeup_bytes: u32,
    socket: OwnedFd,
    ebpf: Ebpf,
}

impl EbpfSource {
    /// Loads the program, attaches it to `socket` (bound in its namespace),
    /// then subscribes the socket: in this order, so no message is ever queued
    /// unfiltered.
    pub fn open(config: &SourceConfig, prefilter: &Prefilter, socket: OwnedFd) -> Result<Self, EbpfSourceError> {
        let mut program = KernelProgram::load(config, prefilter)?;
        program.attach(&socket)?;
        socket::subscribe(&socket, &prefilter.kinds())?;
        tracing::debug!(capture_comm = program.capture_comm, ring_bytes = config.ring_buffer_bytes, "kernel program attached");
        let (ring, counters, logger, ebpf) = program.into_parts();
        // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd owns it.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }.map_err(|e| EbpfSourceError::Poll(e.into()))?;
        let wakeup_bytes = program::wakeup_bytes(config.ring_buffer_bytes);
        Ok(Self { ring, counters, logger, decode_errors: 0, wakeup_bytes, socket, ebpf })
    }

    /// Writes a new pre-filter table into the kernel and joins any newly needed group.
    pub fn update_prefilter(&mut self, prefilter: &Prefilter) -> Result<(), EbpfSourceError> {
        program::write_policy(&mut self.ebpf, prefilter, self.wakeup_bytes)?;
        socket::subscribe(&self.socket, &prefilter.kinds())?;
        Ok(())
    }

    /// Waits until the kernel signals that records are waiting.
    pub async fn readable(&mut self) -> Result<(), EbpfSourceError> {
        let mut guard = self.ring.readable_mut().await.map_err(EbpfSourceError::Poll)?;
        guard.clear_ready();
        Ok(())
    }

    /// Moves every waiting record into `out` as events; returns how many were read.
    pub fn drain(&mut self, out: &mut Vec<Event>) -> usize {
        let offset = crate::time::monotonic_to_realtime_offset_ns();
        let read = drain_ring(self.ring.get_mut(), offset, out, &mut self.decode_errors);
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
        read
    }

    /// The kernel counters, summed over CPUs.
    pub fn counters(&self) -> KernelCounters {
        self.counters.read()
    }
}

/// Decodes every waiting record; undecodable ones are counted in `errors`.
pub(crate) fn drain_ring(ring: &mut RingBuf<MapData>, offset: i128, out: &mut Vec<Event>, errors: &mut u64) -> usize {
    let mut read = 0;
    while let Some(item) = ring.next() {
        read += 1;
        match decode(&item, offset) {
            Ok(ev) => out.push(ev),
            Err(err) => {
                *errors += 1;
                tracing::debug!(error = %err, "undecodable ring buffer record");
            }
        }
    }
    read
}
