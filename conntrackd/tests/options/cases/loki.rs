//! Cases of the Loki sink, against VictoriaLogs (read back with LogsQL),
//! through a recording proxy where the wire matters (encoding, TLS).
use serde_json::Value;

use super::logsinks::cannot_start;
use crate::{
    harness::{assert_not_running, Cx, Setup, Via},
    loki_support::VictoriaLogs,
    proxy::Proxy,
    receivers::{loki_row, victoria_logs, LOKI_TIMING},
};

/// A spool directory that cannot be created: the sink cannot start.
const NO_SPOOL: &str = "/dev/null/conntrackd-matrix-spool";

/// The Loki sink on `address`, with quick batches; `key` set `via` to `value`.
fn setup(address: &str, via: Via, key: &'static str, value: &str) -> Setup {
    let mut s = Setup::new().set("sink.loki.enable", "true").set("sink.loki.address", address);
    for (k, v) in LOKI_TIMING {
        s = s.set(k, v);
    }
    s.via(via, key, value)
}

/// Starts the daemon, injects, waits for the row, stops: the row.
fn deliver(cx: &Cx, vl: &VictoriaLogs, setup: &Setup) -> Value {
    let d = setup.start(cx);
    cx.inject();
    let row = loki_row(vl, cx);
    let (stopped, _) = cx.stop(d);
    assert_eq!((stopped.get("loki.written"), stopped.get("loki.dropped_write_error")), (1, 0), "{}", stopped.log);
    row
}

fn message(cx: &Cx) -> String {
    format!("NEW TCP connection from 10.99.0.1:{} to 8.8.8.8:443", cx.sport)
}

pub fn enable(cx: &Cx, via: Via, on: bool) -> String {
    if !on {
        // Were it started, the spool directory would stop the daemon.
        let d = Setup::stream().via(via, "sink.loki.enable", "false").set("sink.loki.spool_dir", NO_SPOOL).start(cx);
        cx.inject();
        cx.stdout_event(&d);
        let (stopped, _) = cx.stop(d);
        assert_not_running(&stopped, "loki");
        return format!("loki sink not started (its spool_dir cannot exist), event on stdout; {}", cx.exit_summary());
    }
    let vl = victoria_logs(cx);
    let row = deliver(cx, &vl, &setup(&vl.sink_address(), via, "sink.loki.enable", "true"));
    assert_eq!(row["_msg"], message(cx), "{row}");
    format!("VictoriaLogs stored {}; {}", row["_msg"], cx.exit_summary())
}

pub fn address(cx: &Cx, via: Via, scheme: &str) -> String {
    let vl = victoria_logs(cx);
    match scheme {
        "http" => {
            let row = deliver(cx, &vl, &setup(&vl.sink_address(), via, "sink.loki.address", &vl.sink_address()));
            assert_eq!(row["_msg"], message(cx), "{row}");
            format!("pushed over http, stored; {}", cx.exit_summary())
        }
        "https" => {
            // Verified TLS: the proxy's self-signed certificate trusted through tls.ca_file.
            let proxy = Proxy::https(vl.port);
            let ca = cx.path("ca.pem");
            std::fs::write(&ca, proxy.ca_pem.as_deref().expect("pem")).expect("write CA");
            let url = format!("https://127.0.0.1:{}/insert", proxy.port);
            let row = deliver(cx, &vl, &setup(&url, via, "sink.loki.address", &url).set("sink.loki.tls.ca_file", &ca.display().to_string()));
            assert_eq!(row["_msg"], message(cx), "{row}");
            let seen = proxy.seen.lock().unwrap();
            assert!(!seen.content_types.is_empty() && seen.handshake_errors.is_empty(), "{seen:?}");
            format!("pushed over verified https ({} pushes), stored; {}", seen.content_types.len(), cx.exit_summary())
        }
        other => panic!("no expectation for sink.loki.address scheme {other}"),
    }
}

