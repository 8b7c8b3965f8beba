//! The namespace worker: one thread that does everything that enters a
//! namespace or walks /proc, off the event path. At start it opens the
//! configured namespaces (with `all`: every namespace found) and hands the
//! sockets back; then, with `all`, it scans twice a second for namespaces
//! that appeared or vanished (so one is watched within a second of its first
//! process), and every 5 s it reads each watched namespace's
//! addresses again. It enters a namespace with setns and returns to the
//! daemon's own right after, so one thread serves them all. New sockets,
//! removals and address changes reach the source through a channel.
use std::{
    collections::HashMap,
    fs::File,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{mpsc as std_mpsc, Arc},
    time::{Duration, Instant},
};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::{
    discover::{self, Found},
    local_addrs::{LocalAddrs, REFRESH},
    manager::SourceError,
    netns::{self, Namespace, NetnsError},
    socket,
    stats::{self, Snapshots},
    sysctl,
};

/// How often `netns = ["all"]` looks for namespaces that appeared or vanished.
const RESCAN: Duration = Duration::from_millis(500);
/// How long a namespace that could not be opened is left alone.
const RETRY_FAILED: Duration = Duration::from_secs(30);

/// What the worker tells the source.
pub(crate) enum Update {
    Added(Opened),
    /// The namespace (by inode) is gone: release its socket.
    Removed(u64),
    Addrs(u64, LocalAddrs),
}

/// A socket opened (bound, not yet subscribed) inside a namespace.
pub(crate) struct Opened {
    pub ino: u64,
    pub label: Arc<str>,
    pub socket: OwnedFd,
    pub local: LocalAddrs,
}

/// A namespace the worker has handed a socket for.
struct Watched {
    /// None = the daemon's own namespace (never entered).
    file: Option<File>,
    path: PathBuf,
    label: Arc<str>,
    local: LocalAddrs,
}

/// The running worker; dropping it stops the thread at its next wakeup.
pub(crate) struct WorkerHandle {
    _stop: std_mpsc::Sender<()>,
}

/// What the worker needs to know.
#[derive(Clone)]
pub(crate) struct Plan {
    /// `all`: discover; otherwise these namespaces.
    pub all: bool,
    pub explicit: Vec<Namespace>,
    pub set_sysctls: bool,
}

/// Starts the worker; returns the namespaces opened at start (an error for an
/// explicit namespace is fatal) and the channel of later updates.
pub(crate) fn start(plan: Plan, stats: Snapshots) -> Result<(Vec<Opened>, UnboundedReceiver<Update>, WorkerHandle), SourceError> {
    let (init_tx, init_rx) = std_mpsc::sync_channel(1);
    let (tx, rx) = unbounded_channel();
    let (stop_tx, stop_rx) = std_mpsc::channel();
    std::thread::Builder::new()
        .name("netns-worker".into())
        .spawn(move || {
            let mut worker = match Worker::new(plan.set_sysctls, stats) {
                Ok(w) => w,
                Err(err) => return drop(init_tx.send(Err(err.into()))),
            };
            let initial = if plan.all { Ok(worker.rescan(true).0) } else { worker.open_explicit(&plan.explicit) };
            let ok = initial.is_ok();
            if init_tx.send(initial).is_ok() && ok {
                worker.run(plan.all, &tx, &stop_rx);
            }
        })
        .map_err(NetnsError::Thread)?;
    let initial = init_rx.recv().map_err(|_| NetnsError::Thread(std::io::Error::other("the namespace worker exited before opening any namespace")))??;
    Ok((initial, rx, WorkerHandle { _stop: stop_tx }))
}

struct Worker {
    /// The daemon's own namespace, to return to after entering another.
    own: File,
    own_ino: u64,
    set_sysctls: bool,
    watched: HashMap<u64, Watched>,
    /// Namespaces that could not be opened, and when, so a scan does not retry (and warn) every second.
    failed: HashMap<u64, Instant>,
    stats: Snapshots,
    /// This thread could not return to the daemon's namespace: it must stop.
    broken: bool,
}

impl Worker {
    fn new(set_sysctls: bool, stats: Snapshots) -> Result<Self, NetnsError> {
        // This thread's namespace, which is the daemon's: it has entered none yet.
        let (own, own_ino) = netns::open(Path::new("/proc/thread-self/ns/net"))?;
        raise_fd_limit();
        Ok(Self { own, own_ino, set_sysctls, watched: HashMap::new(), failed: HashMap::new(), stats, broken: false })
    }

