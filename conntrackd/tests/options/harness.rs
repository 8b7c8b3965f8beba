//! What every case uses: its namespace and directory, a config built from the
//! key table (`Setup`), the injected entry, and the checks on the daemon's
//! output and exit.
use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    common::{
        enter_netns,
        entry::Entry,
        launch::{Exited, Launch},
        Daemon, Netns, Stopped, WAIT,
    },
    keys,
    loki_support::TempDir,
};

/// SIGTERM must end the daemon, with status 0, within this.
pub const STOP: Duration = Duration::from_secs(5);

/// The rules of every case: TCP to public addresses (the injected entry) is logged.
const RULES: [&str; 2] = ["log protocol tcp and destination network public", "drop any"];

/// One case's world: a fresh namespace (the case's thread is in it), a
/// private directory, and the source port of its injected entry.
pub struct Cx {
    pub ns: Netns,
    pub dir: TempDir,
    pub sport: u16,
    /// How long SIGTERM took to end the daemon(s).
    pub exits: Mutex<Vec<Duration>>,
}

impl Cx {
    pub fn new(index: usize, name: &str) -> Self {
        let ns = Netns::new(&format!("m{index}"));
        enter_netns(&ns.name);
        let dir = TempDir::new(&format!("matrix-{index}"));
        std::fs::write(dir.0.join("case"), name).expect("write the case name");
        Self { ns, dir, sport: 40_000 + index as u16, exits: Mutex::new(Vec::new()) }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// Creates the case's entry 10.99.0.1:sport -> 8.8.8.8:443 (one NEW event; no packet is sent).
    pub fn inject(&self) {
        Entry::tcp("10.99.0.1", "8.8.8.8", self.sport, 443).insert(&self.ns);
    }

    /// Checks that a stream line is this case's event.
    pub fn assert_event(&self, event: &Value) {
        assert_eq!(
            (&event["type"], &event["src_port"], &event["dst_addr"]),
            (&Value::from("NEW"), &Value::from(self.sport), &Value::from("8.8.8.8")),
            "{event}"
        );
    }

    /// The next stdout line is this case's event.
    pub fn stdout_event(&self, d: &Daemon) -> Value {
        let event = d.next_event();
        self.assert_event(&event);
        event
    }

    /// SIGTERM: exit 0 within [`STOP`]; the final counters and the stdout lines left.
    pub fn stop(&self, d: Daemon) -> (Stopped, Vec<String>) {
        let started = Instant::now();
        let out = d.stop_within(STOP);
        self.exits.lock().unwrap().push(started.elapsed());
        out
    }

    /// Like [`Cx::stop`] for a daemon whose log hides the "stopped" line.
    pub fn exit(&self, d: Daemon) -> Exited {
        let exited = d.exit_within(STOP);
        self.exits.lock().unwrap().push(exited.took);
        exited
    }

    /// A one-line summary of the case's SIGTERM timings.
    pub fn exit_summary(&self) -> String {
        let exits = self.exits.lock().unwrap();
        exits.iter().map(|t| format!("exit 0 after SIGTERM in {:.2} s", t.as_secs_f64())).collect::<Vec<_>>().join(", ")
    }
}

/// A key set in the file, by a flag or by an environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    File,
    Flag,
    Env,
}

/// The daemon's configuration: a TOML document built with the key table's
/// own conversion (so a boolean key is written as a boolean), plus flags
/// and environment.
pub struct Setup {
    doc: toml::Table,
    pub launch: Launch,
}

impl Setup {
    /// The case rules, no sink yet.
    pub fn new() -> Self {
        let mut s = Self { doc: toml::Table::new(), launch: Launch::default() };
        s.doc.insert("filter".into(), toml::Value::Array(RULES.iter().map(|r| toml::Value::String(r.to_string())).collect()));
        s
    }

    /// The stream sink on stdout.
    pub fn stream() -> Self {
        Self::new().set("sink.stream.enable", "true")
    }

