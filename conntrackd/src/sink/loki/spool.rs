//! The outbox: encoded batches the server has not accepted yet, oldest first,
//! bounded by `spool_max_bytes` (past it the oldest are dropped and counted).
//! With `spool_dir` each batch is a file `<seq>.batch` (written to a temporary
//! name, synced, renamed), so they survive a restart; without it they are
//! kept in memory only.
//!
//! One outbox owns a spool directory: it holds an exclusive `flock` on
//! `<spool_dir>/.lock` for its life, so a second outbox (another daemon, or
//! a careless reload) cannot open the same directory and number files from
//! the same sequence. A reload does not reopen the directory: the retiring
//! Loki sender hands its `Outbox` (lock included) to its successor.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{
    collections::VecDeque,
    fs,
    io::Write,
    os::{fd::AsRawFd, unix::fs::DirBuilderExt},
    path::{Path, PathBuf},
};

use super::config::Encoding;

const MAGIC: &str = "CTDLOKI1";
/// Sequence numbers and event counts read from the directory are bounded so
/// that no sum or increment over them can overflow, whatever a file says.
const MAX_SEQ: u64 = 1 << 62;
const MAX_EVENTS_PER_FILE: u64 = 1 << 32;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SpoolError {
    #[error("sink.loki.spool_dir {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("sink.loki.spool_dir {path} is in use by another conntrackd (its .lock is held); give each daemon its own spool_dir")]
    InUse { path: PathBuf },
}

/// One encoded request body and how many events it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Payload {
    pub encoding: Encoding,
    pub events: u64,
    pub body: Vec<u8>,
}

#[derive(Debug)]
struct Slot {
    seq: u64,
    size: u64,
    events: u64,
    /// In memory (no spool_dir, or the file could not be written).
    memory: Option<Payload>,
}

/// Pending batches, oldest first.
pub(crate) struct Outbox {
    dir: Option<PathBuf>,
    max_bytes: u64,
    slots: VecDeque<Slot>,
    bytes: u64,
    next_seq: u64,
    /// Events dropped because the bound was reached or a file was unreadable.
    pub dropped_events: u64,
    /// The directory's `.lock`, held (flock) while this outbox lives.
    _lock: Option<fs::File>,
}

impl Outbox {
    /// An outbox in memory only (no spool_dir).
    pub fn memory(max_bytes: u64) -> Self {
        Self { dir: None, max_bytes, slots: VecDeque::new(), bytes: 0, next_seq: 1, dropped_events: 0, _lock: None }
    }

