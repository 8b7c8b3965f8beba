//! The load: TCP SYNs from distinct source ports (one new conntrack entry
//! each) sent through a raw `IP_HDRINCL` socket in the client namespace with
//! `sendmmsg`, paced to a target rate of new connections per second; the
//! [`Mode`] picks each connection's destination.
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

use super::{interrupt, mode::Mode, packet, process};

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
    pub mode: Mode,
    /// Destination port of every SYN.
    pub port: u16,
}

/// What was sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub packets: u64,
    pub elapsed: Duration,
    /// CPU of the sending thread: the kernel emits each NEW event (and runs
    /// every listener's socket filter) in this thread's `sendmmsg`.
    pub cpu: Duration,
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
    let mut batch = Batch::new();
    let chunk = match load.rate {
        Some(rate) => ((rate as u64 * TICK.as_micros() as u64 / 1_000_000) as usize).clamp(1, MAX_BATCH),
        None => MAX_BATCH,
    };
    let start = Instant::now();
    let cpu_start = process::thread_cpu_time()?;
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
    let cpu = process::thread_cpu_time()?.saturating_sub(cpu_start);
    Ok(Sent { packets: sent, elapsed: start.elapsed(), cpu, retries })
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
    /// Each packet's destination, for `msg_name` (routing follows it).
    dsts: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new() -> Self {
        // SAFETY: sockaddr_in, iovec and mmsghdr are plain C structs; all-zero is valid.
        let (addr, iov, msg): (libc::sockaddr_in, libc::iovec, libc::mmsghdr) = unsafe { std::mem::zeroed() };
        Self { packets: vec![[0; packet::PACKET_LEN]; MAX_BATCH], dsts: vec![addr; MAX_BATCH], iovs: vec![iov; MAX_BATCH], msgs: vec![msg; MAX_BATCH] }
    }

    /// Crafts packets for connections `first..first + n`.
    fn fill(&mut self, load: &Load, first: u64, n: usize) {
        for (k, (p, addr)) in self.packets[..n].iter_mut().zip(&mut self.dsts[..n]).enumerate() {
            let i = first + k as u64;
            let (src, port) = endpoint(load, i);
            let dst = SocketAddrV4::new(load.mode.destination(i), load.port);
            *p = packet::syn(src, port, dst, i as u32);
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(*dst.ip()).to_be();
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

    /// Points the first `n` message headers at their packet and destination.
    fn point(&mut self, n: usize) {
        for i in 0..n {
            self.iovs[i] = libc::iovec { iov_base: self.packets[i].as_mut_ptr().cast(), iov_len: packet::PACKET_LEN };
            let name = std::ptr::addr_of_mut!(self.dsts[i]).cast::<libc::c_void>();
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
        let load = Load { connections: 100_000, rate: None, sources: sources_for(100_000, Ipv4Addr::new(203, 0, 113, 1)), mode: Mode::Mixed, port: 9 };
        assert_eq!(endpoint(&load, 0), (Ipv4Addr::new(203, 0, 113, 1), 1024));
        assert_eq!(endpoint(&load, 64_511), (Ipv4Addr::new(203, 0, 113, 1), 65_535));
        assert_eq!(endpoint(&load, 64_512), (Ipv4Addr::new(203, 0, 113, 2), 1024));
    }

    #[test]
    fn each_packet_is_routed_to_its_own_destination() {
        let load = Load { connections: 20, rate: None, sources: vec![Ipv4Addr::new(203, 0, 113, 1)], mode: Mode::Mixed, port: 9 };
        let mut batch = Batch::new();
        batch.fill(&load, 0, 20);
        batch.point(20);
        for i in 0..20 {
            let header_dst = &batch.packets[i][16..20];
            let routed = u32::from_be(batch.dsts[i].sin_addr.s_addr).to_be_bytes();
            assert_eq!(header_dst, routed, "packet {i}");
            assert_eq!(header_dst, load.mode.destination(i as u64).octets(), "packet {i}");
            assert_eq!(batch.msgs[i].msg_hdr.msg_name, std::ptr::addr_of_mut!(batch.dsts[i]).cast::<libc::c_void>());
        }
    }
}
