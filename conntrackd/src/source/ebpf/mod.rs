//! The eBPF source: the kernel program, loaded once, attached to the
//! ctnetlink socket of every watched namespace, and its one ring buffer read
//! with tokio's `AsyncFd`. Each record carries the cookie of the socket the
//! program ran for; the source maps it back to the namespace.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
pub(crate) mod program;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_support;

use std::{collections::HashMap, os::fd::OwnedFd, sync::Arc};

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

use self::program::{decode, Counters, KernelProgram, Loaded};
use super::{local_addrs::LocalAddrs, socket, stats::StopReport, worker::Opened, KernelCounters, SourceConfig};
use crate::event::{prefilter::Prefilter, Event, EventType};

#[derive(Debug, thiserror::Error)]
pub(crate) enum EbpfSourceError {
    #[error(transparent)]
    Program(#[from] program::ProgramError),
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error("cannot poll the ring buffer: {0}")]
    Poll(std::io::Error),
}

/// One watched namespace's socket.
struct Attached {
    ino: u64,
    label: Arc<str>,
    local: LocalAddrs,
    events: u64,
    /// Kept open: closing it detaches the program from this namespace.
    socket: OwnedFd,
}

/// The loaded program, its ring buffer, and the sockets it is attached to.
pub(crate) struct EbpfSource {
    ring: AsyncFd<RingBuf<MapData>>,
    counters: Counters,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Records that could not be turned into events (a kernel/daemon mismatch).
    decode_errors: u64,
    /// Records whose cookie is no watched socket's.
    unattributed: u64,
    wakeup_bytes: u32,
    program: Loaded,
    /// Attached sockets by cookie, and the cookie of each namespace (inode).
    sockets: HashMap<u64, Attached>,
    cookies: HashMap<u64, u64>,
    /// Namespaces attached over the run.
    attached_total: usize,
    /// Whether events carry `netns`.
    label_events: bool,
}

impl EbpfSource {
    /// Loads the program (one verifier pass for the daemon's whole life).
    pub fn load(config: &SourceConfig, prefilter: &Prefilter) -> Result<Self, EbpfSourceError> {
        let program = KernelProgram::load(config, prefilter)?;
        tracing::debug!(capture_comm = program.capture_comm, ring_bytes = config.ring_buffer_bytes, "kernel program loaded");
        let (ring, counters, logger, program) = program.into_parts();
        // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd owns it.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }.map_err(|e| EbpfSourceError::Poll(e.into()))?;
        Ok(Self {
            ring,
            counters,
            logger,
            decode_errors: 0,
            unattributed: 0,
            wakeup_bytes: program::wakeup_bytes(config.ring_buffer_bytes),
            program,
            sockets: HashMap::new(),
            cookies: HashMap::new(),
            attached_total: 0,
            label_events: config.label_events,
        })
    }

    /// Attaches the program to a namespace's socket, then subscribes it: in
    /// this order, so no message is ever queued unfiltered. On error the
    /// socket is closed (and the namespace not watched).
    pub fn attach(&mut self, opened: Opened, kinds: &[EventType]) -> Result<(), EbpfSourceError> {
        self.program.attach(&opened.socket)?;
        socket::subscribe(&opened.socket, kinds)?;
        let cookie = socket::cookie(&opened.socket)?;
        if let Some(old) = self.cookies.insert(opened.ino, cookie) {
            self.sockets.remove(&old);
        }
        self.sockets.insert(cookie, Attached { ino: opened.ino, label: opened.label, local: opened.local, events: 0, socket: opened.socket });
        self.attached_total += 1;
        Ok(())
    }

    /// Closes a namespace's socket; returns its label when it was attached.
    /// Drain first: records of it still in the ring would be unattributed.
    pub fn release(&mut self, ino: u64) -> Option<Arc<str>> {
        let cookie = self.cookies.remove(&ino)?;
        self.sockets.remove(&cookie).map(|a| a.label)
    }

    pub fn set_local(&mut self, ino: u64, local: LocalAddrs) {
        if let Some(a) = self.cookies.get(&ino).and_then(|c| self.sockets.get_mut(c)) {
            a.local = local;
        }
    }

    /// Attached namespaces: inode, label, events delivered.
    pub fn namespaces(&self) -> impl Iterator<Item = (u64, &Arc<str>, u64)> {
        self.sockets.values().map(|a| (a.ino, &a.label, a.events))
    }

    pub fn attached(&self) -> usize {
        self.sockets.len()
    }

    /// Writes a new pre-filter table into the kernel and joins any newly needed group on every socket.
    pub fn update_prefilter(&mut self, prefilter: &Prefilter) -> Result<(), EbpfSourceError> {
        self.program.write_policy(prefilter, self.wakeup_bytes)?;
        let kinds = prefilter.kinds();
        for a in self.sockets.values() {
            socket::subscribe(&a.socket, &kinds)?;
        }
        Ok(())
    }

    /// Waits until the kernel signals that records are waiting.
    pub async fn readable(&mut self) -> Result<(), EbpfSourceError> {
        let mut guard = self.ring.readable_mut().await.map_err(EbpfSourceError::Poll)?;
        guard.clear_ready();
        Ok(())
    }

    /// Moves every waiting record into `out` as an event of its namespace; returns how many were read.
    pub fn drain(&mut self, out: &mut Vec<Event>) -> usize {
        let offset = crate::event::time::monotonic_to_realtime_offset_ns();
        let mut read = 0;
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            read += 1;
            match decode(&item, offset) {
                Ok((cookie, mut ev)) => {
                    match self.sockets.get_mut(&cookie) {
                        Some(a) => {
                            a.events += 1;
                            if self.label_events {
                                ev.netns = Some(Arc::clone(&a.label));
                            }
                            if ev.kind == EventType::New {
                                ev.local_origin = Some(a.local.contains(ev.orig.src));
                            }
                        }
                        None => self.unattributed += 1,
                    }
                    out.push(ev);
                }
                Err(err) => {
                    self.decode_errors += 1;
                    tracing::debug!(error = %err, "undecodable ring buffer record");
                }
            }
        }
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
        read
    }

    /// The kernel counters (summed over CPUs; one set for every namespace) and the source's own.
    pub fn report(&self) -> StopReport {
        StopReport {
            counters: self.counters(),
            decode_errors: self.decode_errors,
            unattributed: self.unattributed,
            namespaces: self.attached_total,
            ..StopReport::default()
        }
    }

    fn counters(&self) -> KernelCounters {
        self.counters.read()
    }
}