    /// Opens (creating) the spool directory and lists the batches left in it.
    pub fn open(dir: Option<&Path>, max_bytes: u64) -> Result<Self, SpoolError> {
        let Some(dir) = dir else { return Ok(Self::memory(max_bytes)) };
        let mut outbox = Self { dir: Some(dir.to_path_buf()), ..Self::memory(max_bytes) };
        let dir_error = |source| SpoolError::Dir { path: dir.to_path_buf(), source };
        // Event data (addresses, processes): only the daemon's user may read it.
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(dir_error)?;
        outbox._lock = Some(lock(dir)?);
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).map_err(dir_error)? {
            let path = entry.map_err(dir_error)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path); // an interrupted write
            } else if let Some(seq) = name.strip_suffix(".batch").and_then(|s| s.parse::<u64>().ok()).filter(|&seq| seq < MAX_SEQ) {
                found.push((seq, path));
            }
        }
        found.sort();
        for (seq, path) in found {
            match read_file(&path) {
                Ok(payload) => {
                    let size = payload.body.len() as u64;
                    outbox.slots.push_back(Slot { seq, size, events: payload.events, memory: None });
                    outbox.bytes += size;
                }
                Err(err) => {
                    tracing::error!(sink = "loki", file = %path.display(), error = %err, "unreadable spool file removed");
                    let _ = fs::remove_file(&path);
                }
            }
            // seq < MAX_SEQ: cannot overflow.
            outbox.next_seq = seq + 1;
        }
        outbox.evict(0);
        Ok(outbox)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Moves every pending batch of `other` behind this outbox's own, in order
    /// (a successor adopting its predecessor's spool keeps what it batched
    /// while it waited). The bound applies as for any push.
    pub fn append(&mut self, mut other: Outbox) {
        while let Some(payload) = other.front() {
            other.pop_front();
            self.push(payload);
        }
        self.dropped_events += other.dropped_events;
    }

    /// Bytes of the batches pending (what `spool_max_bytes` bounds).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Batches and events pending.
    pub fn pending(&self) -> (usize, u64) {
        (self.slots.len(), self.slots.iter().map(|s| s.events).sum())
    }

    /// Appends a batch, dropping the oldest ones to stay within the bound.
    pub fn push(&mut self, payload: Payload) {
        let size = payload.body.len() as u64;
        if size > self.max_bytes {
            self.count_drop(payload.events, "a batch larger than spool_max_bytes was dropped");
            return;
        }
        self.evict(size);
        let seq = self.next_seq;
        self.next_seq += 1;
        let events = payload.events;
        let memory = match &self.dir {
            None => Some(payload),
            Some(dir) => match write_file(dir, seq, &payload) {
                Ok(()) => None,
                Err(err) => {
                    tracing::error!(sink = "loki", error = %err, "cannot write a spool file; keeping the batch in memory");
                    Some(payload)
                }
            },
        };
        self.slots.push_back(Slot { seq, size, events, memory });
        self.bytes += size;
    }

    /// The oldest batch; unreadable files are dropped (counted) and skipped.
    pub fn front(&mut self) -> Option<Payload> {
        loop {
            let slot = self.slots.front()?;
            if let Some(payload) = &slot.memory {
                return Some(payload.clone());
            }
            let path = self.path(slot.seq);
            match read_file(&path) {
                Ok(payload) => return Some(payload),
                Err(err) => {
                    tracing::error!(sink = "loki", file = %path.display(), error = %err, "unreadable spool file dropped");
                    let events = slot.events;
                    self.pop_front();
                    self.count_drop(events, "spool file unreadable");
                }
            }
        }
    }

    /// Forgets the oldest batch (accepted or rejected by the server).
    pub fn pop_front(&mut self) {
        if let Some(slot) = self.slots.pop_front() {
            self.bytes -= slot.size;
            if slot.memory.is_none() {
                let _ = fs::remove_file(self.path(slot.seq));
            }
        }
    }

    /// Drops the oldest batches until `incoming` more bytes fit.
    fn evict(&mut self, incoming: u64) {
        while self.bytes + incoming > self.max_bytes && !self.slots.is_empty() {
            let events = self.slots.front().map_or(0, |s| s.events);
            self.pop_front();
            self.count_drop(events, "spool_max_bytes reached: the oldest batch was dropped");
        }
    }

    fn count_drop(&mut self, events: u64, why: &'static str) {
        self.dropped_events += events;
        tracing::warn!(sink = "loki", events, total_dropped = self.dropped_events, "{why}");
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.as_deref().unwrap_or(Path::new(".")).join(format!("{seq:020}.batch"))
    }
}

/// Takes the directory's exclusive lock, or says who holds it.
fn lock(dir: &Path) -> Result<fs::File, SpoolError> {
    let path = dir.join(".lock");
    let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|source| SpoolError::Dir { path: path.clone(), source })?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        return Err(if err.kind() == std::io::ErrorKind::WouldBlock {
            SpoolError::InUse { path: dir.to_path_buf() }
        } else {
            SpoolError::Dir { path, source: err }
        });
    }
    Ok(file)
}

fn write_file(dir: &Path, seq: u64, payload: &Payload) -> std::io::Result<()> {
    let tmp = dir.join(format!("{seq:020}.tmp"));
    let mut file = fs::File::create(&tmp)?;
    let encoding = match payload.encoding {
        Encoding::Protobuf => "protobuf",
        Encoding::Json => "json",
    };
    writeln!(file, "{MAGIC} {encoding} {}", payload.events)?;
    file.write_all(&payload.body)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(format!("{seq:020}.batch")))?;
    fs::File::open(dir)?.sync_all()
}

