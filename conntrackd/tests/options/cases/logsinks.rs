//! Cases of the journal and syslog sinks, against systemd-journald and rsyslogd.
use crate::{
    harness::{assert_not_running, Cx, Setup, Via},
    receivers::{journal_event, journald, Input, Syslog},
};

/// A journal socket that does not exist: the sink cannot start.
const NO_JOURNAL: &str = "/nonexistent/conntrackd-matrix/journal.sock";
/// A syslog socket that does not exist: the sink cannot start.
const NO_SYSLOG: &str = "unix:///nonexistent/conntrackd-matrix/log.sock";

pub fn journal_enable(cx: &Cx, via: Via, on: bool) -> String {
    if !on {
        // Were it started, the missing socket would stop the daemon.
        let d = Setup::stream().via(via, "sink.journal.enable", "false").set("sink.journal.socket", NO_JOURNAL).start(cx);
        cx.inject();
        cx.stdout_event(&d);
        let (stopped, _) = cx.stop(d);
        assert_not_running(&stopped, "journal");
        return format!("journal sink not started (its socket is missing), event on stdout; {}", cx.exit_summary());
    }
    let j = journald(cx);
    let setup = Setup::new().via(via, "sink.journal.enable", "true").set("sink.journal.socket", &j.socket.display().to_string());
    let d = setup.start(cx);
    cx.inject();
    let entry = journal_event(&j, cx);
    let (stopped, stdout) = cx.stop(d);
    assert!(stdout.is_empty(), "no stream sink: {stdout:?}");
    assert_eq!((stopped.get("journal.written"), stopped.get("journal.dropped_write_error")), (1, 0), "{}", stopped.log);
    format!("journald stored {:?}; {}", entry["MESSAGE"], cx.exit_summary())
}

pub fn journal_optional(cx: &Cx, via: Via, optional: bool) -> String {
    let setup =
        Setup::stream().set("sink.journal.enable", "true").set("sink.journal.socket", NO_JOURNAL).via(via, "sink.journal.optional", &optional.to_string());
    cannot_start(cx, setup, "journal", optional, &format!("cannot start the journal sink: journald's socket {NO_JOURNAL} does not exist"))
}

/// A sink that cannot start: optional = false refuses to run (exit 1, the
/// error on stderr); optional = true runs without it, delivering to the stream.
pub fn cannot_start(cx: &Cx, setup: Setup, sink: &str, optional: bool, error: &str) -> String {
    if !optional {
        let (code, stderr) = setup.refused(cx);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(error), "stderr lacks {error:?}:\n{stderr}");
        return format!("exit 1: {}", stderr.lines().last().unwrap_or_default());
    }
    let d = setup.start(cx);
    let warned = d.logs_so_far().lines().any(|l| l.contains("optional sink not started; running without it") && l.contains(&format!("sink=\"{sink}\"")));
    assert!(warned, "no warning about the {sink} sink:\n{}", d.logs_so_far());
    cx.inject();
    cx.stdout_event(&d);
    let (stopped, _) = cx.stop(d);
    assert_not_running(&stopped, sink);
    assert_eq!(stopped.get("stream.written"), 1, "{}", stopped.log);
    format!("ran without the {sink} sink (warned), event on stdout; {}", cx.exit_summary())
}

pub fn syslog_enable(cx: &Cx, via: Via, on: bool) -> String {
    if !on {
        let d = Setup::stream().via(via, "sink.syslog.enable", "false").set("sink.syslog.address", NO_SYSLOG).start(cx);
        cx.inject();
        cx.stdout_event(&d);
        let (stopped, _) = cx.stop(d);
        assert_not_running(&stopped, "syslog");
        return format!("syslog sink not started (its socket is missing), event on stdout; {}", cx.exit_summary());
    }
    let rs = Syslog::start(cx, Input::Udp);
    let d = Setup::new().via(via, "sink.syslog.enable", "true").set("sink.syslog.address", &rs.address("udp")).start(cx);
    cx.inject();
    rs.event(cx);
    let (stopped, stdout) = cx.stop(d);
    assert!(stdout.is_empty(), "no stream sink: {stdout:?}");
    assert_eq!(stopped.get("syslog.written"), 1, "{}", stopped.log);
    format!("rsyslog received it over UDP; {}", cx.exit_summary())
}

