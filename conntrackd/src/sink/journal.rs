//! The journald sink: the native journal protocol (systemd's
//! `sd_journal_send` wire format), written here because no maintained crate
//! takes arbitrary fields without linking libsystemd.
//!
//! Each entry is one datagram to the journal socket: `NAME=value\n` per
//! field, or `NAME\n<u64 LE length><value>\n` when the value holds a newline.
//! An entry too large for one datagram (EMSGSIZE/ENOBUFS) is written to a
//! sealed memfd whose descriptor is passed with SCM_RIGHTS, as libsystemd does.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{
    io::{self, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, net::UnixDatagram},
    },
    path::{Path, PathBuf},
    sync::Arc,
    thread::{self, JoinHandle},
    time::Duration,
};

use super::{
    config::{queue_events, SinkConfigError, DEFAULT_QUEUE_EVENTS},
    json,
    queue::BoundedQueue,
};
use crate::{event::Event, schema::section};

/// Where journald listens for native-protocol datagrams.
pub(crate) const DEFAULT_SOCKET: &str = "/run/systemd/journal/socket";

#[derive(Debug, thiserror::Error)]
pub(crate) enum JournalError {
    #[error("cannot create the journal client socket: {0}")]
    Socket(io::Error),
    #[error("cannot send to the journal socket {path}: {source}")]
    Send { path: PathBuf, source: io::Error },
    #[error("cannot pass an oversized entry through a memfd: {0}")]
    Memfd(io::Error),
}

section! {
    /// `[sink.journal]`
    pub(crate) struct RawJournal at "sink.journal" {
        /// Write events to the systemd journal (native protocol)
        enable: bool = false, Bool;
        /// journald's native socket
        socket: PathBuf = PathBuf::from(DEFAULT_SOCKET), Str;
        /// Run without the journal sink (with a warning) if it cannot start
        optional: bool = false, Bool;
        /// Events queued for the journal sink before drops
        queue_events: usize = DEFAULT_QUEUE_EVENTS, Int;
    }
}

/// Validated `[sink.journal]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JournalConfig {
    pub socket: PathBuf,
    pub queue_events: usize,
    pub optional: bool,
}

/// Checks `[sink.journal]`; `None` when the sink is absent or disabled.
pub(crate) fn validate(raw: Option<RawJournal>) -> Result<Option<JournalConfig>, SinkConfigError> {
    let Some(raw) = raw.filter(|r| r.enable) else { return Ok(None) };
    let socket = raw.socket;
    if socket.as_os_str().len() >= 108 || socket.as_os_str().is_empty() {
        let message = format!("expected a unix socket path of 1..107 bytes, found {:?}", socket.display().to_string());
        return Err(SinkConfigError::Invalid { key: "sink.journal.socket", message });
    }
    let queue_events = queue_events(raw.queue_events).map_err(|message| SinkConfigError::Invalid { key: "sink.journal.queue_events", message })?;
    Ok(Some(JournalConfig { socket, queue_events, optional: raw.optional }))
}

/// How an entry reached journald.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Datagram,
    Memfd,
}

/// An unbound datagram socket that sends entries to the journal socket.
pub(crate) struct JournalSocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl JournalSocket {
    pub fn new(path: &Path) -> Result<Self, JournalError> {
        let sock = UnixDatagram::unbound().map_err(JournalError::Socket)?;
        // journald may be busy; never wait forever (shutdown must finish).
        sock.set_write_timeout(Some(Duration::from_secs(5))).map_err(JournalError::Socket)?;
        Ok(Self { sock, path: path.to_path_buf() })
    }

    /// Sends one encoded entry, through a memfd if it is too large for a datagram.
    pub fn send(&self, entry: &[u8]) -> Result<Route, JournalError> {
        match self.sock.send_to(entry, &self.path) {
            Ok(_) => Ok(Route::Datagram),
            Err(err) if matches!(err.raw_os_error(), Some(libc::EMSGSIZE | libc::ENOBUFS)) => {
                let fd = sealed_memfd(entry).map_err(JournalError::Memfd)?;
                send_fd(&self.sock, &self.path, &fd).map_err(|source| JournalError::Send { path: self.path.clone(), source })?;
                Ok(Route::Memfd)
            }
            Err(source) => Err(JournalError::Send { path: self.path.clone(), source }),
        }
    }
}

