//! Cases of the daemon's own keys ([log], [source]) and of the stream sink.
use std::collections::BTreeSet;

use serde_json::Value;

use crate::{
    common::inject,
    harness::{assert_not_running, ready_source, text_level, text_records, wait_sent, Cx, Setup, Via},
    receivers::{Input, Syslog},
};

/// An unknown `CONNTRACKD_*` variable: the daemon warns about it, which
/// shows whether WARN lines are let through.
const PROBE: (&str, &str) = ("CONNTRACKD_MATRIX_NOT_A_KEY", "1");

/// The levels of the stderr log records.
fn levels(lines: &[String]) -> BTreeSet<String> {
    text_records(lines).iter().filter_map(|r| text_level(r)).map(str::to_string).collect()
}

pub fn log_level(cx: &Cx, via: Via, level: &str) -> String {
    let mut setup = Setup::stream().via(via, "log.level", level);
    setup.launch.env.push((PROBE.0.into(), PROBE.1.into()));
    // Above info the "conntrackd ready" line is hidden: readiness comes by sd_notify.
    setup.launch.ready_by_notify = matches!(level, "warn" | "error");
    let d = setup.start(cx);
    cx.inject();
    cx.stdout_event(&d);
    if level == "error" {
        // An error to be shown: a reload with a broken rule.
        std::fs::write(d.config_path(), "filter = [\"log port 1\"]\n[sink.stream]\nenable = true\n").expect("rewrite config");
        d.signal(libc::SIGHUP);
        d.wait_log("reload failed");
    }
    let exited = cx.exit(d);
    let want: &[&str] = match level {
        "debug" => &["DEBUG", "INFO", "WARN"],
        "info" => &["INFO", "WARN"],
        "warn" => &["WARN"],
        "error" => &["ERROR"],
        other => panic!("no expectation for log.level {other}"),
    };
    let got = levels(&exited.stderr);
    assert_eq!(got, want.iter().map(|l| l.to_string()).collect(), "levels shown with log.level={level}:\n{}", exited.stderr.join("\n"));
    let probe_warned = exited.stderr.iter().any(|l| l.contains(PROBE.0) && l.contains("is not a configuration key"));
    assert_eq!(probe_warned, level != "error", "the unknown-variable warning with log.level={level}:\n{}", exited.stderr.join("\n"));
    if level == "debug" {
        assert!(exited.stderr.iter().any(|l| text_level(l) == Some("DEBUG") && l.contains("kernel pre-filter derived from the rules")), "{:?}", exited.stderr);
    }
    format!("stderr levels {got:?}, event on stdout; {}", cx.exit_summary())
}

pub fn log_format(cx: &Cx, via: Via, format: &str) -> String {
    let mut setup = Setup::stream().via(via, "log.format", format);
    setup.launch.own_log_format = true;
    let d = setup.start(cx);
    cx.inject();
    cx.stdout_event(&d);
    let (stopped, _) = cx.stop(d);
    let lines: Vec<String> = stopped.all_logs.lines().map(str::to_string).collect();
    match format {
        "json" => {
            for line in &lines {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("log.format=json, but a stderr line is not JSON ({e}): {line}"));
                assert!(v["level"].is_string() && v["message"].is_string() && v["timestamp"].is_string(), "{line}");
            }
        }
        "text" => {
            for record in text_records(&lines) {
                assert!(serde_json::from_str::<Value>(&record).is_err(), "log.format=text, but a JSON line: {record}");
            }
        }
        other => panic!("no expectation for log.format {other}"),
    }
    assert_eq!(stopped.get("stream.written"), 1, "{}", stopped.log);
    format!("{} stderr lines, all {format}; {}", stopped.all_logs.lines().count(), cx.exit_summary())
}

pub fn source_kind(cx: &Cx, via: Via, kind: &str) -> String {
    let d = Setup::stream().via(via, "source.kind", kind).start(cx);
    let source = ready_source(&d);
    match kind {
        "auto" => {
            let fell_back = d.logs_so_far().contains("falling back to the netlink source");
            assert!(source == "ebpf" || (source == "netlink" && fell_back), "source.kind=auto: ready with {source}:\n{}", d.logs_so_far());
        }
        "ebpf" | "netlink" => assert_eq!(source, kind, "{}", d.logs_so_far()),
        other => panic!("no expectation for source.kind {other}"),
    }
    cx.inject();
    cx.stdout_event(&d);
    let (stopped, _) = cx.stop(d);
    assert_eq!(stopped.get("stream.written"), 1, "{}", stopped.log);
    format!("ready with source={source}, event on stdout; {}", cx.exit_summary())
}

pub fn set_sysctls(cx: &Cx, via: Via, on: bool) -> String {
    let read = |name: &str| cx.ns.exec(&["sysctl", "-n", &format!("net.netfilter.{name}")]).trim().to_string();
    let names = ["nf_conntrack_acct", "nf_conntrack_timestamp"];
    assert_eq!(names.map(read), ["0", "0"], "a fresh namespace starts with accounting and timestamps off");
    let d = Setup::stream().via(via, "source.set_sysctls", &on.to_string()).start(cx);
    let want = if on { "1" } else { "0" };
    assert_eq!(names.map(read), [want, want], "after start with source.set_sysctls={on}");
    let reported = d.logs_so_far().contains("nf_conntrack_acct is 0");
    assert_eq!(reported, !on, "the daemon reports accounting off exactly when it is: {}", d.logs_so_far());
    cx.inject();
    cx.stdout_event(&d);
    cx.stop(d);
    format!("nf_conntrack_acct/timestamp = {want} after start, event on stdout; {}", cx.exit_summary())
}