pub fn insecure_skip_verify(cx: &Cx, via: Via, skip: bool) -> String {
    if skip {
        let vl = victoria_logs(cx);
        let proxy = Proxy::https(vl.port);
        let url = format!("https://127.0.0.1:{}/insert", proxy.port);
        let row = deliver(cx, &vl, &setup(&url, via, "sink.loki.tls.insecure_skip_verify", "true"));
        assert_eq!(row["_msg"], message(cx), "{row}");
        assert!(proxy.seen.lock().unwrap().handshake_errors.is_empty(), "{:?}", proxy.seen.lock().unwrap());
        return format!("self-signed certificate accepted, stored; {}", cx.exit_summary());
    }
    // Verification on and nothing trusts the certificate: every push is
    // refused in the handshake, retried, and counted as lost at shutdown.
    let proxy = Proxy::https(1);
    let url = format!("https://127.0.0.1:{}/insert", proxy.port);
    let d = setup(&url, via, "sink.loki.tls.insecure_skip_verify", "false").set("sink.loki.shutdown_timeout", "1s").start(cx);
    cx.inject();
    let failed = d.wait_log("loki push failed");
    assert!(failed.to_ascii_lowercase().contains("certificate"), "the failure names the certificate: {failed}");
    let (stopped, _) = cx.stop(d);
    assert_eq!((stopped.get("loki.written"), stopped.get("loki.dropped_write_error")), (0, 1), "{}", stopped.log);
    let seen = proxy.seen.lock().unwrap();
    assert!(seen.content_types.is_empty() && !seen.handshake_errors.is_empty(), "{seen:?}");
    format!("certificate refused ({} handshakes), the event counted as lost; {}", seen.handshake_errors.len(), cx.exit_summary())
}

pub fn per_flow_labels(cx: &Cx, via: Via, on: bool) -> String {
    let vl = victoria_logs(cx);
    let row = deliver(cx, &vl, &setup(&vl.sink_address(), via, "sink.loki.per_flow_labels", &on.to_string()));
    let stream = row["_stream"].as_str().unwrap_or_else(|| panic!("no _stream: {row}")).to_string();
    let flow_labels = ["src_addr=\"10.99.0.1\"", "dst_addr=\"8.8.8.8\"", &format!("src_port=\"{}\"", cx.sport), "dst_port=\"443\"", "prot=\"TCP\""];
    for label in flow_labels {
        assert_eq!(stream.contains(label), on, "{label} in _stream with per_flow_labels={on}: {stream}");
    }
    format!("_stream {stream}; {}", cx.exit_summary())
}

pub fn line_format(cx: &Cx, via: Via, format: &str) -> String {
    let vl = victoria_logs(cx);
    let row = deliver(cx, &vl, &setup(&vl.sink_address(), via, "sink.loki.line_format", format));
    // VictoriaLogs splits a JSON line into fields: the line's own `msg`,
    // `level` and `time` appear only when the line is the whole event.
    let from_line = (row.get("msg"), row.get("level"), row.get("time").is_some_and(Value::is_string));
    match format {
        "text" => {
            assert_eq!(row["_msg"], message(cx), "{row}");
            assert_eq!(from_line, (None, None, false), "a text line has no fields of its own: {row}");
        }
        "json" => assert_eq!(from_line, (Some(&Value::from(message(cx))), Some(&Value::from("INFO")), true), "the fields of the JSON line: {row}"),
        other => panic!("no expectation for sink.loki.line_format {other}"),
    }
    format!("row _msg {} msg {} level {}; {}", row["_msg"], row["msg"], row["level"], cx.exit_summary())
}

pub fn encoding(cx: &Cx, via: Via, encoding: &str) -> String {
    let vl = victoria_logs(cx);
    let proxy = Proxy::http(vl.port);
    let url = format!("http://127.0.0.1:{}/insert", proxy.port);
    let row = deliver(cx, &vl, &setup(&url, via, "sink.loki.encoding", encoding));
    assert_eq!(row["_msg"], message(cx), "{row}");
    let want = match encoding {
        "protobuf" => "application/x-protobuf",
        "json" => "application/json",
        other => panic!("no expectation for sink.loki.encoding {other}"),
    };
    let seen = proxy.seen.lock().unwrap();
    assert!(!seen.content_types.is_empty() && seen.content_types.iter().all(|t| t == want), "pushes as {want}: {seen:?}");
    format!("pushed as {want}, stored; {}", cx.exit_summary())
}

pub fn optional(cx: &Cx, via: Via, optional: bool) -> String {
    let setup = Setup::stream().set("sink.loki.enable", "true").set("sink.loki.spool_dir", NO_SPOOL).via(via, "sink.loki.optional", &optional.to_string());
    cannot_start(cx, setup, "loki", optional, &format!("cannot start the loki sink: cannot create spool_dir {NO_SPOOL}"))
}
