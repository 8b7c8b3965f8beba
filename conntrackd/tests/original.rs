//! Side by side with the Go original (v1.4.1, built by `cargo xtask setup`):
//! both daemons run in one namespace and see the same 20 injected entries
//! (TCP and UDP, IPv4 and IPv6, NEW, UPDATE and DESTROY: 60 events), and what
//! they emit is compared field by field — stream lines, Loki streams in one
//! VictoriaLogs, syslog messages in one rsyslog — and their command lines.
//! Every difference found must be a row of the README's list of remaining
//! differences (`<!-- original-differences -->`) and every row must still be
//! found: a new difference or a fixed one fails the test. Needs root.
mod common;
mod loki_support;
#[path = "common/mmdb.rs"]
mod mmdb;
mod original_support;
#[allow(dead_code)]
#[path = "logsinks/rsyslog.rs"]
mod rsyslog;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    time::{Duration, Instant},
};

use common::{enter_netns, require_root_and_tools, Daemon, Netns};
use loki_support::{TempDir, VictoriaLogs};
use original_support::*;
use serde_json::{Map, Value};

/// The original's event fields: a field of ours with another name is an
/// addition (documented), one of these names must mean the same.
const ORIGINAL_FIELDS: [&str; 16] = [
    "type",
    "flow",
    "prot",
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "tcp_state",
    "src_city",
    "src_country",
    "src_lat",
    "src_lon",
    "dst_city",
    "dst_country",
    "dst_lat",
    "dst_lon",
];
/// The labels `per_flow_labels = true` adds.
const PER_FLOW: [&str; 7] = ["flow", "prot", "src_addr", "src_port", "dst_addr", "dst_port", "tcp_state"];
const EVENTS: usize = 60;

/// Compares one event's fields (`theirs` from the original, `ours`); records
/// the documented kinds of difference in `measured` (keys `<area>.…` and
/// `geoip.…`) and fails on any other.
fn compare_fields(area: &str, theirs: &Map<String, Value>, ours: &Map<String, Value>, skip: &[&str], measured: &mut BTreeSet<String>) {
    let what = || format!("{area}: {}\n  original: {theirs:?}\n  ours:     {ours:?}", theirs.get("msg").or(theirs.get("_msg")).unwrap_or(&Value::Null));
    for (key, value) in theirs.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
        match ours.get(key) {
            Some(mine) => assert_eq!(mine, value, "{key} differs — a new difference: {}", what()),
            None if is_geo(key) && private(&theirs[&format!("{}_addr", &key[..3])]) => {
                measured.insert("geoip.private_addresses".into());
            }
            None if key.ends_with("_city") && value.as_str() == Some("") => {
                measured.insert("geoip.empty_city".into());
            }
            None if (key.ends_with("_lat") || key.ends_with("_lon")) && matches!(value.as_f64(), Some(v) if v == 0.0) => {
                measured.insert("geoip.zero_coordinates".into());
            }
            None => panic!("ours lacks {key} — a new difference: {}", what()),
        }
    }
    for key in ours.keys().filter(|k| !theirs.contains_key(*k) && !skip.contains(&k.as_str())) {
        assert!(!ORIGINAL_FIELDS.contains(&key.as_str()), "ours has the original's field {key} where the original has none: {}", what());
        measured.insert(format!("{area}.extra_fields"));
    }
}

/// A GeoIP field (`src_city`, `dst_lat`, …) of the original.
fn is_geo(key: &str) -> bool {
    ORIGINAL_FIELDS[8..].contains(&key)
}

/// A private (RFC 1918, unique local) address, as a JSON string.
fn private(addr: &Value) -> bool {
    match addr.as_str().and_then(|a| a.parse::<std::net::IpAddr>().ok()) {
        Some(std::net::IpAddr::V4(v4)) => v4.is_private(),
        Some(std::net::IpAddr::V6(v6)) => (v6.segments()[0] & 0xfe00) == 0xfc00,
        None => false,
    }
}