/// A memfd holding `data`, sealed against any change (journald requires it).
fn sealed_memfd(data: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: a valid NUL-terminated name and flags; the result is checked.
    let raw = unsafe { libc::memfd_create(c"conntrackd-journal".as_ptr(), libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a fresh descriptor we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut file = std::fs::File::from(fd);
    file.write_all(data)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file.into())
}

/// An empty datagram to `path` carrying `fd` as SCM_RIGHTS.
// The casts are of constants: AF_UNIX (1), sizeof(int) (4), sizeof(sockaddr_un)
// (110) and CMSG_SPACE/CMSG_LEN of 4 bytes; none can truncate.
#[allow(clippy::cast_possible_truncation)]
fn send_fd(sock: &UnixDatagram, path: &Path, fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "socket path too long"));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let raw_fd = fd.as_raw_fd();
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: all-zero is a valid msghdr; every pointer set below outlives sendmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut addr).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control holds CMSG_SPACE(sizeof(int)) bytes, so the first
    // header exists and has room for one descriptor.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), raw_fd);
    }
    // SAFETY: msg points at live buffers; the socket is valid.
    if unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Appends one field; values with a newline use the length-prefixed form.
pub(crate) fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    if value.contains(&b'\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The whole entry of one event: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, then
/// `EVENT_<NAME>` per field in contract order.
pub(crate) fn encode(out: &mut Vec<u8>, ev: &Event) {
    let mut scratch = Vec::with_capacity(64);
    json::write_message(&mut scratch, ev);
    put_field(out, b"MESSAGE", &scratch);
    put_field(out, b"PRIORITY", b"6");
    put_field(out, b"SYSLOG_IDENTIFIER", b"conntrackd");
    let mut name = Vec::with_capacity(32);
    ev.for_each_field(|field, value| {
        name.clear();
        name.extend_from_slice(b"EVENT_");
        field_name(&mut name, field);
        scratch.clear();
        value.write_text(&mut scratch);
        put_field(out, &name, &scratch);
    });
}

/// journald accepts `[A-Z0-9_]` names: uppercase, anything else becomes `_`.
fn field_name(out: &mut Vec<u8>, field: &str) {
    out.extend(field.bytes().map(|b| if b.is_ascii_alphanumeric() { b.to_ascii_uppercase() } else { b'_' }));
}

/// Starts the sink thread.
pub(crate) fn spawn(config: &JournalConfig, queue: Arc<BoundedQueue>) -> io::Result<JoinHandle<()>> {
    let socket = config.socket.clone();
    thread::Builder::new().name("sink-journal".into()).spawn(move || run(&socket, &queue))
}

fn run(path: &Path, queue: &BoundedQueue) {
    let sock = match JournalSocket::new(path) {
        Ok(sock) => sock,
        Err(err) => {
            tracing::error!(sink = "journal", error = %err, "journal sink disabled");
            let mut events = Vec::new();
            while queue.pop_all(&mut events) {
                queue.record_write_error(events.len() as u64);
                events.clear();
            }
            return;
        }
    };
    if path.exists() {
        tracing::info!(sink = "journal", socket = %path.display(), "journal sink started");
    } else {
        tracing::warn!(sink = "journal", socket = %path.display(), "journal socket does not exist (yet): is systemd-journald running?");
    }
    let (mut events, mut entry) = (Vec::with_capacity(1024), Vec::with_capacity(4096));
    let mut failures = 0u64;
    while queue.pop_all(&mut events) {
        for ev in &events {
            entry.clear();
            encode(&mut entry, ev);
            match sock.send(&entry) {
                Ok(route) => {
                    queue.record_written(1);
                    if route == Route::Memfd {
                        tracing::debug!(sink = "journal", bytes = entry.len(), "entry sent through a memfd");
                    }
                }
                Err(err) => {
                    queue.record_write_error(1);
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::error!(sink = "journal", error = %err, failures, "cannot send event to journald");
                    }
                }
            }
        }
        events.clear();
    }
}

#[cfg(test)]
pub(crate) mod tests;
