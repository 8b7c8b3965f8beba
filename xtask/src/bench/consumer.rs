//! The consumers under test, each run alone inside the client namespace:
//! conntrackd with the eBPF source, with the netlink source, and with the
//! eBPF source but no kernel pre-filter (each with its own config and the
//! stream sink to a file), `conntrack -E` from conntrack-tools, ulogd2
//! (NFCT input, JSON output; [`super::ulogd`]), and the Go original v1.4.1
//! (built by `cargo xtask setup` into `target/peers`; its stream sink to the
//! file, `log any`). The original's listener dies at the first ENOBUFS: a
//! consumer that exits during the run is measured up to its exit, not failed.
//! A [`Consumer`] is started and awaited until it listens,
//! left to catch up, stopped with SIGTERM and measured; dropping one that was
//! not stopped kills it.
use std::{
    fs::{self, File},
    io::{self, BufRead, BufReader},
    path::{Path, PathBuf},
    process::{ChildStderr, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    bpf_stats::{self, ProgStats},
    interrupt, netns,
    parse::{self, Format},
    process::{self, Exit},
};

/// Loading and verifying the eBPF program can take a while on a busy machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Readiness poll interval (conntrack -E announces nothing; we watch its socket).
const READY_POLL: Duration = Duration::from_millis(5);
/// Output-quiescence poll interval.
const QUIET_POLL: Duration = Duration::from_millis(100);
/// conntrackd's readiness line, and ulogd's once its NFCT socket and filter are set up.
const READY_MARKERS: [&str; 2] = ["conntrackd ready", "initialization finished, entering main loop"];
/// Lines of stderr quoted when a consumer fails to start.
const STDERR_TAIL: usize = 20;

/// Which program consumes the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// conntrackd, `[source] kind = "ebpf"`: the product's configuration.
    Conntrackd,
    /// conntrackd, `[source] kind = "netlink"`: decoded and filtered in userspace.
    ConntrackdNetlink,
    /// conntrackd, eBPF source with `kernel_prefilter = false`.
    ConntrackdNoPrefilter,
    ConntrackEvents,
    /// ulogd2: NFCT input (event mode, `accept_dst_filter` = the public range), JSON output.
    Ulogd,
    /// The Go original v1.4.1: stream sink (slog JSON lines), `log any`.
    Original,
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::Conntrackd, Kind::ConntrackdNetlink, Kind::ConntrackdNoPrefilter, Kind::ConntrackEvents, Kind::Ulogd, Kind::Original];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Conntrackd => "conntrackd ebpf",
            Kind::ConntrackdNetlink => "conntrackd netlink",
            Kind::ConntrackdNoPrefilter => "conntrackd ebpf no-prefilter",
            Kind::ConntrackEvents => "conntrack -E",
            Kind::Ulogd => "ulogd2",
            Kind::Original => "Go original 1.4.1",
        }
    }

    /// File-name friendly name.
    pub fn slug(self) -> &'static str {
        match self {
            Kind::Conntrackd => "conntrackd-ebpf",
            Kind::ConntrackdNetlink => "conntrackd-netlink",
            Kind::ConntrackdNoPrefilter => "conntrackd-noprefilter",
            Kind::ConntrackEvents => "conntrack-E",
            Kind::Ulogd => "ulogd2",
            Kind::Original => "original-go",
        }
    }

    /// conntrackd runs the default rules (TCP to PUBLIC only) and ulogd its
    /// `accept_dst_filter` (the public range); conntrack -E and the original
    /// (`log any`) show everything.
    pub fn logs_private(self) -> bool {
        matches!(self, Kind::ConntrackEvents | Kind::Original)
    }

    /// Announces nothing when it listens: readiness is a subscribed ctnetlink socket
    /// (the original logs "Starting" before it subscribes).
    fn silent(self) -> bool {
        matches!(self, Kind::ConntrackEvents | Kind::Original)
    }

    /// Parses events in the kernel with an eBPF socket filter (whose run time the kernel counts).
    pub fn has_socket_filter(self) -> bool {
        matches!(self, Kind::Conntrackd | Kind::ConntrackdNoPrefilter)
    }

    /// May exit during the run (the original, on the first ENOBUFS): measured up to its exit.
    pub fn may_exit_early(self) -> bool {
        self == Kind::Original
    }

    pub fn format(self) -> Format {
        match self {
            Kind::ConntrackEvents => Format::Conntrack,
            Kind::Ulogd => Format::Ulogd,
            _ => Format::Json,
        }
    }
}