    fn run(&mut self, all: bool, tx: &UnboundedSender<Update>, stop: &std_mpsc::Receiver<()>) {
        let mut next_scan = Instant::now() + RESCAN;
        let mut next_addrs = Instant::now() + REFRESH;
        loop {
            let wake = if all { next_scan.min(next_addrs) } else { next_addrs };
            match stop.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let now = Instant::now();
            let mut updates = Vec::new();
            if all && now >= next_scan {
                let (added, removed) = self.rescan(false);
                updates.extend(removed.into_iter().map(Update::Removed));
                updates.extend(added.into_iter().map(Update::Added));
                next_scan = (next_scan + RESCAN).max(now);
            }
            if now >= next_addrs {
                updates.extend(self.refresh_addrs().into_iter().map(|(ino, local)| Update::Addrs(ino, local)));
                next_addrs = now + REFRESH;
            }
            for update in updates {
                if tx.send(update).is_err() {
                    return;
                }
            }
            if self.broken {
                tracing::error!("the namespace worker cannot return to the daemon's network namespace: discovery and address refresh stop");
                return;
            }
        }
    }

    /// One scan: opens the namespaces not watched yet; returns them and the inodes that vanished.
    fn rescan(&mut self, startup: bool) -> (Vec<Opened>, Vec<u64>) {
        let cpu = thread_cpu_ns();
        let found = discover::scan();
        let removed: Vec<u64> = self.watched.keys().filter(|ino| !found.contains_key(ino)).copied().collect();
        for ino in &removed {
            self.watched.remove(ino);
        }
        self.failed.retain(|ino, _| found.contains_key(ino));
        let mut new: Vec<(&u64, &Found)> = found.iter().filter(|(ino, _)| !self.watched.contains_key(ino)).collect();
        new.sort_by_key(|(ino, _)| **ino);
        let mut added = Vec::new();
        for (&ino, f) in new {
            if self.broken {
                break;
            }
            if self.failed.get(&ino).is_some_and(|at| at.elapsed() < RETRY_FAILED) {
                continue;
            }
            let mut label = discover::label(ino, f);
            // Two namespaces may share a container's id (a container that
            // creates namespaces itself): the later one is known by its inode.
            if self.watched.values().any(|w| w.label == label) {
                label = ino.to_string().into();
            }
            match self.open_found(ino, f, &label, startup) {
                Ok(opened) => added.push(opened),
                Err(err) => {
                    if self.failed.insert(ino, Instant::now()).is_none() {
                        tracing::warn!(netns = %label, error = %err, "cannot watch network namespace");
                    }
                }
            }
        }
        let spent = thread_cpu_ns().saturating_sub(cpu);
        stats::with(&self.stats, |s| {
            s.rescans += 1;
            s.rescan_cpu_ns += spent;
        });
        (added, removed)
    }

    /// Opens a discovered namespace. Its sysctls only warn: events start once
    /// they are enabled there (and nf_conntrack is loaded), so it is watched anyway.
    fn open_found(&mut self, ino: u64, found: &Found, label: &Arc<str>, startup: bool) -> Result<Opened, SourceError> {
        let file = if ino == self.own_ino {
            None
        } else {
            let (file, actual) = netns::open(&found.path)?;
            if actual != ino {
                let changed = std::io::Error::other(format!("now namespace {actual}, not {ino}"));
                return Err(NetnsError::Open { path: found.path.clone(), source: changed }.into());
            }
            Some(file)
        };
        let set = self.set_sysctls;
        let (socket, settings, local) = self.inside(file.as_ref(), &found.path, move || -> Result<_, SourceError> {
            let socket = socket::open()?;
            let settings = if set { sysctl::enable_all().and_then(|()| sysctl::read()) } else { sysctl::read() };
            Ok((socket, settings, LocalAddrs::read()))
        })??;
        match settings {
            // The daemon's own namespace is described once at start, like an explicit one.
            Ok(settings) if startup && file.is_none() => sysctl::report(&settings, label),
            Ok(_) => {}
            Err(err) => tracing::warn!(netns = %label, error = %err, "watching this network namespace anyway: no events until this is fixed there"),
        }
        self.watched.insert(ino, Watched { file, path: found.path.clone(), label: Arc::clone(label), local: local.clone() });
        Ok(Opened { ino, label: Arc::clone(label), socket, local })
    }

