//! Operability in a namespace: /metrics and /healthz move with injected
//! events, SIGHUP swaps rules and the kernel table without losing events,
//! SIGTERM delivers everything queued, and systemd gets READY/STOPPING/WATCHDOG.
mod common;

use std::{
    os::unix::net::UnixDatagram,
    time::{Duration, Instant},
};

use common::{conntrack, entry::Entry, inject, require_root_and_tools, Daemon, Netns, WAIT};

/// GET `path` from 127.0.0.1:`port` inside the namespace: (status line, body).
fn get(ns: &Netns, port: u16, path: &str) -> (String, String) {
    common::http_get(ns, port, path)
}

/// True when the kernel counter `outcome` equals `n` in the body.
fn kernel(outcome: &'static str, n: u64) -> impl Fn(&str) -> bool {
    move |body: &str| body.lines().any(|l| l.contains(&format!("outcome=\"{outcome}\"")) && l.ends_with(&format!(" {n}")))
}

/// The value of the first metric line starting with `series`.
fn metric(body: &str, series: &str) -> u64 {
    body.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Polls /metrics until `series` reaches `want` (sources publish every second).
fn wait_metric(ns: &Netns, port: u16, series: &str, want: u64) -> String {
    wait_body(ns, port, &format!("{series} >= {want}"), |body| metric(body, series) >= want)
}

fn wait_body(ns: &Netns, port: u16, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = get(ns, port, "/metrics");
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "never saw {what}:\n{body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn free_port() -> u16 {
    // A port chosen from the pid keeps parallel test binaries apart.
    20000 + (std::process::id() % 20000) as u16
}

#[test]
fn metrics_and_health_follow_the_events() {
    require_root_and_tools();
    let ns = Netns::new("metrics");
    let port = free_port();
    let d = Daemon::start(&ns, &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n[sink.stream]\nenable = true\n"));
    let (status, body) = get(&ns, port, "/healthz");
    assert!(status.contains("200"), "{status} {body}");
    let (_, body) = get(&ns, port, "/metrics");
    assert!(body.contains("conntrackd_build_info{version=\""), "{body}");
    Entry::tcp("10.99.0.1", "8.8.8.8", 5001, 443).insert(&ns);
    Entry::tcp("10.99.0.1", "10.1.1.1", 5002, 443).insert(&ns);
    conntrack(&ns, &["-I", "-p", "icmp", "-s", "10.99.0.1", "-d", "8.8.8.8", "--icmp-type", "8", "--icmp-code", "0", "--icmp-id", "1", "-t", "30"]);
    d.events(2);
    let body = wait_metric(&ns, port, "conntrackd_sink_events_total{sink=\"stream\",result=\"sent\"}", 2);
    assert_eq!(metric(&body, "conntrackd_events_read_total"), 2, "{body}");
    wait_body(&ns, port, "ICMP pre-filtered in the kernel", kernel("dropped_protocol", 1));
    let body = wait_body(&ns, port, "two events submitted", kernel("submitted", 2));
    assert!(body.contains("conntrackd_sources_attached 1"), "{body}");
    let (status, _) = get(&ns, port, "/nope");
    assert!(status.contains("404"), "{status}");
    d.stop();
}

#[test]
fn sighup_swaps_rules_and_kernel_table_without_losing_events() {
    require_root_and_tools();
    let ns = Netns::new("hup");
    let d = Daemon::start(&ns, "filter = [\"log protocol tcp and destination network public\", \"drop any\"]\n[sink.stream]\nenable = true\n");
    // UDP is dropped in the kernel under the first rules.
    inject::udp_entries(&ns.name, 1, [8, 8, 4, 4]);
    Entry::tcp("10.99.0.1", "8.8.8.8", 6001, 443).insert(&ns);
    assert_eq!(d.next_event()["src_port"], 6001, "the UDP entry must not be logged");
    // A bad config is rejected and the old one stays.
    std::fs::write(d.config_path(), "filter = [\"log port 1\"]\n[sink.stream]\nenable = true\n").unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("reload failed: keeping the running configuration");
    // The new rules log UDP too; events flow while the reload happens.
    std::fs::write(d.config_path(), "filter = [\"log destination network public\", \"drop any\"]\n[sink.stream]\nenable = true\n").unwrap();
    for i in 0..200u16 {
        Entry::tcp("10.99.0.1", "203.0.113.77", 7000 + i, 443).insert(&ns);
        if i == 50 {
            d.signal(libc::SIGHUP);
        }
    }
    d.wait_log("configuration reloaded");
    inject::udp_entries(&ns.name, 1, [1, 1, 1, 1]);
    Entry::tcp("10.99.0.1", "198.51.100.1", 6002, 443).insert(&ns);
    let lines = d.events_until("dst_addr", &serde_json::json!("198.51.100.1"));
    let tcp_burst = lines.iter().filter(|l| l["src_port"].as_u64().is_some_and(|p| (7000..7200).contains(&p))).count();
    assert_eq!(tcp_burst, 200, "no event lost across the reload");
    assert!(lines.iter().any(|l| l["prot"] == "UDP" && l["dst_addr"] == "1.1.1.1"), "the kernel table now keeps UDP: {lines:?}");
    let (c, _) = d.stop();
    assert_eq!(c.get("ring_full"), 0, "{}", c.log);
}

#[test]
fn sigterm_delivers_everything_queued_and_exits_zero() {
    require_root_and_tools();
    let ns = Netns::new("term");
    let d = Daemon::start(&ns, "[sink.stream]\nenable = true\n");
    const N: u32 = 20_000;
    inject::udp_entries(&ns.name, N, [8, 8, 8, 8]);
    d.signal(libc::SIGTERM);
    let started = Instant::now();
    let (c, rest) = d.stop();
    assert!(started.elapsed() < Duration::from_secs(10), "stopping took {:?}", started.elapsed());
    assert_eq!(c.get("ring_full"), 0, "{}", c.log);
    assert_eq!(c.get("stream.written"), u64::from(N), "every queued event is written before exit: {}", c.log);
    assert!(rest.len() <= N as usize);
}

#[test]
fn systemd_gets_ready_watchdog_and_stopping() {
    require_root_and_tools();
    let ns = Netns::new("notify");
    let dir = std::env::temp_dir().join(format!("ctd-notify-test-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).expect("bind notify socket");
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let env = [("NOTIFY_SOCKET", path.to_str().unwrap()), ("WATCHDOG_USEC", "200000")];
    let d = Daemon::start_env(&ns, "[sink.stream]\nenable = true\n", &env);
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !(got.contains(&"READY=1".to_string()) && got.contains(&"WATCHDOG=1".to_string())) {
        let n = socket.recv(&mut buf).expect("a notification in time");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(got[0], "READY=1", "READY first: {got:?}");
    d.stop();
    loop {
        let n = socket.recv(&mut buf).expect("STOPPING=1 in time");
        if &buf[..n] == b"STOPPING=1" {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sink_that_cannot_start_is_an_error_unless_optional() {
    require_root_and_tools();
    let ns = Netns::new("optional");
    let journal = "[sink.journal]\nenable = true\nsocket = \"/nonexistent/journal.sock\"\n";
    let err = common::run_expecting_failure(&ns, &format!("[sink.stream]\nenable = true\n{journal}"));
    assert!(
        err.contains("cannot start the journal sink: journald's socket /nonexistent/journal.sock does not exist (set sink.journal.optional = true"),
        "{err}"
    );
    let d = Daemon::start(&ns, &format!("[sink.stream]\nenable = true\n{journal}optional = true\n"));
    assert!(d.logs_so_far().contains("optional sink not started; running without it"), "{}", d.logs_so_far());
    Entry::tcp("10.99.0.1", "8.8.8.8", 8001, 443).insert(&ns);
    assert_eq!(d.next_event()["src_port"], 8001);
    d.stop();
}

/// `writer = "stderr"` shares stderr with the daemon's own log lines: the
/// event must arrive there and SIGTERM must still stop the daemon (the sink
/// once held stderr's lock for its thread's life, and the daemon hung before
/// "conntrackd ready").
#[test]
fn stream_writer_stderr_delivers_and_stops() {
    require_root_and_tools();
    let ns = Netns::new("stderr");
    let d = Daemon::start(&ns, "filter = [\"log any\"]\n[sink.stream]\nenable = true\nwriter = \"stderr\"\n");
    Entry::tcp("10.99.0.1", "8.8.8.8", 5301, 443).insert(&ns);
    let line = d.wait_log("NEW TCP connection from 10.99.0.1:5301 to 8.8.8.8:443");
    let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
    assert_eq!(event["dst_port"], 443, "{line}");
    // A log line after the sink has written (it once kept stderr locked from
    // then on; whether "conntrackd ready" came before its lock was a race).
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded");
    let started = Instant::now();
    let (stopped, stdout) = d.stop();
    assert!(started.elapsed() < Duration::from_secs(5), "SIGTERM took {:?}", started.elapsed());
    assert!(stdout.is_empty(), "nothing on stdout with writer = stderr: {stdout:?}");
    assert_eq!(stopped.get("stream.written"), 1, "{}", stopped.log);
}

/// Thread ids of the daemon's threads called `name`.
fn threads(pid: u32, name: &str) -> Vec<String> {
    let mut tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the daemon's /proc/PID/task")
        .filter_map(|e| e.ok())
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    tids.sort();
    tids
}

fn spool_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".batch")).collect();
    names.sort();
    names
}

/// SIGHUP is a diff: changing only the rules leaves each sink's thread and
/// spool as they are; changing the Loki section replaces that sink only, and
/// the new one takes over the spool.
#[test]
fn sighup_changing_only_the_rules_leaves_every_sink_untouched() {
    require_root_and_tools();
    let ns = Netns::new("diff");
    let spool = std::env::temp_dir().join(format!("conntrackd-ops-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    // Nothing listens on port 9 in the namespace: every push fails and is spooled.
    let config = |rules: &str, label: &str| {
        format!(
            "filter = [{rules}]\n[sink.stream]\nenable = true\n[sink.loki]\nenable = true\naddress = \"http://127.0.0.1:9\"\n\
             labels = [\"{label}\"]\nspool_dir = {:?}\nbatch_wait = \"50ms\"\nmin_backoff = \"100ms\"\nmax_backoff = \"200ms\"\nshutdown_timeout = \"200ms\"\n",
            spool.display().to_string()
        )
    };
    let d = Daemon::start(&ns, &config("\"log any\"", "gen=1"));
    Entry::tcp("10.99.0.1", "8.8.8.8", 5401, 443).insert(&ns);
    assert_eq!(d.next_event()["src_port"], 5401);
    let deadline = Instant::now() + WAIT;
    while spool_files(&spool).is_empty() {
        assert!(Instant::now() < deadline, "the failed push was never spooled");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (stream, loki, files) = (threads(d.pid(), "sink-stream"), threads(d.pid(), "sink-loki"), spool_files(&spool));
    assert_eq!((stream.len(), loki.len()), (1, 1), "one thread per sink");

    std::fs::write(d.config_path(), config("\"log destination address 8.8.4.4\", \"drop any\"", "gen=1")).unwrap();
    d.signal(libc::SIGHUP);
    let line = d.wait_log("configuration reloaded");
    assert!(line.contains("restarted_sinks=[]"), "{line}");
    assert_eq!(threads(d.pid(), "sink-stream"), stream, "the stream sink's thread is untouched");
    assert_eq!(threads(d.pid(), "sink-loki"), loki, "the Loki sink's thread is untouched");
    assert_eq!(spool_files(&spool), files, "the spool is untouched");
    Entry::tcp("10.99.0.1", "8.8.8.8", 5402, 443).insert(&ns);
    Entry::tcp("10.99.0.1", "8.8.4.4", 5403, 443).insert(&ns);
    assert_eq!(d.next_event()["src_port"], 5403, "the new rules apply");

    std::fs::write(d.config_path(), config("\"log destination address 8.8.4.4\", \"drop any\"", "gen=2")).unwrap();
    d.signal(libc::SIGHUP);
    let line = d.wait_log("configuration reloaded");
    assert!(line.contains("restarted_sinks=[\"loki\"]"), "{line}");
    d.wait_log("took over the previous loki sink's pending batches");
    assert_eq!(threads(d.pid(), "sink-stream"), stream, "the stream sink's thread is untouched");
    let deadline = Instant::now() + WAIT;
    while threads(d.pid(), "sink-loki") == loki || threads(d.pid(), "sink-loki").len() != 1 {
        assert!(Instant::now() < deadline, "the Loki sink was not replaced: {:?}", threads(d.pid(), "sink-loki"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (stopped, _) = d.stop();
    assert!(stopped.all_logs.contains("they stay spooled for the next start"), "{}", stopped.all_logs);
    assert_eq!(stopped.get("loki.dropped_write_error"), 0, "{}", stopped.log);
    assert!(!spool_files(&spool).is_empty(), "both events wait in the spool");
    std::fs::remove_dir_all(&spool).unwrap();
}