/// The scenario's events from `next`, until there are 60 (keyed by type and flow).
fn collect(what: &str, entries: &[Entry], mut next: impl FnMut(Duration) -> Option<Value>) -> BTreeMap<(String, u64), Value> {
    let mut out = BTreeMap::new();
    let until = Instant::now() + COLLECT;
    while out.len() < EVENTS {
        let left = until.saturating_duration_since(Instant::now());
        let Some(ev) = next(left.min(Duration::from_secs(1))) else {
            assert!(Instant::now() < until, "{what}: only {} of {EVENTS} events in {COLLECT:?}", out.len());
            continue;
        };
        let (addr, port) = (ev["src_addr"].as_str().unwrap_or_default().to_string(), ev["src_port"].to_string());
        if in_scenario(entries, &addr, port.trim_matches('"')) {
            let key = (ev["type"].as_str().expect("type").to_string(), ev["flow"].as_u64().expect("flow"));
            assert!(out.insert(key.clone(), ev).is_none(), "{what}: {key:?} twice");
        }
    }
    out
}

/// Pairs up the two sides' events; both must have the same 60.
fn pairs<'a>(theirs: &'a BTreeMap<(String, u64), Value>, ours: &'a BTreeMap<(String, u64), Value>) -> Vec<(&'a Value, &'a Value)> {
    assert_eq!(theirs.keys().collect::<Vec<_>>(), ours.keys().collect::<Vec<_>>(), "the same events (type, flow) on both sides");
    theirs.iter().map(|(k, v)| (v, &ours[k])).collect()
}

fn geoip_file() -> common::tempfile_path::TempPath {
    let file = common::tempfile_path::TempPath::with_contents("");
    std::fs::write(file.path(), mmdb::edge_city_db()).expect("write the GeoIP test database");
    file
}

#[test]
fn stream_lines_match_the_originals_field_by_field() {
    require_root_and_tools();
    assert!(std::path::Path::new("/usr/share/zoneinfo/Europe/Berlin").is_file(), "install the Debian package tzdata (`cargo xtask setup` does)");
    let ns = Netns::new("orig-stream");
    let db = geoip_file();
    let yaml = format!("geoip:\n  database: \"{}\"\nsink:\n  stream:\n    enable: true\n    writer: stdout\n", db.path().display());
    // A local time zone: the original writes its times in it.
    let original = Original::start(&ns, &yaml, &[("TZ", "Europe/Berlin")]);
    let ours = Daemon::start_env(&ns, &format!("[geoip]\ndatabase = \"{}\"\n[sink.stream]\nenable = true\n", db.path().display()), &[("TZ", "Europe/Berlin")]);
    let next_original = |wait| original.lines.recv_timeout(wait).ok().map(|l| serde_json::from_str::<Value>(&l).expect("original: JSON line"));
    warm_up(&ns, |sport| {
        let until = Instant::now() + Duration::from_secs(1);
        std::iter::from_fn(|| next_original(until.saturating_duration_since(Instant::now()))).any(|ev| is_probe(&ev, sport))
    });
    let entries = scenario();
    inject(&ns, &entries);
    let theirs = collect("original", &entries, next_original);
    let mine = collect("ours", &entries, |_| Some(ours.next_event()));
    original.stop();
    ours.stop();

    let mut measured = BTreeSet::new();
    for (t, o) in pairs(&theirs, &mine) {
        compare_fields("stream", t.as_object().unwrap(), o.as_object().unwrap(), &["time"], &mut measured);
        let (their_time, ours_time) = (t["time"].as_str().unwrap(), o["time"].as_str().unwrap());
        let ((t_ns, t_digits), (o_ns, o_digits)) = (rfc3339(their_time), rfc3339(ours_time));
        assert!((t_ns - o_ns).abs() < 1_000_000_000, "the same moment: {their_time} vs {ours_time}");
        assert!(ours_time.ends_with('Z') && o_digits == 6, "ours: UTC, microseconds: {ours_time}");
        if their_time.ends_with("+01:00") && t_digits > 6 {
            measured.insert("stream.time".to_string());
        }
    }
    println!("stream: 60 event pairs compared; differences measured: {measured:?}");
    let geoip: BTreeSet<String> = measured.iter().filter(|k| k.starts_with("geoip.")).cloned().collect();
    measured.retain(|k| k.starts_with("stream."));
    assert_documented("stream.", &measured);
    assert_documented("geoip.", &geoip);
}