    /// Opens the configured namespaces; any error is fatal, naming the namespace.
    fn open_explicit(&mut self, namespaces: &[Namespace]) -> Result<Vec<Opened>, SourceError> {
        let mut out = Vec::new();
        for ns in namespaces {
            if self.watched.contains_key(&ns.ino) {
                tracing::debug!(netns = %ns.label, "listed twice in source.netns: watched once");
                continue;
            }
            let within = |source| SourceError::In { netns: ns.label.to_string(), source: Box::new(source) };
            let (file, path) = match &ns.path {
                Some(path) if ns.ino != self.own_ino => (Some(netns::open(path).map_err(|e| within(e.into()))?.0), path.clone()),
                _ => (None, PathBuf::from("/proc/self/ns/net")),
            };
            let set = self.set_sysctls;
            let opened = self.inside(file.as_ref(), &path, move || -> Result<_, SourceError> {
                let socket = socket::open()?;
                if set {
                    sysctl::enable_all()?;
                }
                Ok((socket, sysctl::read()?, LocalAddrs::read()))
            });
            let (socket, settings, local) = opened.map_err(|e| within(e.into()))?.map_err(within)?;
            sysctl::report(&settings, &ns.label);
            self.watched.insert(ns.ino, Watched { file, path, label: Arc::clone(&ns.label), local: local.clone() });
            out.push(Opened { ino: ns.ino, label: Arc::clone(&ns.label), socket, local });
        }
        Ok(out)
    }

    /// Reads every watched namespace's addresses; returns those that changed.
    fn refresh_addrs(&mut self) -> Vec<(u64, LocalAddrs)> {
        let mut changed = Vec::new();
        let inodes: Vec<u64> = self.watched.keys().copied().collect();
        for ino in inodes {
            let Some(w) = self.watched.get(&ino) else { continue };
            let result = inside(&self.own, w.file.as_ref(), &w.path, LocalAddrs::read);
            if matches!(result, Err(NetnsError::Return(_))) {
                self.broken = true;
                break;
            }
            match result {
                Ok(local) if local != w.local => {
                    changed.push((ino, local.clone()));
                    if let Some(w) = self.watched.get_mut(&ino) {
                        w.local = local;
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::debug!(netns = %w.label, error = %err, "cannot read the namespace's addresses"),
            }
        }
        changed
    }

    fn inside<T>(&mut self, file: Option<&File>, path: &Path, f: impl FnOnce() -> T) -> Result<T, NetnsError> {
        let result = inside(&self.own, file, path, f);
        self.broken |= matches!(result, Err(NetnsError::Return(_)));
        result
    }
}

/// Runs `f` inside the namespace of `file` (None: here), then returns to `own`.
/// Failing to return (it needs the capability entering just proved we have,
/// so it should not happen) leaves this thread in the wrong namespace:
/// [`NetnsError::Return`], after which the worker stops.
fn inside<T>(own: &File, file: Option<&File>, path: &Path, f: impl FnOnce() -> T) -> Result<T, NetnsError> {
    let Some(file) = file else { return Ok(f()) };
    netns::enter(file).map_err(|source| NetnsError::Enter { path: path.to_path_buf(), source })?;
    let value = f();
    netns::enter(own).map_err(NetnsError::Return)?;
    Ok(value)
}

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// Every watched namespace costs two descriptors (its socket and its nsfs
/// file): raise the soft RLIMIT_NOFILE to the hard limit, as Go does.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid rlimit buffers.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "cannot raise RLIMIT_NOFILE");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_opens_a_socket_in_our_own_namespace_and_counts_the_scan() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "opening sockets in other namespaces needs root: run `sudo cargo xtask test`");
        let own = Namespace::own().expect("own namespace");
        let stats = Snapshots::default();
        let (opened, _updates, _worker) = start(Plan { all: true, explicit: Vec::new(), set_sysctls: false }, Arc::clone(&stats)).expect("start the worker");
        let ours = opened.iter().find(|o| o.ino == own.ino).expect("our namespace is opened");
        assert!(ours.local.contains("127.0.0.1".parse().expect("address")), "its addresses are read inside it");
        assert!(socket::cookie(&ours.socket).expect("SO_COOKIE") != 0);
        let mut inodes: Vec<u64> = opened.iter().map(|o| o.ino).collect();
        inodes.sort_unstable();
        inodes.dedup();
        assert_eq!(inodes.len(), opened.len(), "each namespace once");
        assert_eq!(stats::with(&stats, |s| s.rescans), 1);
    }

    #[test]
    fn an_explicit_namespace_that_does_not_exist_is_a_fatal_error_naming_it() {
        let plan = Plan { all: false, explicit: vec![Namespace::own().expect("own")], set_sysctls: false };
        let mut plan_missing = plan.clone();
        plan_missing.explicit[0].path = Some(PathBuf::from("/run/netns/ctd-does-not-exist"));
        plan_missing.explicit[0].ino = 1;
        let Err(err) = start(plan_missing, Snapshots::default()) else { panic!("a missing namespace must not start") };
        assert!(err.to_string().contains("/run/netns/ctd-does-not-exist"), "{err}");
    }
}
