//! Creates conntrack entries fast with ctnetlink requests (IPCTNL_MSG_CT_NEW),
//! many per datagram, from a thread inside a test namespace. No packet is sent.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::enter_netns;

const NLA_F_NESTED: u16 = 0x8000;
const PER_DATAGRAM: u32 = 64;

/// Creates `count` UDP entries 10.98.x.y:port -> dst:53 in the namespace `ns`;
/// each produces one NEW event. Returns how many requests were sent.
pub fn udp_entries(ns: &str, count: u32, dst: [u8; 4]) -> u32 {
    udp_entries_from(ns, 0, count, dst)
}

/// The source endpoint of entry `i`: 10.98.(i >> 16).(i >> 8):1024 + (i & 0xff).
pub fn udp_source(i: u32) -> ([u8; 4], u16) {
    ([10, 98, (i >> 16) as u8, (i >> 8) as u8], 1024 + (i & 0xff) as u16)
}

/// Like [`udp_entries`], for entries `first..first + count` (distinct from
/// those of another range), so a test can add more later.
pub fn udp_entries_from(ns: &str, first: u32, count: u32, dst: [u8; 4]) -> u32 {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_netns(&ns);
        // SAFETY: plain socket(2); owned right away.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 12) };
        assert!(fd >= 0, "netlink socket: {}", std::io::Error::last_os_error());
        // SAFETY: fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut sent = 0;
        while sent < count {
            let mut buf = Vec::with_capacity(PER_DATAGRAM as usize * 128);
            let n = PER_DATAGRAM.min(count - sent);
            for i in first + sent..first + sent + n {
                let (src, sport) = udp_source(i);
                message(&mut buf, src, dst, (sport, 53), i);
            }
            // SAFETY: valid fd and buffer.
            let rc = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
            assert!(rc >= 0, "send: {}", std::io::Error::last_os_error());
            sent += n;
        }
        sent
    })
    .join()
    .expect("injector thread")
}

/// In the namespace of the file `netns` (`/run/netns/NAME`, `/proc/PID/ns/net`),
/// from a thread that enters it: sets `nf_conntrack_events=1`, then creates
/// one UDP entry src:sport -> dst:dport and checks the kernel's ack. Its NEW
/// event goes to every listener there.
pub fn udp_entry_at(netns: &std::path::Path, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).unwrap_or_else(|e| panic!("open {}: {e}", netns.display()));
        // SAFETY: valid namespace fd; affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {}: {}", netns.display(), std::io::Error::last_os_error());
        std::fs::write("/proc/sys/net/netfilter/nf_conntrack_events", "1").expect("enable conntrack events");
        // SAFETY: plain socket(2); owned right away.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 12) };
        assert!(fd >= 0, "netlink socket: {}", std::io::Error::last_os_error());
        // SAFETY: fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut buf = Vec::new();
        message(&mut buf, src, dst, (sport, dport), 1);
        // NLM_F_ACK: the kernel answers with an error message (0 = created).
        buf[6] |= 0x4;
        // SAFETY: valid fd and buffer.
        let rc = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        assert!(rc >= 0, "send: {}", std::io::Error::last_os_error());
        let mut ack = [0u8; 256];
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), ack.as_mut_ptr().cast(), ack.len(), 0) };
        assert!(n >= 20, "no ack from ctnetlink in {}: {}", netns.display(), std::io::Error::last_os_error());
        let error = i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]);
        assert_eq!(error, 0, "creating the entry in {} failed: {}", netns.display(), std::io::Error::from_raw_os_error(-error));
    })
    .join()
    .expect("injector thread")
}

fn message(buf: &mut Vec<u8>, src: [u8; 4], dst: [u8; 4], (sport, dport): (u16, u16), seq: u32) {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&(1u16 << 8).to_ne_bytes()); // IPCTNL_MSG_CT_NEW
    buf.extend_from_slice(&(0x1u16 | 0x400 | 0x200).to_ne_bytes()); // REQUEST|CREATE|EXCL
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
    tuple(buf, 1, src, dst, sport, dport);
    tuple(buf, 2, dst, src, dport, sport);
    // CTA_TIMEOUT: longer than any test runs, so no entry expires into a
    // DESTROY event mid-test (on a loaded machine a 200k burst and reading
    // its events took more than a minute); deleting the namespace removes them.
    attr(buf, 7, &600u32.to_be_bytes());
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn tuple(buf: &mut Vec<u8>, ty: u16, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) {
    let outer = open(buf, ty);
    let ip = open(buf, 1);
    attr(buf, 1, &src);
    attr(buf, 2, &dst);
    close(buf, ip);
    let proto = open(buf, 2);
    attr(buf, 1, &[17]);
    attr(buf, 2, &sport.to_be_bytes());
    attr(buf, 3, &dport.to_be_bytes());
    close(buf, proto);
    close(buf, outer);
}

fn open(buf: &mut Vec<u8>, ty: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    at
}

fn close(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u16;
    buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

fn attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    buf.extend_from_slice(&(4 + payload.len() as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}
