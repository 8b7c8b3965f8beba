//! The ctnetlink event socket: `NETLINK_NETFILTER` bound to the conntrack
//! multicast groups of the daemon's network namespace.
//!
//! The filter must be attached before the groups are joined, or the first
//! events would be queued unfiltered on the socket.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::event::EventType;

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SocketError {
    #[error("cannot open a NETLINK_NETFILTER socket: {0}")]
    Open(std::io::Error),
    #[error("cannot bind the ctnetlink socket: {0}")]
    Bind(std::io::Error),
    #[error("cannot join conntrack multicast group {group} ({kind}): {source} (needs CAP_NET_ADMIN)")]
    Join { group: u32, kind: &'static str, source: std::io::Error },
    #[error("cannot set or read {option} on the ctnetlink socket: {source}")]
    Option { option: &'static str, source: std::io::Error },
}

/// `size_of::<T>()` as a socklen_t, for the option values and addresses
/// passed to the kernel.
#[allow(clippy::cast_possible_truncation)] // all are a few bytes long
const fn socklen<T>() -> libc::socklen_t {
    std::mem::size_of::<T>() as libc::socklen_t
}

#[allow(clippy::cast_possible_truncation)] // AF_NETLINK is 16
const AF_NETLINK_FAMILY: libc::sa_family_t = libc::AF_NETLINK as libc::sa_family_t;

/// Raises the receive buffer: SO_RCVBUFFORCE (CAP_NET_ADMIN) beyond
/// `net.core.rmem_max`, else SO_RCVBUF (capped by the kernel).
pub(crate) fn set_receive_buffer(fd: &OwnedFd, bytes: usize) -> Result<(), SocketError> {
    // The kernel doubles the value; half of i32::MAX is its largest.
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX).min(libc::c_int::MAX / 2);
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_ok() {
        return Ok(());
    }
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size).map_err(|source| SocketError::Option { option: "SO_RCVBUF", source })
}

/// conntrack-tools' reliable mode: NETLINK_BROADCAST_ERROR makes the kernel
/// see failed deliveries, so it keeps DESTROY events and re-sends them;
/// NETLINK_NO_ENOBUFS stops overflow errors from being reported.
pub(crate) fn set_reliable(fd: &OwnedFd) -> Result<(), SocketError> {
    setsockopt(fd, libc::SOL_NETLINK, libc::NETLINK_BROADCAST_ERROR, 1).map_err(|source| SocketError::Option { option: "NETLINK_BROADCAST_ERROR", source })?;
    setsockopt(fd, libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, 1).map_err(|source| SocketError::Option { option: "NETLINK_NO_ENOBUFS", source })
}

/// The socket's cookie (SO_COOKIE): what `bpf_get_socket_cookie` returns
/// for it in the kernel program, unique on the host while the socket lives.
pub(crate) fn cookie(fd: &OwnedFd) -> Result<u64, SocketError> {
    const SO_COOKIE: libc::c_int = 57;
    let mut value = 0u64;
    let mut len = socklen::<u64>();
    // SAFETY: valid fd, a u64 buffer and its length.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, SO_COOKIE, (&mut value as *mut u64).cast(), &mut len) };
    if rc < 0 {
        return Err(SocketError::Option { option: "SO_COOKIE", source: std::io::Error::last_os_error() });
    }
    Ok(value)
}

/// Messages the kernel dropped for this socket (SK_MEMINFO_DROPS of SO_MEMINFO).
pub(crate) fn drops(fd: &OwnedFd) -> Option<u64> {
    const SO_MEMINFO: libc::c_int = 55;
    const SK_MEMINFO_DROPS: usize = 8;
    let mut info = [0u32; 16];
    let mut len = socklen::<[u32; 16]>();
    // SAFETY: valid fd, buffer and length.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, SO_MEMINFO, info.as_mut_ptr().cast(), &mut len) };
    // `len` is what the kernel filled in (at most 64 bytes); `get` covers a short answer.
    (rc == 0 && len as usize > SK_MEMINFO_DROPS * 4).then(|| info.get(SK_MEMINFO_DROPS).copied().map(u64::from)).flatten()
}

fn setsockopt(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> std::io::Result<()> {
    // SAFETY: valid fd; the option value is a c_int.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&value as *const libc::c_int).cast(), socklen::<libc::c_int>()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens and binds the socket, without joining any group yet.
pub(crate) fn open() -> Result<OwnedFd, SocketError> {
    // SAFETY: plain socket(2) call; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, NETLINK_NETFILTER) };
    if fd < 0 {
        return Err(SocketError::Open(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh, valid descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_nl is valid; we set the family.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = AF_NETLINK_FAMILY;
    // SAFETY: valid fd and address of the right size.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_nl).cast(), socklen::<libc::sockaddr_nl>()) };
    if rc < 0 {
        return Err(SocketError::Bind(std::io::Error::last_os_error()));
    }
    Ok(fd)
}

/// Joins the multicast group of each wanted event kind. Kinds no rule can log
/// are never subscribed, so the kernel does not even build those messages for us.
pub(crate) fn subscribe(fd: &OwnedFd, kinds: &[EventType]) -> Result<(), SocketError> {
    for &kind in kinds {
        let group = match kind {
            EventType::New => NFNLGRP_CONNTRACK_NEW,
            EventType::Update => NFNLGRP_CONNTRACK_UPDATE,
            EventType::Destroy => NFNLGRP_CONNTRACK_DESTROY,
        };
        // SAFETY: valid fd, option value is a u32 group number.
        let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_NETLINK, libc::NETLINK_ADD_MEMBERSHIP, (&group as *const u32).cast(), socklen::<u32>()) };
        if rc < 0 {
            let source = std::io::Error::last_os_error();
            return Err(SocketError::Join { group, kind: kind.as_str(), source });
        }
    }
    Ok(())
}
