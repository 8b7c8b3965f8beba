//! A private systemd-journald for the tests. It runs in its own mount
//! namespace (`unshare -m`) with a tmpfs on /run, so it never touches the
//! host's journal: the test's directories are bind-mounted on
//! /run/systemd/journal (its sockets appear in `<dir>/sock`) and on
//! /run/log/journal (its files appear in `<dir>/store`), and a drop-in in
//! the private /run/systemd/journald.conf.d keeps it volatile, without kmsg,
//! forwarding or rate limits.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::WAIT;

const JOURNALD: &str = "/lib/systemd/systemd-journald";

pub struct Journald {
    child: Child,
    store: PathBuf,
    /// The native-protocol socket to give `[sink.journal] socket`.
    pub socket: PathBuf,
}

const SCRIPT: &str = r#"set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal /run/systemd/journald.conf.d
mount --bind "$1" /run/systemd/journal
mount --bind "$2" /run/log/journal
printf '[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\nForwardToWall=no\nForwardToConsole=no\nRateLimitBurst=0\n' \
  > /run/systemd/journald.conf.d/conntrackd-test.conf
exec "$3"
"#;

impl Journald {
    pub fn start(dir: &Path) -> Self {
        assert!(
            Path::new(JOURNALD).exists() && Command::new("journalctl").arg("--version").stdout(Stdio::null()).status().is_ok(),
            "{JOURNALD} or journalctl is missing: install the Debian package systemd (`cargo xtask setup` does)"
        );
        let (sock, store) = (dir.join("sock"), dir.join("store"));
        for d in [&sock, &store] {
            std::fs::create_dir_all(d).expect("journald dirs");
        }
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", SCRIPT, "journald-test"])
            .args([&sock, &store])
            .arg(JOURNALD)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run unshare (util-linux)");
        let mut j = Self { child, store, socket: sock.join("socket") };
        let deadline = Instant::now() + WAIT;
        while !(j.socket.exists() && j.has_journal_file()) {
            if let Ok(Some(status)) = j.child.try_wait() {
                panic!("systemd-journald exited with {status} before opening {}", j.socket.display());
            }
            assert!(Instant::now() < deadline, "systemd-journald did not open {} within {WAIT:?}", j.socket.display());
            thread::sleep(Duration::from_millis(50));
        }
        j
    }

    fn has_journal_file(&self) -> bool {
        walk(&self.store).iter().any(|p| p.extension().is_some_and(|e| e == "journal"))
    }

    /// Entries journald stored that match `journalctl` `matches`, e.g. `SYSLOG_IDENTIFIER=conntrackd`.
    pub fn entries(&self, matches: &[&str]) -> Vec<Value> {
        let out = Command::new("journalctl")
            .arg("--directory")
            .arg(&self.store)
            .args(["--no-pager", "--all", "-o", "json"])
            .args(matches)
            .output()
            .expect("run journalctl");
        assert!(out.status.success(), "journalctl failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("journalctl JSON")).collect()
    }

    /// Polls until `done` holds for the entries matching `matches`.
    pub fn wait_for(&self, matches: &[&str], done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.entries(matches);
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "journald never stored the entries {matches:?}; it has {got:#?}");
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child (sh execs journald in place).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}

/// A journal field as bytes: journalctl prints text as a string and
/// binary-safe values (newlines, non-UTF-8) as an array of numbers.
pub fn field_bytes(entry: &Value, name: &str) -> Option<Vec<u8>> {
    match entry.get(name)? {
        Value::String(s) => Some(s.clone().into_bytes()),
        Value::Array(a) => a.iter().map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok())).collect(),
        _ => None,
    }
}
