//! Syslog message encoding: RFC 5424 or RFC 3164 header, `@cee:` JSON body,
//! and RFC 6587 octet-counting framing for stream transports.
//!
//! Body: the original's keys, `@cee: {"event":{<every event field, contract
//! order>},"level":"INFO","logger.name":"conntrackd","logger.version":"<version>",
//! "message":"<message text>","timestamp":"<RFC 3339>"}`.
use std::io::Write;

use crate::{
    event::{time::write_rfc3339, Event},
    sink::json,
};

/// `logger.version` of the body.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// RFC 5424 APP-NAME and RFC 3164 TAG.
pub(crate) const APP_NAME: &str = "conntrackd";

#[derive(Debug, thiserror::Error)]
pub(crate) enum FormatError {
    #[error("expected a facility name (kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, local0..local7), found {0:?}")]
    Facility(String),
    #[error("expected a severity name (emerg, alert, crit, err, warning, notice, info, debug), found {0:?}")]
    Severity(String),
}

crate::schema::choice! {
    /// Header format.
    pub(crate) enum Format { Rfc5424 = "rfc5424", Rfc3164 = "rfc3164" }
}

/// The names of a (name, code) table, for the key table.
// Only evaluated in consts (an index out of range would be a build error); `i < N` anyway.
#[allow(clippy::indexing_slicing)]
const fn names<const N: usize>(table: [(&'static str, u8); N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = table[i].0;
        i += 1;
    }
    out
}

const FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// A syslog facility code (RFC 5424 table 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facility(u8);

impl Facility {
    pub const DAEMON: Self = Self(3);
    /// Every facility's name.
    pub const NAMES: [&'static str; FACILITIES.len()] = names(FACILITIES);

    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let lower = text.to_ascii_lowercase();
        FACILITIES.iter().find(|(name, _)| *name == lower).map(|&(_, code)| Self(code)).ok_or(FormatError::Facility(text.into()))
    }

    /// The facility's name, as configured.
    pub fn name(self) -> &'static str {
        FACILITIES.iter().find(|&&(_, code)| code == self.0).map_or("?", |&(name, _)| name)
    }

    /// PRI = facility * 8 + severity (at most 23 * 8 + 7 = 191: both come from tables).
    pub fn pri(self, severity: Severity) -> u8 {
        self.0 * 8 + severity.0
    }
}

/// RFC 5424 severities (table 2), with rsyslog's aliases `error` and `warn`.
const SEVERITIES: [(&str, u8); 10] =
    [("emerg", 0), ("alert", 1), ("crit", 2), ("err", 3), ("error", 3), ("warning", 4), ("warn", 4), ("notice", 5), ("info", 6), ("debug", 7)];

/// The header's severity: every message has the same (events are logged at
/// INFO; `notice` is what rsyslog gives the original's header-less messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Severity(u8);

impl Severity {
    pub const INFO: Self = Self(6);
    /// Every severity's RFC 5424 name (rsyslog's aliases `error` and `warn` are accepted too).
    pub const NAMES: [&'static str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let lower = text.to_ascii_lowercase();
        SEVERITIES.iter().find(|(name, _)| *name == lower).map(|&(_, code)| Self(code)).ok_or(FormatError::Severity(text.into()))
    }

    /// The severity's RFC 5424 name.
    pub fn name(self) -> &'static str {
        SEVERITIES.iter().find(|&&(_, code)| code == self.0).map_or("?", |&(name, _)| name)
    }
}

/// What every message's header carries besides the time.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub format: Format,
    pub facility: Facility,
    pub severity: Severity,
    /// Printable ASCII without spaces (see [`clean_hostname`]).
    pub hostname: String,
    pub procid: u32,
    /// A local (unix socket) receiver: the RFC 3164 form then omits the
    /// hostname, as syslog(3) does and as /dev/log readers expect.
    pub local: bool,
}

