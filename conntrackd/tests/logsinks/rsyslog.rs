//! A private rsyslogd for the tests: started in the test's network namespace
//! with its own config, work directory and unix socket (never the system's
//! /dev/log: `SysSock.Use="off"`), writing every message to a file with the
//! fields rsyslog parsed from our header and the raw message.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::common::{Netns, WAIT};

/// One line of rsyslog's output file.
#[derive(Debug, Clone)]
pub struct Received {
    pub facility: String,
    pub severity: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    pub input: String,
    pub raw: String,
}

pub struct Rsyslog {
    ns: String,
    dir: PathBuf,
    child: Option<Child>,
    pub udp_port: Option<u16>,
    pub tcp_port: Option<u16>,
    pub unix_socket: Option<PathBuf>,
}

/// A port for the test's own namespace (nothing else listens there),
/// different per test process.
pub fn port(offset: u16) -> u16 {
    20_000 + (std::process::id() % 20_000) as u16 + offset
}

pub fn require_rsyslogd() {
    let found = Command::new("rsyslogd").arg("-v").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(found, "rsyslogd is missing: install the Debian package rsyslog (`cargo xtask setup` does)");
}

impl Rsyslog {
    /// Starts rsyslogd in `ns` with the inputs asked for; waits until they listen.
    pub fn start(ns: &Netns, dir: &Path, udp_port: Option<u16>, tcp_port: Option<u16>, unix: bool) -> Self {
        require_rsyslogd();
        std::fs::create_dir_all(dir.join("work")).expect("rsyslog work dir");
        let unix_socket = unix.then(|| dir.join("log.sock"));
        let mut conf = format!(
            "global(workDirectory=\"{work}\" maxMessageSize=\"64k\")\n\
             module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
             template(name=\"fields\" type=\"string\" string=\"%syslogfacility-text%\\t%syslogseverity-text%\\t%hostname%\\t%app-name%\\t%procid%\\t%msgid%\\t%inputname%\\t%rawmsg%\\n\")\n",
            work = dir.join("work").display()
        );
        if let Some(port) = udp_port {
            conf += &format!("module(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\")\n");
        }
        if let Some(port) = tcp_port {
            conf += &format!("module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n");
        }
        if let Some(socket) = &unix_socket {
            // The syslog(3) format (RFC 3164 without hostname), as on /dev/log.
            conf += &format!("input(type=\"imuxsock\" Socket=\"{}\" RateLimit.Interval=\"0\")\n", socket.display());
            // Any format, parsed by rsyslog's regular parsers (RFC 5424 included).
            conf +=
                &format!("input(type=\"imuxsock\" Socket=\"{}\" RateLimit.Interval=\"0\" UseSpecialParser=\"off\")\n", socket.with_extension("5424").display());
        }
        conf += &format!("*.* action(type=\"omfile\" file=\"{}\" template=\"fields\")\n", dir.join("out.log").display());
        std::fs::write(dir.join("rsyslog.conf"), conf).expect("write rsyslog.conf");
        let mut r = Self { ns: ns.name.clone(), dir: dir.into(), child: None, udp_port, tcp_port, unix_socket };
        r.restart();
        r
    }

    /// (Re)starts rsyslogd with the same config, ports and output file.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "rsyslogd already running");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "rsyslogd", "-n", "-f"])
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start rsyslogd");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let tcp = self.tcp_port.is_none_or(|p| self.listening("-Hltn", p));
            let udp = self.udp_port.is_none_or(|p| self.listening("-Hlun", p));
            let unix = self.unix_socket.as_ref().is_none_or(|s| s.exists() && s.with_extension("5424").exists());
            if tcp && udp && unix {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("rsyslogd exited with {status} (config {})", self.dir.join("rsyslog.conf").display());
            }
            assert!(Instant::now() < deadline, "rsyslogd did not open its inputs within {WAIT:?}");
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn listening(&self, flags: &str, port: u16) -> bool {
        let out = Command::new("ip").args(["netns", "exec", &self.ns, "ss", flags, &format!("sport = :{port}")]).output();
        out.is_ok_and(|o| !o.stdout.is_empty())
    }

    /// SIGTERM (rsyslogd writes what it has and closes its connections), then wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child (ip netns exec execs rsyslogd).
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Every message written so far.
    pub fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(self.dir.join("out.log")).unwrap_or_default();
        text.lines().filter_map(parse_line).collect()
    }

    /// Polls the output file until `done` holds for the received messages.
    pub fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + 2 * WAIT;
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "rsyslog never received {what}; it has: {got:#?}");
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn parse_line(line: &str) -> Option<Received> {
    let mut parts = line.splitn(8, '\t');
    let mut next = || parts.next().map(str::to_string);
    Some(Received { facility: next()?, severity: next()?, hostname: next()?, app_name: next()?, procid: next()?, msgid: next()?, input: next()?, raw: next()? })
}