pub fn kernel_prefilter(cx: &Cx, via: Via, on: bool) -> String {
    let d = Setup::stream().via(via, "source.kernel_prefilter", &on.to_string()).start(cx);
    // A UDP entry no rule logs: the kernel drops it, or userspace does.
    inject::udp_entries(&cx.ns.name, 1, [8, 8, 8, 8]);
    cx.inject();
    cx.stdout_event(&d);
    let (stopped, rest) = cx.stop(d);
    assert!(rest.is_empty(), "only the TCP event is logged: {rest:?}");
    let (read, by_rules) = (stopped.get("read"), stopped.get("dropped_by_rules"));
    assert_eq!((read, by_rules), if on { (1, 0) } else { (2, 1) }, "read and dropped_by_rules with kernel_prefilter={on}: {}", stopped.log);
    assert_eq!(stopped.all_logs.contains("kernel pre-filter disabled"), !on, "{}", stopped.all_logs);
    format!("UDP entry dropped {}, read={read}; {}", if on { "in the kernel" } else { "by the rules" }, cx.exit_summary())
}

/// The netlink source's reliable mode: the socket options are set (the
/// daemon would fail to start otherwise) and events flow; the difference
/// shows only under overload.
pub fn reliable(cx: &Cx, via: Via, value: &str) -> String {
    let d = Setup::stream().set("source.kind", "netlink").via(via, "source.reliable", value).start(cx);
    assert_eq!(ready_source(&d), "netlink");
    cx.inject();
    cx.stdout_event(&d);
    let (stopped, _) = cx.stop(d);
    assert_eq!(stopped.get("stream.written"), 1, "{}", stopped.log);
    format!("netlink source, event on stdout; {}", cx.exit_summary())
}

pub fn stream_enable(cx: &Cx, via: Via, on: bool) -> String {
    if on {
        let d = Setup::new().via(via, "sink.stream.enable", "true").start(cx);
        cx.inject();
        cx.stdout_event(&d);
        let (stopped, _) = cx.stop(d);
        assert_eq!(stopped.get("stream.written"), 1, "{}", stopped.log);
        return format!("event on stdout; {}", cx.exit_summary());
    }
    // Off: the event must go to syslog only.
    let rs = Syslog::start(cx, Input::Udp);
    let setup = Setup::new().via(via, "sink.stream.enable", "false").set("sink.stream.writer", "stdout");
    let d = setup.set("sink.syslog.enable", "true").set("sink.syslog.address", &rs.address("udp")).start(cx);
    cx.inject();
    rs.event(cx);
    let (stopped, stdout) = cx.stop(d);
    assert!(stdout.is_empty(), "the stream sink is off: {stdout:?}");
    assert_not_running(&stopped, "stream");
    assert_eq!(stopped.get("syslog.written"), 1, "{}", stopped.log);
    format!("nothing on stdout, event in rsyslog; {}", cx.exit_summary())
}

pub fn stream_writer(cx: &Cx, via: Via, writer: &str) -> String {
    const METRICS: u16 = 9469;
    let setup = Setup::stream().via(via, "sink.stream.writer", writer).set("metrics.listen", &format!("127.0.0.1:{METRICS}"));
    let d = setup.start(cx);
    cx.inject();
    let place = match writer {
        "stdout" => {
            cx.stdout_event(&d);
            "event on stdout"
        }
        "stderr" => {
            let line = d.wait_log(&format!("from 10.99.0.1:{} to 8.8.8.8:443", cx.sport));
            cx.assert_event(&serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}")));
            "event on stderr"
        }
        "discard" => {
            wait_sent(METRICS, "stream", 1);
            "event counted as written, nowhere to be seen"
        }
        other => panic!("no expectation for sink.stream.writer {other}"),
    };
    // A log line while the sink runs, after it has written: the daemon's
    // diagnostics share stderr with writer = stderr and must not wait for it.
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded");
    let (stopped, stdout) = cx.stop(d);
    assert_eq!(stopped.get("stream.written"), 1, "{}", stopped.log);
    if writer != "stdout" {
        assert!(stdout.is_empty(), "nothing on stdout with writer={writer}: {stdout:?}");
    }
    let on_stderr = stopped.all_logs.lines().filter(|l| l.starts_with('{')).count();
    assert_eq!(on_stderr, usize::from(writer == "stderr"), "JSON lines on stderr with writer={writer}:\n{}", stopped.all_logs);
    format!("{place}; {}", cx.exit_summary())
}

/// The stream sink writes to an inherited descriptor and cannot fail to
/// start: both values are accepted and change nothing.
pub fn stream_optional(cx: &Cx, via: Via, value: &str) -> String {
    let d = Setup::stream().via(via, "sink.stream.optional", value).start(cx);
    cx.inject();
    cx.stdout_event(&d);
    let (stopped, _) = cx.stop(d);
    assert_eq!(stopped.get("stream.written"), 1, "{}", stopped.log);
    format!("event on stdout; {}", cx.exit_summary())
}