impl Header {
    /// Appends header and body of one message (no framing, no newline).
    pub fn write_message(&self, out: &mut Vec<u8>, ev: &Event) {
        match self.format {
            Format::Rfc5424 => {
                let _ = write!(out, "<{}>1 ", self.facility.pri(self.severity));
                write_rfc3339(out, ev.time_ns);
                // MSGID is the event type, so receivers can filter without parsing JSON.
                let _ = write!(out, " {} {APP_NAME} {} {} - ", self.hostname, self.procid, ev.kind.as_str());
            }
            Format::Rfc3164 => {
                let _ = write!(out, "<{}>", self.facility.pri(self.severity));
                write_rfc3164_time(out, ev.time_ns);
                if !self.local {
                    let _ = write!(out, " {}", self.hostname);
                }
                let _ = write!(out, " {APP_NAME}[{}]: ", self.procid);
            }
        }
        write_body(out, ev);
    }
}

/// `@cee: {"event":{..},"level":"INFO","logger.name":..,"logger.version":..,
/// "message":..,"timestamp":..}`: the original's keys, in its (sorted) order.
pub(crate) fn write_body(out: &mut Vec<u8>, ev: &Event) {
    out.extend_from_slice(b"@cee: {\"event\":{");
    let mut first = true;
    ev.for_each_field(|name, value| {
        if !first {
            out.push(b',');
        }
        first = false;
        let _ = write!(out, "\"{name}\":");
        json::write_value(out, value);
    });
    let _ = write!(out, "}},\"level\":\"INFO\",\"logger.name\":\"{APP_NAME}\",\"logger.version\":\"{VERSION}\",\"message\":\"");
    json::write_message(out, ev);
    out.extend_from_slice(b"\",\"timestamp\":\"");
    write_rfc3339(out, ev.time_ns);
    out.extend_from_slice(b"\"}");
}

/// RFC 6587 octet counting: `<length> <message>`.
pub(crate) fn frame_octet_counting(out: &mut Vec<u8>, message: &[u8]) {
    let _ = write!(out, "{} ", message.len());
    out.extend_from_slice(message);
}