/// The labels of a VictoriaLogs row, from its `_stream` (`{a="x",b="y"}`).
fn labels(row: &Value) -> BTreeMap<String, String> {
    let text = row["_stream"].as_str().expect("_stream");
    let inner = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')).expect("{...}");
    inner
        .split("\",")
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once("=\"").expect("k=\"v\"");
            (k.to_string(), v.trim_end_matches('"').to_string())
        })
        .filter(|(k, _)| k != "peer")
        .collect()
}

/// The rows of one `peer`, keyed by (type, flow); the scenario's only.
fn rows_of(rows: &[Value], peer: &str, entries: &[Entry]) -> BTreeMap<(String, u64), Value> {
    rows.iter()
        .filter(|r| r["peer"] == peer && in_scenario(entries, r["src_addr"].as_str().unwrap_or_default(), r["src_port"].as_str().unwrap_or_default()))
        .map(|r| ((r["type"].as_str().unwrap().to_string(), r["flow"].as_str().unwrap().parse().unwrap()), r.clone()))
        .collect()
}

#[test]
fn loki_streams_match_in_victorialogs() {
    require_root_and_tools();
    let ns = Netns::new("orig-loki");
    enter_netns(&ns.name);
    let data = TempDir::new("orig-data");
    let vl = VictoriaLogs::start(&ns, &data.0);
    let address = vl.sink_address();
    let original =
        Original::start(&ns, &format!("sink:\n  loki:\n    enable: true\n    address: \"{address}\"\n    labels:\n      - \"peer=original\"\n"), &[]);
    let loki =
        |peer: &str, extra: &str| format!("[sink.loki]\nenable = true\naddress = \"{address}\"\nlabels = [\"peer={peer}\"]\nbatch_wait = \"200ms\"\n{extra}");
    let flow = Daemon::start(&ns, &loki("flow", "per_flow_labels = true\n"));
    let ours = Daemon::start(&ns, &loki("ours", ""));
    warm_up(&ns, |sport| {
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if vl.rows().iter().any(|r| r["peer"] == "original" && r["src_addr"] == "10.255.0.1" && r["src_port"].as_str() == Some(sport.to_string().as_str()))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    });
    let entries = scenario();
    inject(&ns, &entries);
    let rows = vl.wait_rows("60 rows from each peer", |rows| ["original", "flow", "ours"].iter().all(|p| rows_of(rows, p, &entries).len() == EVENTS));
    original.stop();
    flow.stop();
    ours.stop();

    let (theirs, flow_rows, our_rows) = (rows_of(&rows, "original", &entries), rows_of(&rows, "flow", &entries), rows_of(&rows, "ours", &entries));
    let mut measured = BTreeSet::new();
    let internal = ["_stream", "_stream_id", "_time", "_msg", "peer"];
    for ((t, f), (_, o)) in pairs(&theirs, &flow_rows).into_iter().zip(pairs(&theirs, &our_rows)) {
        assert_eq!(labels(f), labels(t), "per_flow_labels = true: exactly the original's stream labels");
        let per_flow_off: BTreeMap<String, String> = labels(t).into_iter().filter(|(k, _)| !PER_FLOW.contains(&k.as_str())).collect();
        assert_eq!(labels(o), per_flow_off, "by default: the original's labels without the per-flow ones");
        if labels(o) != labels(t) {
            measured.insert("loki.default_labels".to_string());
        }
        for mine in [f, o] {
            compare_fields("loki", t.as_object().unwrap(), mine.as_object().unwrap(), &internal, &mut measured);
            assert_eq!(mine["_msg"], t["_msg"]);
            let (t_ns, o_ns) = (rfc3339(t["_time"].as_str().unwrap()).0, rfc3339(mine["_time"].as_str().unwrap()).0);
            assert!((t_ns - o_ns).abs() < 1_000_000_000, "the same moment: {} vs {}", t["_time"], mine["_time"]);
            if t_ns != o_ns {
                measured.insert("loki.time".to_string());
            }
        }
    }
    let sample = theirs.values().next().map(labels).unwrap_or_default();
    println!("loki: 60 rows per peer compared; the original's labels {:?}; differences measured: {measured:?}", sample.keys().collect::<Vec<_>>());
    assert_documented("loki.", &measured);
}

