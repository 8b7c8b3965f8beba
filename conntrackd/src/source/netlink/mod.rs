//! The netlink source: the same ctnetlink socket without BPF. Messages are
//! read and decoded in userspace (`decode.rs`), and the pre-filter table is
//! applied here, with the same outcome counters the kernel program keeps.
//! Receive-buffer overflows (ENOBUFS) are counted, with the kernel's own drop
//! count for the socket, and reading goes on.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
pub(crate) mod decode;
#[cfg(test)]
mod tests;

use std::os::fd::{AsRawFd, OwnedFd};

use conntrackd_common::Counter;
use tokio::io::{unix::AsyncFd, Interest};

use super::{socket, KernelCounters};
use crate::event::{prefilter::Prefilter, Event};

/// Largest message we accept; ctnetlink events are far smaller.
const RECV_BUFFER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum NetlinkSourceError {
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error("cannot poll the netlink socket: {0}")]
    Poll(std::io::Error),
    #[error("reading the netlink socket failed: {0}")]
    Read(std::io::Error),
}

/// Userspace-side counters of the netlink source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Overflow {
    /// ENOBUFS errors: the receive buffer overflowed at least once each time.
    pub overflows: u64,
    /// Messages the kernel dropped for this socket (SO_MEMINFO drops, as `/proc/net/netlink` shows).
    pub lost: u64,
}

pub(crate) struct NetlinkSource {
    fd: AsyncFd<OwnedFd>,
    prefilter: Prefilter,
    buf: Vec<u8>,
    counters: KernelCounters,
    overflow: Overflow,
}

impl NetlinkSource {
    /// Takes a bound socket (opened in its namespace), sizes its buffer and subscribes it.
    pub fn open(socket: OwnedFd, prefilter: &Prefilter, rcvbuf: usize, reliable: bool) -> Result<Self, NetlinkSourceError> {
        socket::set_receive_buffer(&socket, rcvbuf)?;
        if reliable {
            socket::set_reliable(&socket)?;
        }
        socket::subscribe(&socket, &prefilter.kinds())?;
        // SAFETY: the OwnedFd stays open and owned by the AsyncFd for its whole life.
        let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(|e| NetlinkSourceError::Poll(e.into()))?;
        Ok(Self { fd, prefilter: *prefilter, buf: vec![0; RECV_BUFFER], counters: KernelCounters::default(), overflow: Overflow::default() })
    }

    pub async fn readable(&mut self) -> Result<(), NetlinkSourceError> {
        let mut guard = self.fd.readable_mut().await.map_err(NetlinkSourceError::Poll)?;
        guard.clear_ready();
        Ok(())
    }

    /// Reads every waiting message; kept events go to `out`. Returns how many messages were read.
    pub fn drain(&mut self, out: &mut Vec<Event>) -> Result<usize, NetlinkSourceError> {
        let offset = crate::event::time::monotonic_to_realtime_offset_ns();
        let mut read = 0;
        loop {
            // SAFETY: valid fd and buffer; MSG_DONTWAIT never blocks.
            let n = unsafe { libc::recv(self.fd.get_ref().as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), libc::MSG_DONTWAIT) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(read),
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => self.record_overflow(),
                    _ => return Err(NetlinkSourceError::Read(err)),
                }
                continue;
            }
            // n >= 0 here.
            read += self.messages(usize::try_from(n).unwrap_or(0), offset, out);
        }
    }

    /// Handles every netlink message in the first `len` bytes of the buffer.
    fn messages(&mut self, len: usize, offset: i128, out: &mut Vec<Event>) -> usize {
        // recv(2) never returns more than the buffer holds; `get` keeps that a fact here.
        let mut count = 0;
        for msg in split_messages(self.buf.get(..len).unwrap_or(&self.buf)) {
            count += 1;
            bump(&mut self.counters, Counter::Seen);
            match decode::decode(msg, &self.prefilter) {
                Ok(mut rec) => {
                    rec.ktime_ns = crate::event::time::monotonic_ns();
                    match crate::event::Event::from_record(&rec, offset) {
                        Ok(ev) => {
                            bump(&mut self.counters, Counter::Submitted);
                            out.push(ev);
                        }
                        Err(_) => bump(&mut self.counters, Counter::ParseError),
                    }
                }
                Err(outcome) => bump(&mut self.counters, outcome),
            }
        }
        count
    }

    fn record_overflow(&mut self) {
        self.overflow.overflows += 1;
        let lost = socket::drops(self.fd.get_ref()).unwrap_or(self.overflow.lost);
        tracing::warn!(
            lost_total = lost,
            new = lost.saturating_sub(self.overflow.lost),
            overflows = self.overflow.overflows,
            "netlink receive buffer overflowed: events were lost; raise source.receive_buffer_bytes or use kind = \"ebpf\""
        );
        self.overflow.lost = lost;
    }

    /// Applies a new pre-filter table and joins any newly needed group.
    pub fn update_prefilter(&mut self, prefilter: &Prefilter) -> Result<(), NetlinkSourceError> {
        socket::subscribe(self.fd.get_ref(), &prefilter.kinds())?;
        self.prefilter = *prefilter;
        Ok(())
    }

    /// Overflow counters with the kernel's current drop count for the socket
    /// (drops go on after the one ENOBUFS that reports a congestion episode).
    pub fn overflow(&self) -> Overflow {
        let lost = socket::drops(self.fd.get_ref()).map_or(self.overflow.lost, |d| d.max(self.overflow.lost));
        Overflow { lost, ..self.overflow }
    }

    /// Outcome counters, kept in userspace like the kernel program keeps them.
    pub fn counters(&self) -> KernelCounters {
        self.counters
    }
}

/// Counts one message under `outcome` (every [`Counter`] has a slot).
fn bump(counters: &mut KernelCounters, outcome: Counter) {
    if let Some(n) = counters.0.get_mut(outcome as usize) {
        *n += 1;
    }
}

/// The netlink messages of one datagram. Each starts with a 16-byte
/// nlmsghdr whose first u32 is the message length; messages are 4-byte
/// aligned (NLMSG_ALIGN). A length shorter than the header or past the data
/// makes the rest one (malformed) message; a tail shorter than a header is ignored.
pub(crate) fn split_messages(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let &[l0, l1, l2, l3, ..] = rest.first_chunk::<16>()?;
        let msg_len = usize::try_from(u32::from_ne_bytes([l0, l1, l2, l3])).unwrap_or(usize::MAX);
        let end = if msg_len < 16 || msg_len > rest.len() { rest.len() } else { msg_len };
        let (msg, _) = rest.split_at_checked(end)?;
        rest = rest.get((end.saturating_add(3) & !3)..).unwrap_or_default();
        Some(msg)
    })
}