pub fn syslog_address(cx: &Cx, via: Via, scheme: &str) -> String {
    let input = match scheme {
        "udp" => Input::Udp,
        "tcp" => Input::Tcp,
        // rsyslog's unix sockets are datagram sockets, as /dev/log is.
        "unix" | "unixgram" => Input::Unix,
        other => panic!("no receiver for syslog scheme {other}"),
    };
    let rs = Syslog::start(cx, input);
    let address = rs.address(scheme);
    let d = Setup::new().set("sink.syslog.enable", "true").via(via, "sink.syslog.address", &address).start(cx);
    cx.inject();
    let m = rs.event(cx);
    let (stopped, _) = cx.stop(d);
    assert_eq!((stopped.get("syslog.written"), stopped.get("syslog.dropped_write_error")), (1, 0), "{}", stopped.log);
    format!("rsyslog {} received it from {address}; {}", m.input, cx.exit_summary())
}

pub fn syslog_format(cx: &Cx, via: Via, format: &str) -> String {
    let rs = Syslog::start(cx, Input::Udp);
    let setup = Setup::new().set("sink.syslog.enable", "true").set("sink.syslog.address", &rs.address("udp"));
    let d = setup.via(via, "sink.syslog.format", format).start(cx);
    let pid = d.pid();
    cx.inject();
    let m = rs.event(cx);
    let (stopped, _) = cx.stop(d);
    assert_eq!(stopped.get("syslog.written"), 1, "{}", stopped.log);
    match format {
        "rfc5424" => {
            assert!(m.raw.starts_with("<30>1 "), "PRI and VERSION 1: {m:?}");
            assert_eq!((m.msgid.as_str(), m.procid.as_str()), ("NEW", pid.to_string().as_str()), "{m:?}");
        }
        "rfc3164" => {
            let tag = format!(" conntrackd[{pid}]: @cee: ");
            let head = &m.raw[..m.raw.find(&tag).unwrap_or_else(|| panic!("no RFC 3164 tag {tag:?}: {m:?}"))];
            // <PRI>Mmm dd hh:mm:ss HOST (over the network the hostname is sent).
            assert!(head.starts_with("<30>") && head.as_bytes().get(4).is_some_and(u8::is_ascii_uppercase), "{m:?}");
            assert_eq!(head[4 + 16..], m.hostname, "{m:?}");
        }
        other => panic!("no expectation for sink.syslog.format {other}"),
    }
    format!("rsyslog parsed {format}: app {} procid {}; {}", m.app_name, m.procid, cx.exit_summary())
}

pub fn syslog_facility(cx: &Cx, via: Via, name: &str, code: u8) -> String {
    let rs = Syslog::start(cx, Input::Udp);
    let setup = Setup::new().set("sink.syslog.enable", "true").set("sink.syslog.address", &rs.address("udp"));
    let d = setup.via(via, "sink.syslog.facility", name).start(cx);
    cx.inject();
    let m = rs.event(cx);
    cx.stop(d);
    let pri = format!("<{}>1 ", u32::from(code) * 8 + 6);
    assert!(m.raw.starts_with(&pri), "facility {name} ({code}), severity info: {pri:?} expected: {m:?}");
    assert_eq!(m.facility, name, "rsyslog's name of the facility: {m:?}");
    format!("rsyslog got {} with facility {}; {}", pri.trim(), m.facility, cx.exit_summary())
}

pub fn syslog_optional(cx: &Cx, via: Via, optional: bool) -> String {
    let setup = Setup::stream().set("sink.syslog.enable", "true").set("sink.syslog.address", NO_SYSLOG).via(via, "sink.syslog.optional", &optional.to_string());
    cannot_start(cx, setup, "syslog", optional, "cannot start the syslog sink: the syslog socket /nonexistent/conntrackd-matrix/log.sock does not exist")
}
