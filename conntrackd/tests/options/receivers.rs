//! The real receivers of the sink cases, private to each case: rsyslogd in
//! the case's namespace, systemd-journald in its own mount namespace, and
//! VictoriaLogs (Loki's push API), each with the check that the case's event
//! arrived.
use serde_json::Value;

use crate::{
    harness::Cx,
    journald::Journald,
    loki_support::{victoria_logs_binary, VictoriaLogs},
    rsyslog::{port, require_rsyslogd, Received, Rsyslog},
};

/// Fails (not skips) when a receiver is missing, naming what installs it.
pub fn require_all() {
    require_rsyslogd();
    victoria_logs_binary();
    let journald = std::path::Path::new("/lib/systemd/systemd-journald");
    assert!(journald.exists(), "{} is missing: install the Debian package systemd (`cargo xtask setup` does)", journald.display());
}

/// Which inputs the case's rsyslogd opens.
#[derive(Debug, Clone, Copy)]
pub enum Input {
    Udp,
    Tcp,
    /// A unix datagram socket with rsyslog's regular parsers (RFC 5424 too).
    Unix,
}

pub struct Syslog {
    rs: Rsyslog,
    input: Input,
}

impl Syslog {
    pub fn start(cx: &Cx, input: Input) -> Self {
        let dir = cx.path("rsyslog");
        let rs = match input {
            Input::Udp => Rsyslog::start(&cx.ns, &dir, Some(port(0)), None, false),
            Input::Tcp => Rsyslog::start(&cx.ns, &dir, None, Some(port(1)), false),
            Input::Unix => Rsyslog::start(&cx.ns, &dir, None, None, true),
        };
        Self { rs, input }
    }

    /// The `sink.syslog.address` that reaches this receiver with `scheme`.
    pub fn address(&self, scheme: &str) -> String {
        match self.input {
            Input::Udp => format!("{scheme}://127.0.0.1:{}", port(0)),
            Input::Tcp => format!("{scheme}://127.0.0.1:{}", port(1)),
            Input::Unix => format!("{scheme}://{}", self.rs.unix_socket.as_ref().expect("socket").with_extension("5424").display()),
        }
    }

    /// Waits for the case's event (its source port in the JSON body) and
    /// checks what rsyslog parsed: our app name, the input it came in on.
    pub fn event(&self, cx: &Cx) -> Received {
        let needle = format!("\"src_port\":{},", cx.sport);
        let got = self.rs.wait_for(&format!("the event from port {}", cx.sport), |got| got.iter().any(|r| r.raw.contains(&needle)));
        let m = got.into_iter().find(|r| r.raw.contains(&needle)).expect("found");
        let input = match self.input {
            Input::Udp => "imudp",
            Input::Tcp => "imtcp",
            Input::Unix => "imuxsock",
        };
        assert_eq!((m.input.as_str(), m.app_name.as_str(), m.severity.as_str()), (input, "conntrackd", "info"), "{m:?}");
        let body = &m.raw[m.raw.find(" @cee: ").unwrap_or_else(|| panic!("no @cee body: {m:?}")) + 7..];
        let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("the body is not JSON ({e}): {m:?}"));
        assert_eq!(body["event"]["src_port"], cx.sport, "{body}");
        m
    }
}

/// A private systemd-journald.
pub fn journald(cx: &Cx) -> Journald {
    Journald::start(&cx.path("journal"))
}

/// The journal entry of the case's event.
pub fn journal_event(j: &Journald, cx: &Cx) -> Value {
    let port = format!("EVENT_SRC_PORT={}", cx.sport);
    let entries = j.wait_for(&["SYSLOG_IDENTIFIER=conntrackd", &port], |got| !got.is_empty());
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["_TRANSPORT"], "journal", "the native protocol: {}", entries[0]);
    assert_eq!(entries[0]["EVENT_DST_ADDR"], "8.8.8.8", "{}", entries[0]);
    entries[0].clone()
}

/// VictoriaLogs in the case's namespace.
pub fn victoria_logs(cx: &Cx) -> VictoriaLogs {
    VictoriaLogs::start(&cx.ns, &cx.path("vl"))
}

/// The `[sink.loki]` settings every Loki case shares: quick batches and retries.
pub const LOKI_TIMING: [(&str, &str); 4] =
    [("sink.loki.batch_wait", "200ms"), ("sink.loki.min_backoff", "200ms"), ("sink.loki.max_backoff", "1s"), ("sink.loki.timeout", "3s")];

/// The row VictoriaLogs stored for the case's event.
pub fn loki_row(vl: &VictoriaLogs, cx: &Cx) -> Value {
    let port = cx.sport.to_string();
    let is_ours = |r: &Value| r["src_port"] == port.as_str();
    let rows = vl.wait_rows(&format!("the row of port {port}"), |rows| rows.iter().any(is_ours));
    let ours: Vec<&Value> = rows.iter().filter(|r| is_ours(r)).collect();
    assert_eq!(ours.len(), 1, "exactly once: {ours:?}");
    ours[0].clone()
}
