//! Journal encoding and both send routes, against a receiver in the test
//! that decodes the native protocol as journald does (datagram payload, or
//! the sealed memfd passed with SCM_RIGHTS). The real journald is exercised
//! by the kernel tests (`tests/logsinks.rs`).
use std::{
    io::{Read, Seek},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::*;

/// Decodes an entry: `NAME=value\n` or `NAME\n<len u64 LE><value>\n`.
fn decode(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut fields = Vec::new();
    while !data.is_empty() {
        let nl = data.iter().position(|&b| b == b'\n').expect("field ends with a newline");
        let line = &data[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.push((String::from_utf8(line[..eq].to_vec()).unwrap(), line[eq + 1..].to_vec()));
            data = &data[nl + 1..];
        } else {
            let len = u64::from_le_bytes(data[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = data[nl + 9..nl + 9 + len].to_vec();
            assert_eq!(data[nl + 9 + len], b'\n', "binary field ends with a newline");
            fields.push((String::from_utf8(line.to_vec()).unwrap(), value));
            data = &data[nl + 10 + len..];
        }
    }
    fields
}

/// Receives one message: the datagram's bytes, or the memfd's content and seals.
fn receive(sock: &UnixDatagram) -> (Vec<u8>, Option<i32>) {
    let mut buf = vec![0u8; 1 << 20];
    let mut control = [0u8; 64];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: zeroed msghdr, pointers into live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    // SAFETY: valid socket and message.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    assert!(n >= 0, "recvmsg: {}", io::Error::last_os_error());
    // SAFETY: the kernel filled msg_control; walk it with the CMSG macros.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        buf.truncate(n as usize);
        return (buf, None);
    }
    // SAFETY: a non-null header from CMSG_FIRSTHDR of our buffer.
    let fd = unsafe {
        assert_eq!(((*cmsg).cmsg_level, (*cmsg).cmsg_type), (libc::SOL_SOCKET, libc::SCM_RIGHTS));
        OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>()))
    };
    assert_eq!(n, 0, "a memfd comes with an empty payload");
    // SAFETY: fcntl on the descriptor we received.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    let mut content = Vec::new();
    // The descriptor shares the sender's file offset (at the end): rewind.
    let mut file = std::fs::File::from(fd);
    file.seek(std::io::SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut content).unwrap();
    (content, Some(seals))
}

fn receiver() -> (tempdir::Dir, UnixDatagram) {
    let dir = tempdir::Dir::new();
    let sock = UnixDatagram::bind(dir.path().join("socket")).unwrap();
    (dir, sock)
}

#[test]
fn plain_and_binary_fields() {
    let mut out = Vec::new();
    put_field(&mut out, b"MESSAGE", b"hello");
    put_field(&mut out, b"EVENT_X", b"a\nb");
    assert_eq!(out, b"MESSAGE=hello\nEVENT_X\n\x03\0\0\0\0\0\0\0a\nb\n");
    assert_eq!(decode(&out), vec![("MESSAGE".into(), b"hello".to_vec()), ("EVENT_X".into(), b"a\nb".to_vec())]);
}

#[test]
fn event_entry_has_every_field_in_order() {
    let ev = crate::event::tests::tcp_v4_event(0);
    let mut out = Vec::new();
    encode(&mut out, &ev);
    let fields: Vec<(String, String)> = decode(&out).into_iter().map(|(k, v)| (k, String::from_utf8(v).unwrap())).collect();
    let want = [
        ("MESSAGE", "NEW TCP connection from 10.99.0.1:40002 to 8.8.8.8:443"),
        ("PRIORITY", "6"),
        ("SYSLOG_IDENTIFIER", "conntrackd"),
        ("EVENT_TYPE", "NEW"),
        ("EVENT_FLOW", "305419896"),
        ("EVENT_PROT", "TCP"),
        ("EVENT_SRC_ADDR", "10.99.0.1"),
        ("EVENT_DST_ADDR", "8.8.8.8"),
        ("EVENT_SRC_PORT", "40002"),
        ("EVENT_DST_PORT", "443"),
        ("EVENT_TCP_STATE", "ESTABLISHED"),
        ("EVENT_PID", "4242"),
        ("EVENT_UID", "1000"),
        ("EVENT_COMM", "curl"),
        ("EVENT_MARK", "42"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    assert_eq!(fields, want);
}

#[test]
fn field_names_are_sanitized() {
    let mut out = Vec::new();
    field_name(&mut out, "reply_src-addr.x");
    assert_eq!(out, b"REPLY_SRC_ADDR_X");
}

#[test]
fn small_entry_is_one_datagram() {
    let (dir, rx) = receiver();
    let tx = JournalSocket::new(&dir.path().join("socket")).unwrap();
    let mut entry = Vec::new();
    encode(&mut entry, &crate::event::tests::tcp_v4_event(0));
    assert_eq!(tx.send(&entry).unwrap(), Route::Datagram);
    let (got, seals) = receive(&rx);
    assert_eq!((got, seals), (entry, None));
}

#[test]
fn oversized_entry_goes_through_a_sealed_memfd() {
    let (dir, rx) = receiver();
    let tx = JournalSocket::new(&dir.path().join("socket")).unwrap();
    let mut entry = Vec::new();
    put_field(&mut entry, b"MESSAGE", b"big");
    let pad: Vec<u8> = (0..2_000_000u32).map(|i| b"abc\ndef"[i as usize % 7]).collect();
    put_field(&mut entry, b"EVENT_PAD", &pad);
    assert_eq!(tx.send(&entry).unwrap(), Route::Memfd);
    let (got, seals) = receive(&rx);
    let all = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    assert_eq!(seals, Some(all), "journald only trusts fully sealed memfds");
    let fields = decode(&got);
    assert_eq!(fields[1], ("EVENT_PAD".to_string(), pad));
}

#[test]
fn missing_journal_is_an_error_not_a_panic() {
    let dir = tempdir::Dir::new();
    let tx = JournalSocket::new(&dir.path().join("absent")).unwrap();
    let err = tx.send(b"MESSAGE=x\n").unwrap_err();
    assert!(err.to_string().contains("absent"), "{err}");
}

#[test]
fn config_defaults_and_errors() {
    assert!(validate(None).unwrap().is_none());
    assert!(validate(Some(RawJournal::default())).unwrap().is_none(), "off by default");
    let on = || RawJournal { enable: true, ..RawJournal::default() };
    let c = validate(Some(on())).unwrap().unwrap();
    assert_eq!((c.socket.to_str().unwrap(), c.queue_events, c.optional), (DEFAULT_SOCKET, 65_536, false));
    let err = validate(Some(RawJournal { socket: "x".repeat(200).into(), ..on() })).unwrap_err();
    assert!(err.to_string().contains("sink.journal.socket"), "{err}");
    let err = validate(Some(RawJournal { queue_events: 0, ..on() })).unwrap_err();
    assert!(err.to_string().contains("sink.journal.queue_events"), "{err}");
}

/// A private temporary directory, removed on drop.
pub(crate) mod tempdir {
    use std::path::{Path, PathBuf};

    pub(crate) struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("conntrackd-unit-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir(&path).unwrap();
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