/// The daemon binary, the Go original's, and the directory of their per-kind
/// config files (`<slug>.toml`, written by [`super::daemon_config`]).
pub(crate) struct Daemon<'a> {
    pub binary: &'a Path,
    /// The Go original's binary, where it runs.
    pub original: Option<&'a Path>,
    pub config_dir: &'a Path,
}

impl Daemon<'_> {
    pub fn config(&self, kind: Kind) -> PathBuf {
        let ext = match kind {
            Kind::Ulogd => "conf",
            // The original picks the format by the extension.
            Kind::Original => "yaml",
            _ => "toml",
        };
        self.config_dir.join(format!("{}.{ext}", kind.slug()))
    }
}

/// What a stopped consumer cost.
#[derive(Debug)]
pub(crate) struct Measured {
    /// CPU (user + system, all threads) from readiness to exit.
    pub cpu_load: Duration,
    /// CPU before readiness (exec, eBPF load and attach).
    pub cpu_startup: Duration,
    /// Peak RSS of the consumer program (`VmHWM` just before SIGTERM), KiB.
    pub peak_rss_kib: u64,
    pub exit: Exit,
    /// When it exited by itself during the run (only kinds that [`Kind::may_exit_early`]).
    pub exited_at: Option<Instant>,
    /// Its socket filters' kernel run time from readiness to stop ([`Kind::has_socket_filter`]).
    pub filter: Option<ProgStats>,
    pub stderr: Vec<String>,
}

/// A running consumer.
pub(crate) struct Consumer {
    kind: Kind,
    pid: i32,
    exit: Receiver<io::Result<Exit>>,
    stderr: Option<JoinHandle<Vec<String>>>,
    output: PathBuf,
    cpu_at_ready: Duration,
    filter_at_ready: Option<ProgStats>,
    reaped: bool,
}

impl Consumer {
    /// Starts `kind` in the client namespace with stdout to `output` and
    /// returns once it is listening for events.
    pub fn start(kind: Kind, daemon: &Daemon, output: &Path) -> Result<Self> {
        let binary = daemon.binary.to_string_lossy();
        let config = daemon.config(kind);
        let config = config.to_string_lossy();
        let original = daemon.original.map(|p| p.to_string_lossy()).unwrap_or_default();
        let mut cmd = match kind {
            Kind::ConntrackEvents => netns::command_in(netns::CLIENT, &["conntrack", "-E", "-o", "timestamp"]),
            // In the foreground; its JSON goes to /dev/stdout, its log to /dev/stderr.
            Kind::Ulogd => netns::command_in(netns::CLIENT, &["ulogd", "-c", &config]),
            Kind::Original if daemon.original.is_none() => bail!("no binary of the Go original given"),
            Kind::Original => netns::command_in(netns::CLIENT, &[&original, "run", "--config", &config]),
            _ => netns::command_in(netns::CLIENT, &[&binary, "run", "--config", &config]),
        };
        let out = File::create(output).with_context(|| format!("creating {}", output.display()))?;
        let mut child =
            cmd.env("NO_COLOR", "1").stdin(Stdio::null()).stdout(out).stderr(Stdio::piped()).spawn().with_context(|| format!("starting {}", kind.name()))?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = child.stderr.take().map(|s| thread::spawn(move || read_stderr(s, ready_tx)));
        let mut consumer = Consumer {
            kind,
            pid,
            exit: process::reaper(pid),
            stderr,
            output: output.to_path_buf(),
            cpu_at_ready: Duration::ZERO,
            filter_at_ready: None,
            reaped: false,
        };
        consumer.await_ready(&ready_rx)?;
        consumer.cpu_at_ready = process::cpu_time(pid)?;
        if kind.has_socket_filter() {
            consumer.filter_at_ready = Some(consumer.filter_stats()?);
        }
        Ok(consumer)
    }