    /// Sets `path` in the file.
    pub fn set(self, path: &'static str, value: &str) -> Self {
        self.via(Via::File, path, value)
    }

    pub fn via(mut self, via: Via, path: &'static str, value: &str) -> Self {
        assert!(keys::all().iter().any(|k| k.path == path), "{path} is not in the key table");
        match via {
            Via::File => keys::apply_flags(&mut self.doc, &[(path, vec![value.to_string()])]).unwrap_or_else(|e| panic!("{e}")),
            Via::Flag => self.launch.args.push(format!("--{path}={value}")),
            Via::Env => self.launch.env.push((keys::env_name(path), value.to_string())),
        }
        self
    }

    pub fn text(&self) -> String {
        toml::to_string(&self.doc).expect("serialize the config")
    }

    /// Starts the daemon and waits until it is ready.
    pub fn start(&self, cx: &Cx) -> Daemon {
        Daemon::launch(&cx.ns, &self.text(), &self.launch)
    }

    /// Runs the daemon expecting it to refuse to start on its own: (exit code, stderr).
    pub fn refused(&self, cx: &Cx) -> (Option<i32>, String) {
        let path = cx.path("refused.toml");
        std::fs::write(&path, self.text()).expect("write config");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &cx.ns.name, env!("CARGO_BIN_EXE_conntrackd"), "run", "--config"])
            .arg(&path)
            .args(&self.launch.args)
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run conntrackd");
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait conntrackd") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("conntrackd should have refused to start but was still running after {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("read stderr");
        (status.code(), stderr)
    }
}

/// The level of a text log line (`<RFC 3339 time> <LEVEL> <message> ...`), if it is one.
pub fn text_level(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    let time = words.next()?;
    let is_time = time.len() >= 20 && time.as_bytes()[..4].iter().all(u8::is_ascii_digit) && time.as_bytes()[4] == b'-' && time.contains('T');
    words.next().filter(|l| is_time && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(l))
}

/// Text log records: a line that does not start a record continues the one
/// before (multi-line messages and values). The first line must start one.
pub fn text_records(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        match out.last_mut() {
            Some(last) if text_level(line).is_none() => {
                last.push('\n');
                last.push_str(line);
            }
            None if text_level(line).is_none() => panic!("not a text log line: {line}"),
            _ => out.push(line.clone()),
        }
    }
    out
}

/// The value of `name=` in a text log line, without quotes.
pub fn text_field(line: &str, name: &str) -> Option<String> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[at..];
    let value = match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"')?],
        None => rest.split_whitespace().next()?,
    };
    Some(value.to_string())
}

/// The source a "conntrackd ready" line reports.
pub fn ready_source(d: &Daemon) -> String {
    let logs = d.logs_so_far();
    let line = logs.lines().find(|l| l.contains("conntrackd ready")).expect("a ready line").to_string();
    text_field(&line, "source").unwrap_or_else(|| panic!("no source= in {line}"))
}

/// Fails unless no sink counters of `sink` are in the stopped line (the sink never ran).
pub fn assert_not_running(stopped: &Stopped, sink: &str) {
    let prefix = format!("{sink}.");
    assert!(!stopped.fields.iter().any(|(k, _)| k.starts_with(&prefix)), "the {sink} sink ran: {}", stopped.log);
}

/// Polls the daemon's /metrics on 127.0.0.1:`port` (the calling thread is
/// in its namespace) until `sink` has sent `n` events.
pub fn wait_sent(port: u16, sink: &str, n: u64) {
    let series = format!("conntrackd_sink_events_total{{sink=\"{sink}\",result=\"sent\"}} {n}");
    let deadline = Instant::now() + WAIT;
    loop {
        let body = ureq::get(&format!("http://127.0.0.1:{port}/metrics")).call().ok().and_then(|r| r.into_string().ok()).unwrap_or_default();
        if body.lines().any(|l| l == series) {
            return;
        }
        assert!(Instant::now() < deadline, "/metrics never showed {series}:\n{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
