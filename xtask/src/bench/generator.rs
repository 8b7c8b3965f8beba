//! The load: TCP SYNs from distinct source ports (one new conntrack entry
//! each) sent through a raw `IP_HDRINCL` socket in the client namespace with
//! `sendmmsg`, paced to a target rate of new connections per second.
use std::{
    fs::File,
    io,
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{interrupt, packet};

/// Source ports used per source address: 1024..=65535.
pub(crate) const PORTS_PER_SOURCE: u32 = 64_512;
const FIRST_PORT: u32 = 1024;
/// Most packets per `sendmmsg` (the batch at the maximum rate).
const MAX_BATCH: usize = 256;
/// Paced runs send one batch per tick of this length.
const TICK: Duration = Duration::from_millis(1);
/// Consecutive `ENOBUFS`/`EAGAIN` answers tolerated before giving up.
const MAX_RETRIES: u32 = 1_000_000;

/// What to send.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub connections: u32,
    /// New connections per second; `None` sends as fast as possible.
    pub rate: Option<u32>,
    pub sources: Vec<Ipv4Addr>,
    pub dst: SocketAddrV4,
}

/// What was sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub packets: u64,
    pub elapsed: Duration,
    /// `sendmmsg` calls answered with ENOBUFS/EAGAIN and retried.
    pub retries: u64,
}

impl Sent {
    pub fn rate(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The client addresses needed for `connections` distinct source ports.
pub(crate) fn sources_for(connections: u32, first: Ipv4Addr) -> Vec<Ipv4Addr> {
    let count = connections.div_ceil(PORTS_PER_SOURCE).max(1);
    (0..count).map(|i| Ipv4Addr::from(u32::from(first) + i)).collect()
}

/// Sends the load from a raw socket opened inside the namespace at `netns`.
pub(crate) fn run(netns: &Path, load: &Load) -> Result<Sent> {
    if load.connections as usize > load.sources.len() * PORTS_PER_SOURCE as usize {
        bail!("{} connections need more than {} source addresses", load.connections, load.sources.len());
    }
    let socket = raw_socket_in(netns)?;
    let mut batch = Batch::new(load.dst);
    let chunk = match load.rate {
        Some(rate) => ((rate as u64 * TICK.as_micros() as u64 / 1_000_000) as usize).clamp(1, MAX_BATCH),
        None => MAX_BATCH,
    };
    let start = Instant::now();
    let total = u64::from(load.connections);
    let (mut sent, mut retries) = (0u64, 0u64);
    while sent < total {
        interrupt::check()?;
        let n = chunk.min((total - sent) as usize);
        if let Some(rate) = load.rate {
            pace(start, sent + n as u64, rate);
        }
        batch.fill(load, sent, n);
        retries += batch.send(&socket, n).context("sending the load")?;
        sent += n as u64;
    }
    Ok(Sent { packets: sent, elapsed: start.elapsed(), retries })
}

/// Sleeps until the `count`-th packet is due at `rate` per second.
fn pace(start: Instant, count: u64, rate: u32) {
    let due = start + Duration::from_secs_f64(count as f64 / f64::from(rate));
    let now = Instant::now();
    if due > now {
        thread::sleep(due - now);
    }
}

/// The source endpoint of connection `i`.
fn endpoint(load: &Load, i: u64) -> (Ipv4Addr, u16) {
    let per = u64::from(PORTS_PER_SOURCE);
    let addr = load.sources[(i / per) as usize];
    (addr, (u64::from(FIRST_PORT) + i % per) as u16)
}

/// Opens `socket(AF_INET, SOCK_RAW, IPPROTO_RAW)` (implies `IP_HDRINCL`) from a
/// short-lived thread that first joins the namespace; the socket stays bound
/// to that namespace whichever thread then uses it.
fn raw_socket_in(netns: &Path) -> Result<OwnedFd> {
    let ns = File::open(netns).with_context(|| format!("opening {}", netns.display()))?;
    let opener = thread::spawn(move || -> io::Result<OwnedFd> {
        // SAFETY: `ns` is an open namespace file; setns changes only this thread.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    });
    match opener.join() {
        Ok(result) => result.with_context(|| format!("opening a raw socket in {}", netns.display())),
        Err(_) => bail!("the thread opening the raw socket panicked"),
    }
}

/// Reused packet buffers for one `sendmmsg` call.
struct Batch {
    packets: Vec<[u8; packet::PACKET_LEN]>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    dst: libc::sockaddr_in,
    dst_v4: SocketAddrV4,
}

impl Batch {
    fn new(dst: SocketAddrV4) -> Self {
        // SAFETY: sockaddr_in, iovec and mmsghdr are plain C structs; all-zero is valid.
        let (mut addr, iov, msg): (libc::sockaddr_in, libc::iovec, libc::mmsghdr) = unsafe { std::mem::zeroed() };
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(*dst.ip()).to_be();
        Self { packets: vec![[0; packet::PACKET_LEN]; MAX_BATCH], iovs: vec![iov; MAX_BATCH], msgs: vec![msg; MAX_BATCH], dst: addr, dst_v4: dst }
    }

    /// Crafts packets for connections `first..first + n`.
    fn fill(&mut self, load: &Load, first: u64, n: usize) {
        for (k, p) in self.packets[..n].iter_mut().enumerate() {
            let i = first + k as u64;
            let (src, port) = endpoint(load, i);
            *p = packet::syn(src, port, self.dst_v4, i as u32);
        }
    }

    /// Sends the first `n` packets; returns how many calls had to be retried.
    fn send(&mut self, socket: &OwnedFd, n: usize) -> io::Result<u64> {
        self.point(n);
        let (mut done, mut retries, mut streak) = (0usize, 0u64, 0u32);
        while done < n {
            // SAFETY: msgs[done..n] point at live buffers in `self` (set by `point`).
            let r = unsafe { libc::sendmmsg(socket.as_raw_fd(), self.msgs[done..].as_mut_ptr(), (n - done) as u32, 0) };
            if r >= 0 {
                done += r as usize;
                streak = 0;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) if streak < MAX_RETRIES => {
                    retries += 1;
                    streak += 1;
                    thread::yield_now();
                }
                _ => return Err(err),
            }
        }
        Ok(retries)
    }

    /// Points the first `n` message headers at their packet and the destination.
    fn point(&mut self, n: usize) {
        let name = std::ptr::addr_of_mut!(self.dst).cast::<libc::c_void>();
        for i in 0..n {
            self.iovs[i] = libc::iovec { iov_base: self.packets[i].as_mut_ptr().cast(), iov_len: packet::PACKET_LEN };
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = name;
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cover_the_ports() {
        let first = Ipv4Addr::new(203, 0, 113, 1);
        assert_eq!(sources_for(20_000, first), vec![first]);
        assert_eq!(sources_for(100_000, first), vec![first, Ipv4Addr::new(203, 0, 113, 2)]);
    }

    #[test]
    fn endpoints_are_distinct_across_sources() {
        let load = Load {
            connections: 100_000,
            rate: None,
            sources: sources_for(100_000, Ipv4Addr::new(203, 0, 113, 1)),
            dst: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 9),
        };
        assert_eq!(endpoint(&load, 0), (Ipv4Addr::new(203, 0, 113, 1), 1024));
        assert_eq!(endpoint(&load, 64_511), (Ipv4Addr::new(203, 0, 113, 1), 65_535));
        assert_eq!(endpoint(&load, 64_512), (Ipv4Addr::new(203, 0, 113, 2), 1024));
    }
}
