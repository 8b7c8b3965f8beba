//! Watches a Loki spool directory with inotify and records the name of every
//! file moved into it (the spool writes a temporary file and renames it into
//! place), in order. A single owner numbers its files from one sequence, so it
//! never completes the same name twice while the files are unsent; two
//! writers sharing the directory do (and the second overwrites the first).
use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
};

/// The inotify header before each name: wd, mask, cookie, len.
const HEADER: usize = 16;

pub struct SpoolWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    moved_in: Arc<Mutex<Vec<String>>>,
}

impl SpoolWatch {
    /// Starts watching `dir`, which must exist.
    pub fn start(dir: &Path) -> Self {
        // SAFETY: plain inotify_init1(2); the fd is owned right away.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("spool path without NUL");
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MOVED_TO) };
        assert!(wd >= 0, "inotify_add_watch {}: {}", dir.display(), std::io::Error::last_os_error());
        let (stop, moved_in) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (stop2, moved2) = (Arc::clone(&stop), Arc::clone(&moved_in));
        let thread = std::thread::spawn(move || read_events(&fd, &stop2, &moved2));
        Self { stop, thread: Some(thread), moved_in }
    }

    /// Stops watching (after reading what is left) and returns the names moved in, in order.
    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("spool watch thread");
        }
        std::mem::take(&mut *self.moved_in.lock().unwrap())
    }
}

impl Drop for SpoolWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_events(fd: &OwnedFd, stop: &AtomicBool, out: &Mutex<Vec<String>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let mut poll = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut poll, 1, 50) };
        // SAFETY: valid fd and buffer of that length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            out.lock().unwrap().extend(names(&buf[..n as usize]));
        } else if stopping {
            return;
        }
    }
}

/// The names in a buffer of inotify events.
fn names(mut buf: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while buf.len() >= HEADER {
        let len = u32::from_ne_bytes(buf[12..16].try_into().unwrap()) as usize;
        let name = &buf[HEADER..HEADER + len];
        let end = name.iter().position(|&b| b == 0).unwrap_or(len);
        out.push(String::from_utf8_lossy(&name[..end]).into_owned());
        buf = &buf[HEADER + len..];
    }
    out
}