/// `Mmm dd hh:mm:ss` in local time, day padded with a space (RFC 3164 4.1.2).
fn write_rfc3164_time(out: &mut Vec<u8>, ns: i128) {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = libc::time_t::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(libc::time_t::MAX);
    // SAFETY: all-zero is a valid tm; localtime_r only writes into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a time_t and a tm.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        out.extend_from_slice(b"Jan  1 00:00:00");
        return;
    }
    let month = usize::try_from(tm.tm_mon).ok().and_then(|m| MONTHS.get(m)).unwrap_or(&"Jan");
    let _ = write!(out, "{month} {:>2} {:02}:{:02}:{:02}", tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/// The machine's hostname as a header field: printable ASCII, no spaces,
/// at most 255 bytes; `-` (the RFC 5424 nil value) when empty.
pub(crate) fn clean_hostname(raw: &str) -> String {
    let name: String = raw.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    if name.is_empty() {
        "-".into()
    } else {
        name
    }
}

/// The host's name as a header field (`-` when it has none).
pub(crate) fn hostname() -> String {
    clean_hostname(crate::host::hostname().as_deref().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn header(format: Format) -> Header {
        Header { format, facility: Facility::DAEMON, severity: Severity::INFO, hostname: "sparrow".into(), procid: 77, local: false }
    }

    fn event() -> Event {
        // 2026-11-28T05:03:17.123456Z, minus the record's ktime of 1000 ns.
        crate::event::tests::tcp_v4_event(1_795_842_197_123_456_000 - 1_000)
    }

    #[test]
    fn pri_from_facility_and_severity() {
        let info = Severity::INFO;
        assert_eq!(Facility::DAEMON.pri(info), 30);
        assert_eq!(Facility::parse("KERN").unwrap().pri(info), 6);
        assert_eq!(Facility::parse("local7").unwrap().pri(info), 190);
        assert_eq!(Facility::parse("authpriv").unwrap().pri(info), 86);
        assert!(Facility::parse("local8").unwrap_err().to_string().contains("\"local8\""));
        // user.notice, what rsyslog assigns the original's messages.
        assert_eq!(Facility::parse("user").unwrap().pri(Severity::parse("NOTICE").unwrap()), 13);
        assert_eq!(Severity::parse("warn").unwrap(), Severity::parse("warning").unwrap());
        assert_eq!((Severity::parse("emerg").unwrap().name(), Severity::parse("debug").unwrap().name()), ("emerg", "debug"));
        assert!(Severity::parse("verbose").unwrap_err().to_string().contains("\"verbose\""));
        use crate::schema::Choice;
        assert!(Format::from_name("rfc5425").is_none());
        assert_eq!(Format::from_name("RFC3164").unwrap(), Format::Rfc3164);
        assert!(Severity::NAMES.iter().all(|n| Severity::parse(n).is_ok_and(|s| s.name() == *n)), "the names are the canonical ones");
    }

    #[test]
    fn rfc5424_header_and_cee_body() {
        let mut out = Vec::new();
        header(Format::Rfc5424).write_message(&mut out, &event());
        let text = String::from_utf8(out).unwrap();
        let head = "<30>1 2026-11-28T05:03:17.123456Z sparrow conntrackd 77 NEW - @cee: ";
        assert!(text.starts_with(head), "{text}");
        let body: serde_json::Value = serde_json::from_str(&text[head.len()..]).unwrap();
        let top: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(top, ["event", "level", "logger.name", "logger.version", "message", "timestamp"], "the original's keys");
        assert_eq!(body["message"], "NEW TCP connection from 10.99.0.1:40002 to 8.8.8.8:443");
        assert_eq!(body["timestamp"], "2026-11-28T05:03:17.123456Z");
        assert_eq!(body["level"], "INFO");
        assert_eq!((&body["logger.name"], &body["logger.version"]), (&"conntrackd".into(), &env!("CARGO_PKG_VERSION").into()));
        let keys: Vec<&String> = body["event"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["type", "flow", "prot", "src_addr", "dst_addr", "src_port", "dst_port", "tcp_state", "pid", "uid", "comm", "mark"]);
        assert_eq!(body["event"]["dst_port"], 443);
        assert_eq!(body["event"]["comm"], "curl");
    }

    #[test]
    fn rfc3164_header_in_local_time() {
        let mut out = Vec::new();
        let ev = event();
        header(Format::Rfc3164).write_message(&mut out, &ev);
        let text = String::from_utf8(out).unwrap();
        // Expected local time, computed independently with strftime.
        let secs = (ev.time_ns / 1_000_000_000) as libc::time_t;
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let mut buf = [0u8; 32];
        let n = unsafe {
            libc::localtime_r(&secs, &mut tm);
            libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c"%b %e %H:%M:%S".as_ptr(), &tm)
        };
        let stamp = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with(&format!("<30>{stamp} sparrow conntrackd[77]: @cee: {{")), "{text}");
        assert_eq!(stamp.len(), 15, "{stamp}");
        let mut out = Vec::new();
        Header { local: true, ..header(Format::Rfc3164) }.write_message(&mut out, &ev);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(&format!("<30>{stamp} conntrackd[77]: @cee: {{")), "no hostname on /dev/log: {text}");
        let mut out = Vec::new();
        Header { local: true, ..header(Format::Rfc5424) }.write_message(&mut out, &ev);
        assert!(out.starts_with(b"<30>1 2026-11-28T05:03:17.123456Z sparrow conntrackd 77 NEW - "), "RFC 5424 keeps every field");
    }

    #[test]
    fn octet_counting_counts_bytes() {
        let mut out = Vec::new();
        frame_octet_counting(&mut out, "<30>1 é".as_bytes());
        assert_eq!(out, "8 <30>1 é".as_bytes());
    }

    #[test]
    fn hostnames_are_cleaned() {
        assert_eq!(clean_hostname("a b\tc"), "abc");
        assert_eq!(clean_hostname(""), "-");
        assert_eq!(clean_hostname(&"x".repeat(300)).len(), 255);
        assert!(!hostname().is_empty());
    }
}
