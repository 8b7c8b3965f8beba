//! The journal and syslog sinks against the real receivers: rsyslogd over
//! UDP, TCP and a unix socket, and systemd-journald, all private to the test.
//! The daemon runs in a network namespace and sees entries injected with
//! `conntrack -I`. Needs root (`cargo xtask test`).
#[path = "../common/mod.rs"]
mod common;
mod journald;
mod rsyslog;

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::Duration,
};

use common::{entry::Entry, require_root_and_tools, Daemon, Netns};
use journald::{field_bytes, Journald};
use rsyslog::{port, Received, Rsyslog};
use serde_json::{Map, Value};

/// A private directory under /tmp, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("ctd-logsinks-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The daemon's config: only NEW events, the given sink tables.
fn config(sinks: &str) -> String {
    format!("filter = [\"log type NEW\", \"drop any\"]\n{sinks}")
}

/// The event fields of a stream line (everything but time, level, msg), in order.
fn event_fields(line: &Value) -> Map<String, Value> {
    let all = line.as_object().expect("object");
    all.iter().filter(|(k, _)| !["time", "level", "msg"].contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Process details read from /proc exist only while the process lives, so
/// two daemons attributing the same short-lived `conntrack` may differ there.
const TIMING_DEPENDENT: [&str; 4] = ["exe", "cgroup", "container_id", "unit"];

/// `body.event` has exactly the stream line's event fields: same names, values, order.
fn assert_event(body: &Value, line: &Value) {
    let keep = |(k, _): &(&String, &Value)| !TIMING_DEPENDENT.contains(&k.as_str());
    let got: Vec<(&String, &Value)> = body["event"].as_object().expect("event object").iter().filter(keep).collect();
    let want = event_fields(line);
    assert_eq!(got, want.iter().filter(keep).collect::<Vec<_>>(), "every field, same values, same order");
}

/// Splits a raw RFC 5424 message into its six header fields and the JSON body.
fn split_5424(raw: &str) -> (Vec<&str>, Value) {
    let (head, body) = raw.split_once(" @cee: ").unwrap_or_else(|| panic!("no @cee body in {raw:?}"));
    let fields: Vec<&str> = head.split(' ').collect();
    assert_eq!(fields.len(), 7, "PRI+VERSION TIMESTAMP HOST APP PROCID MSGID SD in {raw:?}");
    assert_eq!(fields[6], "-", "no structured data: {raw:?}");
    (fields, serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body}")))
}

fn hostname() -> String {
    let out = Command::new("hostname").output().expect("run hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The message of `flow` from `input` whose raw text starts with `pri`, if rsyslog got it.
fn from_input<'a>(got: &'a [Received], input: &str, pri: &str, flow: &Value) -> Option<&'a Received> {
    got.iter().find(|r| r.input == input && r.raw.starts_with(pri) && r.raw.contains(&format!("\"flow\":{flow},")))
}

#[test]
fn syslog_over_udp_tcp_and_unix_reaches_rsyslog_with_every_field() {
    require_root_and_tools();
    let ns = Netns::new("syslog");
    let dir = TempDir::new("syslog");
    let rs = Rsyslog::start(&ns, dir.path(), Some(port(0)), Some(port(1)), true);
    let socket = rs.unix_socket.clone().expect("unix socket");
    let udp = Daemon::start(&ns, &config(&format!("[sink.stream]\nenable = true\n[sink.syslog]\nenable = true\naddress = \"udp://127.0.0.1:{}\"\n", port(0))));
    let tcp = Daemon::start(
        &ns,
        &config(&format!(
            "[sink.syslog]\nenable = true\naddress = \"tcp://127.0.0.1:{}\"\nformat = \"rfc5424\"\nfacility = \"local4\"\nseverity = \"notice\"\n",
            port(1)
        )),
    );
    let unix = Daemon::start(&ns, &config(&format!("[sink.syslog]\nenable = true\naddress = \"unix://{}\"\nformat = \"rfc3164\"\n", socket.display())));
    let unixgram = Daemon::start(
        &ns,
        &config(&format!("[sink.syslog]\nenable = true\naddress = \"unixgram://{}\"\nfacility = \"local2\"\n", socket.with_extension("5424").display())),
    );

    Entry::tcp("10.99.0.1", "8.8.8.8", 40100, 443).established().mark(42).insert(&ns);
    let line = udp.next_event();
    let flow = line["flow"].clone();
    let names: Vec<String> = event_fields(&line).keys().cloned().collect();
    // Process details beyond pid/uid/comm depend on whether conntrack is still running when attributed.
    assert_eq!(names[..11], ["type", "flow", "prot", "src_addr", "dst_addr", "src_port", "dst_port", "tcp_state", "pid", "uid", "comm"]);
    assert_eq!(names[names.len().saturating_sub(2)..], ["mark", "community_id"]);
    let wanted = [("imudp", "<30>1 "), ("imtcp", "<165>1 "), ("imuxsock", "<30>"), ("imuxsock", "<150>1 ")];
    let got = rs.wait_for("one message per transport", |got| wanted.iter().all(|(input, pri)| from_input(got, input, pri, &flow).is_some()));
    let host = hostname();

    // UDP, RFC 5424, facility daemon: the header is the event's, the body carries every field.
    let m = from_input(&got, "imudp", "<30>1 ", &flow).expect("udp");
    assert_eq!((m.facility.as_str(), m.severity.as_str(), m.app_name.as_str(), m.msgid.as_str()), ("daemon", "info", "conntrackd", "NEW"), "{m:?}");
    assert_eq!(m.hostname, host, "{m:?}");
    let (head, body) = split_5424(&m.raw);
    assert_eq!(head[..3], ["<30>1", line["time"].as_str().unwrap(), host.as_str()], "{m:?}");
    assert_eq!((head[3], head[4]), ("conntrackd", m.procid.as_str()));
    assert!(m.procid.parse::<u32>().is_ok(), "{m:?}");
    assert_eq!(body["message"], line["msg"]);
    assert_eq!(body["timestamp"], line["time"]);
    assert_eq!(body["level"], "INFO");
    assert_eq!(body["logger.name"], "conntrackd");
    assert_event(&body, &line);

    // TCP (octet counting, which rsyslog's imtcp decodes), local4.notice.
    let m = from_input(&got, "imtcp", "<165>1 ", &flow).expect("tcp");
    assert_eq!((m.facility.as_str(), m.severity.as_str(), m.app_name.as_str(), m.hostname.as_str()), ("local4", "notice", "conntrackd", host.as_str()));
    let (head, body) = split_5424(&m.raw);
    assert_eq!(head[0], "<165>1");
    assert_event(&body, &line);

    // unix:// (rsyslog's imuxsock is a datagram socket), RFC 3164 in the
    // syslog(3) form without hostname, as /dev/log readers expect.
    let m = from_input(&got, "imuxsock", "<30>", &flow).expect("unix");
    assert_eq!((m.facility.as_str(), m.severity.as_str(), m.app_name.as_str()), ("daemon", "info", "conntrackd"), "{m:?}");
    let tag = format!(" conntrackd[{}]: @cee: ", m.procid);
    let (head, body) = m.raw.split_once(&tag).unwrap_or_else(|| panic!("no RFC 3164 tag {tag:?} in {:?}", m.raw));
    assert!(head.starts_with("<30>") && head.len() == 4 + 15, "PRI and `Mmm dd hh:mm:ss`: {head:?}");
    let body: Value = serde_json::from_str(body).expect("JSON body");
    assert_event(&body, &line);

    // unixgram://, RFC 5424, facility local2, to a socket with rsyslog's regular parsers.
    let m = from_input(&got, "imuxsock", "<150>1 ", &flow).expect("unixgram");
    assert_eq!((m.facility.as_str(), m.app_name.as_str(), m.msgid.as_str()), ("local2", "conntrackd", "NEW"), "{m:?}");
    let (head, body) = split_5424(&m.raw);
    assert_eq!((head[2], head[4]), (host.as_str(), m.procid.as_str()));
    assert_event(&body, &line);

    for d in [udp, tcp, unix, unixgram] {
        let (stopped, _) = d.stop();
        assert_eq!(stopped.get("syslog.written"), 1, "{}", stopped.log);
        assert_eq!(stopped.get("syslog.dropped_queue_full") + stopped.get("syslog.dropped_write_error"), 0, "{}", stopped.log);
    }
}

/// Two daemons see the same events: `d` with the default queue, `small`
/// with room for one queued event while the receiver is away.
#[test]
fn syslog_tcp_receiver_outage_queues_and_counts_overflow() {
    require_root_and_tools();
    let ns = Netns::new("sysout");
    let dir = TempDir::new("sysout");
    let mut rs = Rsyslog::start(&ns, dir.path(), None, Some(port(2)), false);
    let d = Daemon::start(&ns, &config(&format!("[sink.stream]\nenable = true\n[sink.syslog]\nenable = true\naddress = \"tcp://127.0.0.1:{}\"\n", port(2))));
    let small = Daemon::start(&ns, &config(&format!("[sink.syslog]\nenable = true\naddress = \"tcp://127.0.0.1:{}\"\nqueue_events = 1\n", port(2))));
    Entry::tcp("10.99.0.1", "8.8.8.8", 40200, 443).established().mark(42).insert(&ns);
    let mut flows = vec![d.next_event()["flow"].clone()];
    rs.wait_for("the first event", |got| from_input(got, "imtcp", "<30>1 ", &flows[0]).is_some());

    // The receiver is down for about 10 s; events keep coming meanwhile.
    rs.stop();
    for i in 1..=5u16 {
        Entry::tcp("10.99.0.1", "8.8.8.8", 40200 + i, 443).established().mark(42).insert(&ns);
        flows.push(d.next_event()["flow"].clone());
        thread::sleep(Duration::from_secs(2));
    }
    rs.restart();
    // `d` delivers all six, each once. `small` delivers what its one-event queue
    // and its reconnecting sender held; the rest is counted, never duplicated.
    let (d_pid, small_pid) = (d.pid().to_string(), small.pid().to_string());
    let from = |got: &[Received], pid: &str, flow: &Value| {
        got.iter().filter(|r| r.procid == pid && from_input(std::slice::from_ref(r), "imtcp", "<30>1 ", flow).is_some()).count()
    };
    let got = rs.wait_for("every event of the default-queue daemon", |got| flows.iter().all(|f| from(got, &d_pid, f) >= 1));
    assert!(flows.iter().all(|f| from(&got, &d_pid, f) == 1), "no duplicates from d: {got:#?}");
    small.wait_log("sink dropped events");
    let (stopped, _) = d.stop();
    assert_eq!(stopped.get("syslog.written"), 6, "{}", stopped.log);
    assert_eq!(stopped.get("syslog.dropped_queue_full") + stopped.get("syslog.dropped_write_error"), 0, "{}", stopped.log);
    assert_eq!(stopped.get("stream.written"), 6, "the stream sink never waited for syslog: {}", stopped.log);
    let (stopped, _) = small.stop();
    let lost = stopped.get("syslog.dropped_queue_full") + stopped.get("syslog.dropped_write_error");
    assert!(stopped.get("syslog.dropped_queue_full") >= 1, "the overflow is counted: {}", stopped.log);
    let got = rs.wait_for("small's delivered events", |got| flows.iter().map(|f| from(got, &small_pid, f)).sum::<usize>() as u64 + lost >= 6);
    let counts: Vec<usize> = flows.iter().map(|f| from(&got, &small_pid, f)).collect();
    assert!(counts.iter().all(|&c| c <= 1), "no duplicates from small: {counts:?}");
    assert_eq!(counts[0], 1, "the event sent before the outage arrived: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>() as u64 + lost, 6, "every event is delivered or counted: {counts:?} {}", stopped.log);
    assert_eq!(stopped.get("syslog.written"), counts.iter().sum::<usize>() as u64, "{}", stopped.log);
}

#[test]
fn journald_stores_every_field_as_event_star() {
    require_root_and_tools();
    let ns = Netns::new("journal");
    let dir = TempDir::new("journal");
    let j = Journald::start(dir.path());
    let d = Daemon::start(&ns, &config(&format!("[sink.stream]\nenable = true\n[sink.journal]\nenable = true\nsocket = \"{}\"\n", j.socket.display())));
    Entry::tcp("10.99.0.1", "8.8.8.8", 40300, 443).established().mark(42).insert(&ns);
    let line = d.next_event();
    assert_eq!(line["mark"], 42, "{line}");
    let flow = line["flow"].to_string();
    let matches = ["SYSLOG_IDENTIFIER=conntrackd".to_string(), format!("EVENT_FLOW={flow}")];
    let matches: Vec<&str> = matches.iter().map(String::as_str).collect();
    let entries = j.wait_for(&matches, |got| !got.is_empty());
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let e = &entries[0];
    assert_eq!(e["MESSAGE"], line["msg"]);
    assert_eq!(e["PRIORITY"], "6");
    assert_eq!(e["_TRANSPORT"], "journal", "the native protocol, not syslog or stdout");
    for (name, value) in event_fields(&line) {
        let want = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        assert_eq!(e[format!("EVENT_{}", name.to_uppercase())], want, "field {name} in {e}");
    }
    let extra = e.as_object().unwrap().keys().filter(|k| k.starts_with("EVENT_")).count();
    assert_eq!(extra, event_fields(&line).len(), "one EVENT_* per event field, no more: {e}");
    let (stopped, _) = d.stop();
    assert_eq!(stopped.get("journal.written"), 1, "{}", stopped.log);
    assert_eq!(stopped.get("journal.dropped_write_error"), 0, "{}", stopped.log);
}

#[test]
fn journald_takes_an_oversized_entry_through_a_memfd() {
    require_root_and_tools();
    let dir = TempDir::new("memfd");
    let j = Journald::start(dir.path());
    // Larger than any datagram the socket can carry (wmem_max is far below 1 MiB
    // by default), with newlines so the binary-safe encoding is used too.
    let pad: Vec<u8> = (0..1_500_000u32).map(|i| b"Llanfairpwllgwyngyll\n"[i as usize % 21]).collect();
    let fields: [(&str, &[u8]); 4] =
        [("MESSAGE", b"oversized test entry"), ("PRIORITY", b"6"), ("SYSLOG_IDENTIFIER", b"conntrackd-memfd-test"), ("EVENT_DST_CITY", &pad)];
    let memfd = conntrackd::testing::journal_send(&j.socket, &fields).expect("send to journald");
    assert!(memfd, "a 1.5 MB entry cannot be one datagram; it must go through a memfd");
    let entries = j.wait_for(&["SYSLOG_IDENTIFIER=conntrackd-memfd-test"], |got| !got.is_empty());
    assert_eq!(entries[0]["MESSAGE"], "oversized test entry");
    assert_eq!(field_bytes(&entries[0], "EVENT_DST_CITY").expect("EVENT_DST_CITY"), pad, "the whole value, byte for byte");
}