#[test]
fn syslog_bodies_match_and_rsyslog_files_them_alike() {
    require_root_and_tools();
    let ns = Netns::new("orig-syslog");
    let dir = TempDir::new("orig-syslog");
    let port = rsyslog::port(7);
    let rs = rsyslog::Rsyslog::start(&ns, &dir.0, Some(port), None, false);
    let address = format!("udp://127.0.0.1:{port}");
    let original = Original::start(&ns, &format!("sink:\n  syslog:\n    enable: true\n    address: \"{address}\"\n"), &[]);
    let syslog = |extra: &str| format!("[sink.syslog]\nenable = true\naddress = \"{address}\"\n{extra}");
    let user = Daemon::start(&ns, &syslog("facility = \"user\"\nseverity = \"notice\"\n"));
    let default = Daemon::start(&ns, &syslog(""));
    let body = |r: &rsyslog::Received| -> Value {
        let json = r.raw.split_once("@cee: ").map(|(_, b)| b).unwrap_or_else(|| panic!("no @cee: in {r:?}"));
        serde_json::from_str(json).unwrap_or_else(|e| panic!("body is not JSON ({e}): {r:?}"))
    };
    warm_up(&ns, |sport| {
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if rs.received().iter().any(|r| r.raw.starts_with("@cee: ") && body(r)["event"]["src_port"] == sport) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    let entries = scenario();
    inject(&ns, &entries);
    let from = |got: &[rsyslog::Received], prefix: &str| -> BTreeMap<(String, u64), (rsyslog::Received, Value)> {
        got.iter()
            .filter(|r| r.raw.starts_with(prefix))
            .map(|r| (r.clone(), body(r)))
            .filter(|(_, b)| in_scenario(&entries, b["event"]["src_addr"].as_str().unwrap_or_default(), &b["event"]["src_port"].to_string()))
            .map(|(r, b)| ((b["event"]["type"].as_str().unwrap().to_string(), b["event"]["flow"].as_u64().unwrap()), (r, b)))
            .collect()
    };
    let got = rs.wait_for("60 messages from each sender", |got| ["@cee: ", "<13>1 ", "<30>1 "].iter().all(|p| from(got, p).len() == EVENTS));
    original.stop();
    user.stop();
    default.stop();

    let (theirs, ours, defaults) = (from(&got, "@cee: "), from(&got, "<13>1 "), from(&got, "<30>1 "));
    let mut measured = BTreeSet::new();
    assert_eq!(theirs.keys().collect::<Vec<_>>(), ours.keys().collect::<Vec<_>>());
    for (key, (t_msg, t)) in &theirs {
        let (o_msg, o) = &ours[key];
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(o), keys(t), "the body's keys (and their order) are the original's");
        compare_fields("syslog", t["event"].as_object().unwrap(), o["event"].as_object().unwrap(), &[], &mut measured);
        assert_eq!((&o["level"], &o["message"]), (&t["level"], &t["message"]));
        assert_eq!((t["logger.name"].as_str(), o["logger.name"].as_str()), (Some("samber/slog-syslog"), Some("conntrackd")));
        measured.insert("syslog.logger".to_string());
        let (tt, ot) = (t["timestamp"].as_str().unwrap(), o["timestamp"].as_str().unwrap());
        let ((t_ns, t_digits), (o_ns, o_digits)) = (rfc3339(tt), rfc3339(ot));
        assert!((t_ns - o_ns).abs() < 1_000_000_000 && tt.ends_with('Z') && ot.ends_with('Z'), "{tt} vs {ot}");
        if o_digits == 6 && t_digits > 6 {
            measured.insert("syslog.timestamp".to_string());
        }
        // Where rsyslog files them: the original's header-less datagram is user.notice; so is ours with facility/severity set.
        assert_eq!((t_msg.facility.as_str(), t_msg.severity.as_str()), ("user", "notice"), "{t_msg:?}");
        assert_eq!((o_msg.facility.as_str(), o_msg.severity.as_str()), ("user", "notice"), "{o_msg:?}");
        let d_msg = &defaults[key].0;
        if (d_msg.facility.as_str(), d_msg.severity.as_str()) == ("daemon", "info") {
            measured.insert("syslog.priority".to_string());
        }
        // The header: rsyslog took the original's "@cee:" for the tag.
        if t_msg.app_name == "@cee" && o_msg.app_name == "conntrackd" && o_msg.msgid == key.0 {
            measured.insert("syslog.header".to_string());
        }
    }
    println!("syslog: 60 message pairs compared; differences measured: {measured:?}");
    assert_documented("syslog.", &measured);
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Every flag of the original's `run` is one of ours, and all of them at
/// once (with the values the original documents) pass `conntrackd check`.
#[test]
fn the_command_line_takes_every_flag_of_the_original() {
    let (ok, help) = output(Command::new(original_binary()).args(["run", "--help"]));
    assert!(ok, "{help}");
    let flags: Vec<&str> =
        help.split_whitespace().filter_map(|w| w.strip_prefix("--")).filter(|f| f.contains('.') || *f == "config" || *f == "filter").collect();
    assert!(flags.len() >= 14, "the original's flags: {flags:?}");
    let ours = env!("CARGO_BIN_EXE_conntrackd");
    let (_, our_help) = output(Command::new(ours).args(["run", "--help"]));
    for flag in &flags {
        assert!(our_help.contains(&format!("--{flag} ")) || our_help.contains(&format!("--{flag}[")), "ours lacks --{flag}:\n{our_help}");
    }
    let db = geoip_file();
    let config = common::tempfile_path::TempPath::with_contents("");
    let sample = |flag: &str| -> String {
        match flag {
            "config" => config.path().display().to_string(),
            "filter" => "log protocol == \"TCP\"".into(),
            "geoip.database" => db.path().display().to_string(),
            "log.level" => "debug".into(),
            "sink.syslog.address" => "udp://localhost:514".into(),
            "sink.loki.address" => "http://localhost:3100".into(),
            "sink.loki.labels" => "env=prod,team=net".into(),
            "sink.stream.writer" => "stdout".into(),
            "profiler.address" => "http://localhost:4040".into(),
            f if f.ends_with(".enable") => "true".into(),
            f => panic!("no sample value for the original's --{f}: add one"),
        }
    };
    let args: Vec<String> = flags.iter().map(|f| format!("--{f}={}", sample(f))).collect();
    let (ok, report) = output(Command::new(ours).arg("check").args(&args));
    assert!(ok, "conntrackd check {args:?}:\n{report}");
    assert!(report.contains("warning: profiler.enable is true") && report.contains("sink loki:") && report.contains("sink syslog:"), "{report}");
    for cmd in ["completion", "completions"] {
        let (ok, script) = output(Command::new(ours).args([cmd, "bash"]));
        assert!(ok && script.contains("conntrackd"), "conntrackd {cmd} bash: {script}");
    }
    let (ok, script) = output(Command::new(original_binary()).args(["completion", "bash"]));
    assert!(ok && script.contains("conntrackd"), "the original's completion bash: {script}");

    let mut measured = BTreeSet::new();
    // The original's own contrib/config.yaml (from the vendored source archive) loads unchanged;
    // only its GeoIP path, which does not exist here, is overridden (both daemons would fail to open it).
    let archive = concat!(env!("CARGO_MANIFEST_DIR"), "/../xtask/peers/conntrackd-go/conntrackd-1.4.1.tar.gz");
    let extracted = Command::new("tar").args(["-xzOf", archive, "conntrackd-1.4.1/contrib/config.yaml"]).output().expect("tar");
    assert!(extracted.status.success(), "cannot extract the original's contrib/config.yaml from {archive}");
    let yaml = std::env::temp_dir().join(format!("conntrackd-original-cli-{}.yaml", std::process::id()));
    std::fs::write(&yaml, &extracted.stdout).unwrap();
    let (ok, report) = output(Command::new(ours).args(["check", "--geoip.database=", "--config"]).arg(&yaml));
    let _ = std::fs::remove_file(&yaml);
    assert!(ok, "the original's contrib/config.yaml: {report}");
    assert!(report.contains("rule 3 ") && report.contains("sink stream"), "its three rules and its stream sink: {report}");
    let (ok_theirs, theirs) = output(Command::new(original_binary()).arg("version"));
    let (ok_ours, mine) = output(Command::new(ours).arg("version"));
    assert!(ok_theirs && ok_ours && theirs.contains("Release: v1.4.1") && mine.starts_with("conntrackd "), "{theirs}\n{mine}");
    measured.insert("cli.version".to_string());
    println!("cli: the original's {} flags accepted; differences measured: {measured:?}", flags.len());
    assert_documented("cli.", &measured);
}