    /// conntrackd and ulogd: their readiness line; conntrack -E and the original: a subscribed ctnetlink socket.
    fn await_ready(&mut self, ready: &Receiver<()>) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            interrupt::check()?;
            match ready.recv_timeout(READY_POLL) {
                Ok(()) => return Ok(()),
                Err(RecvTimeoutError::Disconnected) => return Err(self.died_early()),
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.kind.silent() && process::subscribed_to_netfilter(self.pid)? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} was not ready within {READY_TIMEOUT:?}", self.kind.name());
            }
        }
    }

    /// The error for a consumer that closed stderr before it was ready.
    fn died_early(&mut self) -> anyhow::Error {
        let exit = match self.exit.recv_timeout(STOP_TIMEOUT) {
            Ok(Ok(exit)) => exit.describe(),
            Ok(Err(err)) => format!("wait4 failed: {err}"),
            Err(_) => "stderr closed".to_string(),
        };
        self.reaped = true;
        anyhow::anyhow!("{} stopped before it was ready ({exit}); last lines of its stderr:\n{}", self.kind.name(), self.stderr_tail())
    }

    /// The last lines of stderr of a consumer that has exited.
    fn stderr_tail(&mut self) -> String {
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        stderr[stderr.len().saturating_sub(STDERR_TAIL)..].join("\n")
    }

    /// Waits until the output file has not grown for `quiet` (bounded by
    /// `limit`); returns false if it was still growing at the limit.
    pub fn wait_quiet(&self, quiet: Duration, limit: Duration) -> Result<bool> {
        let start = Instant::now();
        let (mut size, mut since) = (self.output_len()?, Instant::now());
        loop {
            interrupt::check()?;
            thread::sleep(QUIET_POLL);
            let now = Instant::now();
            let current = self.output_len()?;
            if current != size {
                (size, since) = (current, now);
            } else if now - since >= quiet {
                return Ok(true);
            }
            if now - start >= limit {
                return Ok(false);
            }
        }
    }

    /// The socket filter's counters now; an eBPF consumer without one is an error.
    fn filter_stats(&self) -> Result<ProgStats> {
        let stats = bpf_stats::socket_filters(self.pid)?;
        if stats.programs == 0 {
            bail!("{} holds no socket filter program fd (pid {})", self.kind.name(), self.pid);
        }
        Ok(stats)
    }

    fn output_len(&self) -> Result<u64> {
        Ok(fs::metadata(&self.output).with_context(|| format!("reading {}", self.output.display()))?.len())
    }

    /// Sends `signal` (the reload test's SIGHUPs) to the running consumer.
    #[cfg(test)]
    pub fn signal(&self, signal: i32) -> Result<()> {
        process::signal(self.pid, signal)
    }

    /// SIGTERM, wait for exit, and report what the consumer used.
    pub fn stop(mut self) -> Result<Measured> {
        if let Ok(exit) = self.exit.try_recv() {
            self.reaped = true;
            if let (true, Ok(exit)) = (self.kind.may_exit_early(), &exit) {
                return Ok(self.exited_by_itself(*exit));
            }
            let exit = exit.map_or_else(|err| format!("wait4 failed: {err}"), |e| e.describe());
            bail!("{} exited during the run ({exit}); last lines of its stderr:\n{}", self.kind.name(), self.stderr_tail());
        }
        let peak_rss_kib = process::peak_rss_kib(self.pid)?;
        let filter = match self.filter_at_ready {
            Some(before) => Some(self.filter_stats()?.since(before)),
            None => None,
        };
        process::signal(self.pid, libc::SIGTERM)?;
        let exit = match self.exit.recv_timeout(STOP_TIMEOUT) {
            Ok(exit) => exit.context("waiting for the consumer")?,
            Err(_) => bail!("{} did not exit within {STOP_TIMEOUT:?} of SIGTERM", self.kind.name()),
        };
        self.reaped = true;
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let cpu_startup = self.cpu_at_ready;
        Ok(Measured { cpu_load: exit.cpu().saturating_sub(cpu_startup), cpu_startup, peak_rss_kib, exit, exited_at: None, filter, stderr })
    }

    /// A consumer that exited during the run: its CPU and peak RSS from
    /// `wait4` (`ru_maxrss` also covers `ip netns exec` before the exec).
    fn exited_by_itself(&mut self, exit: Exit) -> Measured {
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let cpu_startup = self.cpu_at_ready;
        Measured {
            cpu_load: exit.cpu().saturating_sub(cpu_startup),
            cpu_startup,
            peak_rss_kib: exit.maxrss_kib,
            exit,
            exited_at: Some(exit.at),
            filter: None,
            stderr,
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        if process::signal(self.pid, libc::SIGKILL).is_ok() {
            let _ = self.exit.recv_timeout(STOP_TIMEOUT);
        }
    }
}

/// Collects stderr lines (ANSI stripped); signals `ready` on the readiness line.
fn read_stderr(stderr: ChildStderr, ready: Sender<()>) -> Vec<String> {
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).split(b'\n') {
        let Ok(line) = line else { break };
        let line = parse::strip_ansi(&String::from_utf8_lossy(&line));
        if READY_MARKERS.iter().any(|m| line.contains(m)) {
            let _ = ready.send(());
        }
        lines.push(line);
    }
    lines
}