fn read_file(path: &Path) -> std::io::Result<Payload> {
    let data = fs::read(path)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a conntrackd spool file");
    let newline = data.iter().position(|&b| b == b'\n').filter(|&n| n < 64).ok_or_else(bad)?;
    let header = std::str::from_utf8(data.get(..newline).ok_or_else(bad)?).map_err(|_| bad())?;
    let mut parts = header.split(' ');
    if parts.next() != Some(MAGIC) {
        return Err(bad());
    }
    let encoding = match parts.next() {
        Some("protobuf") => Encoding::Protobuf,
        Some("json") => Encoding::Json,
        _ => return Err(bad()),
    };
    let events = parts.next().and_then(|n| n.parse().ok()).filter(|&n| n <= MAX_EVENTS_PER_FILE).ok_or_else(bad)?;
    Ok(Payload { encoding, events, body: data.get(newline + 1..).ok_or_else(bad)?.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: u8, size: usize) -> Payload {
        Payload { encoding: Encoding::Protobuf, events: u64::from(n), body: vec![n; size] }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("conntrackd-spool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn survives_reopen_in_order_and_skips_garbage() {
        let dir = temp_dir("reopen");
        let mut out = Outbox::open(Some(&dir), 1 << 20).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        out.push(payload(1, 10));
        out.push(payload(2, 20));
        drop(out);
        fs::write(dir.join("00000000000000000003.tmp"), b"half").unwrap();
        fs::write(dir.join("00000000000000000000.batch"), b"garbage").unwrap();
        // Hostile names and counts: no overflow, no panic; the bad file is removed, the name ignored.
        fs::write(dir.join("18446744073709551615.batch"), format!("{MAGIC} protobuf 1\nx")).unwrap();
        fs::write(dir.join("00000000000000000004.batch"), format!("{MAGIC} protobuf 18446744073709551615\nx")).unwrap();
        let mut out = Outbox::open(Some(&dir), 1 << 20).unwrap();
        assert_eq!(out.pending(), (2, 3));
        assert_eq!(out.front(), Some(payload(1, 10)));
        out.pop_front();
        out.push(payload(3, 5));
        assert_eq!(out.front(), Some(payload(2, 20)));
        out.pop_front();
        assert_eq!(out.front(), Some(payload(3, 5)));
        out.pop_front();
        assert!(out.is_empty());
        let mut left: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, [".lock", "18446744073709551615.batch"], "files removed, tmp and garbage cleaned, an impossible sequence number left alone");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn one_outbox_per_directory_and_append_keeps_order() {
        let dir = temp_dir("lock");
        let mut first = Outbox::open(Some(&dir), 1 << 20).unwrap();
        let err = Outbox::open(Some(&dir), 1 << 20).err().expect("a second outbox on the same directory");
        assert!(matches!(err, SpoolError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("is in use by another conntrackd"), "{err}");
        first.push(payload(1, 10));
        let mut waiting = Outbox::open(None, 1 << 20).unwrap();
        waiting.push(payload(2, 10));
        first.append(waiting);
        assert_eq!(first.pending(), (2, 3));
        assert_eq!(first.front(), Some(payload(1, 10)));
        first.pop_front();
        assert_eq!(first.front(), Some(payload(2, 10)));
        assert!(fs::read_dir(&dir).unwrap().any(|e| e.unwrap().file_name() == "00000000000000000002.batch"), "appended batches are spooled");
        drop(first);
        Outbox::open(Some(&dir), 1 << 20).expect("the lock goes with the outbox");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bound_drops_the_oldest_and_counts() {
        for dir in [None, Some(temp_dir("bound"))] {
            let mut out = Outbox::open(dir.as_deref(), 100).unwrap();
            out.push(payload(1, 40));
            out.push(payload(2, 40));
            out.push(payload(3, 40));
            assert_eq!(out.pending(), (2, 5));
            assert_eq!(out.bytes(), 80, "the gauge behind conntrackd_sink_pending_bytes counts bytes, not events");
            assert_eq!(out.dropped_events, 1);
            out.push(payload(7, 101));
            assert_eq!(out.dropped_events, 8, "a batch over the bound is dropped itself");
            assert_eq!(out.front(), Some(payload(2, 40)));
            if let Some(dir) = dir {
                fs::remove_dir_all(dir).unwrap();
            }
        }
    }
}
