//! Measuring a child process by pid: its CPU clock, peak RSS, netlink
//! subscriptions, and a reaper thread that collects its `rusage` with `wait4`;
//! and the CPU of this thread and of our reaped children.
use std::{
    collections::HashSet,
    fs, io,
    sync::mpsc::{self, Receiver},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// `NETLINK_NETFILTER`, the protocol of ctnetlink sockets.
const NETLINK_NETFILTER: u32 = 12;

/// How a child ended, from `wait4`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exit {
    /// Raw wait status.
    pub status: i32,
    pub user: Duration,
    pub system: Duration,
    /// `ru_maxrss` in KiB (covers the process before its last exec too).
    pub maxrss_kib: u64,
    /// When the reaper saw it exit.
    pub at: Instant,
}

impl Exit {
    pub fn cpu(&self) -> Duration {
        self.user + self.system
    }

    pub fn describe(&self) -> String {
        if libc::WIFEXITED(self.status) {
            format!("exit code {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            format!("signal {}", libc::WTERMSIG(self.status))
        } else {
            format!("wait status {:#x}", self.status)
        }
    }
}

/// Starts a thread that blocks in `wait4(pid)` and sends the result once the
/// child exits. Only the reaper waits for the child.
pub(crate) fn reaper(pid: i32) -> Receiver<io::Result<Exit>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(wait4(pid));
    });
    rx
}

fn wait4(pid: i32) -> io::Result<Exit> {
    let mut status = 0;
    // SAFETY: rusage is a plain C struct; all-zero is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is our own child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
    Ok(Exit {
        status,
        user: timeval(usage.ru_utime),
        system: timeval(usage.ru_stime),
        maxrss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        at: Instant::now(),
    })
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(tv.tv_sec).unwrap_or(0)) + Duration::from_micros(u64::try_from(tv.tv_usec).unwrap_or(0))
}

/// CPU time (user + system, all threads) the process has used so far.
pub(crate) fn cpu_time(pid: i32) -> Result<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: valid out-pointer; returns an error number, not -1/errno.
    let err = unsafe { libc::clock_getcpuclockid(pid, &mut clock) };
    if err != 0 {
        bail!("clock_getcpuclockid({pid}): {}", io::Error::from_raw_os_error(err));
    }
    // SAFETY: timespec is a plain C struct; all-zero is valid.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `clock` came from clock_getcpuclockid; valid out-pointer.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("reading the CPU clock of {pid}"));
    }
    Ok(Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0)))
}

/// CPU time (user + system) the calling thread has used so far.
pub(crate) fn thread_cpu_time() -> Result<Duration> {
    // SAFETY: timespec is a plain C struct; all-zero is valid.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer; CLOCK_THREAD_CPUTIME_ID needs nothing else.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Err(io::Error::last_os_error()).context("reading this thread's CPU clock");
    }
    Ok(Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0)))
}

/// CPU time (user + system) of all children that have been waited for.
pub(crate) fn children_cpu_time() -> Result<Duration> {
    // SAFETY: rusage is a plain C struct; all-zero is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return Err(io::Error::last_os_error()).context("getrusage(RUSAGE_CHILDREN)");
    }
    Ok(timeval(usage.ru_utime) + timeval(usage.ru_stime))
}

/// Peak resident set (`VmHWM`) of the program the process runs now, in KiB.
pub(crate) fn peak_rss_kib(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).with_context(|| format!("{path} has no VmHWM line"))?;
    let kib = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim();
    kib.parse().with_context(|| format!("{path}: cannot parse {line:?}"))
}

/// True once the process holds a ctnetlink socket subscribed to a multicast group.
pub(crate) fn subscribed_to_netfilter(pid: i32) -> Result<bool> {
    let inodes = socket_inodes(pid)?;
    let path = format!("/proc/{pid}/net/netlink");
    let table = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    for line in table.lines().skip(1) {
        // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
        let f: Vec<&str> = line.split_whitespace().collect();
        let [_, eth, _, groups, .., inode] = f.as_slice() else { continue };
        let subscribed = u32::from_str_radix(groups, 16).is_ok_and(|g| g != 0);
        if eth.parse::<u32>().ok() == Some(NETLINK_NETFILTER) && subscribed && inode.parse().is_ok_and(|i: u64| inodes.contains(&i)) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn socket_inodes(pid: i32) -> Result<HashSet<u64>> {
    let dir = format!("/proc/{pid}/fd");
    let mut inodes = HashSet::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let Ok(target) = fs::read_link(entry?.path()) else { continue };
        let target = target.to_string_lossy();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
            inodes.extend(inode.parse::<u64>().ok());
        }
    }
    Ok(inodes)
}

/// Sends `signal` to our child `pid`.
pub(crate) fn signal(pid: i32, signal: libc::c_int) -> Result<()> {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("signalling process {pid}"));
    }
    Ok(())
}
