//! Starting the daemon with extra flags, environment or readiness by
//! sd_notify ([`Launch`]), and stopping it within a time bound.
use std::{
    process::{Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use super::{forward, parse_counters, tempfile_path::TempPath, Daemon, Netns, Stopped, WAIT};

/// How [`Daemon::launch`] starts the daemon.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// A command prefix inside the namespace (e.g. capsh).
    pub prefix: Vec<String>,
    /// Flags after `run` (before `--config`).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Leave the log format to the config and flags (otherwise
    /// `--log.format=text`, the form the helpers read).
    pub own_log_format: bool,
    /// Wait for READY=1 on a private `NOTIFY_SOCKET` instead of the
    /// "conntrackd ready" line (which a log level above info hides).
    pub ready_by_notify: bool,
}

/// What a daemon left when it exited: every stdout line not read before,
/// every stderr line, and how long it took after SIGTERM.
#[derive(Debug)]
pub struct Exited {
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
    pub took: Duration,
}

/// A datagram socket for sd_notify messages, removed on drop.
pub(super) struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("conntrackd-test-notify-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind a notify socket");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("notify socket timeout");
        Self { socket, path }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Daemon {
    /// Starts `conntrackd run` in `ns` with `config` as `launch` says and waits until it is ready.
    pub fn launch(ns: &Netns, config: &str, launch: &Launch) -> Self {
        let config_file = TempPath::with_contents(config);
        let notify = launch.ready_by_notify.then(NotifySocket::new);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name]).args(&launch.prefix).args([env!("CARGO_BIN_EXE_conntrackd"), "run"]);
        if !launch.own_log_format {
            cmd.arg("--log.format=text");
        }
        cmd.args(&launch.args).arg("--config").arg(config_file.path()).env("NO_COLOR", "1");
        if let Some(n) = &notify {
            cmd.env("NOTIFY_SOCKET", &n.path);
        }
        let mut child =
            cmd.envs(launch.env.iter().map(|(k, v)| (k, v))).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("cannot start conntrackd");
        let lines = forward(child.stdout.take().expect("stdout"));
        let logs = forward(child.stderr.take().expect("stderr"));
        let mut daemon = Self {
            child,
            lines,
            logs,
            _config: config_file,
            seen_logs: std::cell::RefCell::new(Vec::new()),
            returned_logs: std::cell::Cell::new(0),
            _notify: notify,
        };
        if launch.ready_by_notify {
            daemon.wait_notify("READY=1");
        } else {
            daemon.wait_log("conntrackd ready");
        }
        daemon
    }

    /// Waits for `state` on the notify socket (fails if the daemon exits first).
    fn wait_notify(&mut self, state: &str) {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 512];
        loop {
            let n = self._notify.as_ref().expect("started with ready_by_notify").socket.recv(&mut buf);
            if n.is_ok_and(|n| &buf[..n] == state.as_bytes()) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("conntrackd exited with {status} before {state}:\n{}", self.logs_so_far());
            }
            assert!(Instant::now() < deadline, "conntrackd never sent {state}:\n{}", self.logs_so_far());
        }
    }

    /// Sends SIGTERM and requires exit status 0 within `limit`; returns the
    /// final counters and any stdout lines left.
    pub fn stop_within(self, limit: Duration) -> (Stopped, Vec<String>) {
        let exited = self.exit_within(limit);
        let all_logs = exited.stderr.join("\n");
        let line =
            exited.stderr.iter().rev().find(|l| l.contains("conntrackd stopped")).unwrap_or_else(|| panic!("no \"conntrackd stopped\" line:\n{all_logs}"));
        (Stopped { fields: parse_counters(line), log: line.clone(), all_logs }, exited.stdout)
    }

    /// Sends SIGTERM and requires exit status 0 within `limit` (the daemon is
    /// killed and the test fails otherwise); returns what it left.
    pub fn exit_within(mut self, limit: Duration) -> Exited {
        self.signal(libc::SIGTERM);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait conntrackd") {
                break status;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("conntrackd did not exit within {limit:?} of SIGTERM:\n{}", self.logs_so_far());
            }
            thread::sleep(Duration::from_millis(10));
        };
        let took = started.elapsed();
        let mut stderr = std::mem::take(&mut *self.seen_logs.borrow_mut());
        stderr.extend(drain(&self.logs));
        let stdout = drain(&self.lines);
        assert!(status.success(), "conntrackd exited with {status} after SIGTERM:\n{}", stderr.join("\n"));
        Exited { stdout, stderr, took }
    }
}

/// Every line left in a pipe whose writer has exited.
fn drain(rx: &Receiver<String>) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        match rx.recv_timeout(WAIT) {
            Ok(line) => out.push(line),
            Err(RecvTimeoutError::Disconnected) => return out,
            Err(RecvTimeoutError::Timeout) => panic!("a pipe of the daemon stayed open after it exited"),
        }
    }
}
