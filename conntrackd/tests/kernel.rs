//! Kernel integration tests: the real daemon, attached in a network namespace,
//! sees entries injected through ctnetlink and real connections over veth.
//! They need root (`cargo xtask test` runs them as root).
mod common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::Command,
    thread,
};

use common::{enter_netns, entry::Entry, require_root_and_tools, veth, Daemon, Netns};
use serde_json::{json, Value};

/// Asserts every listed field of `event` equals the expected value.
fn assert_fields(event: &Value, expected: &Value) {
    for (key, want) in expected.as_object().expect("object") {
        assert_eq!(&event[key], want, "field {key} of {event}");
    }
}

/// Asserts the contract's field order: time, level, msg, type, flow, prot, addresses, ports.
fn assert_order(line: &Value) {
    let keys: Vec<&str> = line.as_object().expect("object").keys().map(String::as_str).collect();
    let want = ["time", "level", "msg", "type", "flow", "prot", "src_addr", "dst_addr", "src_port", "dst_port"];
    assert_eq!(&keys[..want.len()], &want, "field order of {line}");
}

fn inject_update_delete(ns: &Netns, d: &Daemon, src: &str, dst: &str, sport: u16, msg: &str) {
    let entry = Entry::tcp(src, dst, sport, 443).established();
    let pid = entry.insert_reporting_pid(ns);
    let flow = ns.conntrack_id(&format!("sport={sport}"));
    let base = json!({
        "level": "INFO", "flow": flow, "prot": "TCP", "src_addr": src, "dst_addr": dst,
        "src_port": sport, "dst_port": 443, "tcp_state": "ESTABLISHED",
    });

    let new = d.next_event();
    assert_order(&new);
    assert_fields(&new, &base);
    assert_fields(&new, &json!({"type": "NEW", "msg": format!("NEW {msg}"), "pid": pid, "comm": "conntrack", "uid": 0}));
    assert!(new.get("mark").is_none(), "{new}");

    entry.update(ns, &["-m", "42"]);
    let update = d.next_event();
    assert_fields(&update, &base);
    assert_fields(&update, &json!({"type": "UPDATE", "msg": format!("UPDATE {msg}"), "mark": 42}));
    assert_fields(&update, &json!({"pid": pid, "comm": "conntrack"}));

    entry.delete(ns);
    let destroy = d.next_event();
    assert_fields(&destroy, &base);
    assert_fields(&destroy, &json!({"type": "DESTROY", "msg": format!("DESTROY {msg}"), "mark": 42}));
    assert_fields(&destroy, &json!({"pid": pid, "comm": "conntrack"}));
}

#[test]
fn injected_entries_log_new_update_destroy_with_every_field() {
    require_root_and_tools();
    let ns = Netns::new("inject");
    let d = Daemon::start_default(&ns);
    inject_update_delete(&ns, &d, "10.99.0.1", "8.8.8.8", 40002, "TCP connection from 10.99.0.1:40002 to 8.8.8.8:443");
    inject_update_delete(&ns, &d, "fd00::1", "2001:4860:4860::8888", 40003, "TCP connection from [fd00::1]:40003 to [2001:4860:4860::8888]:443");
    let (stopped, rest) = d.stop();
    assert!(rest.is_empty(), "unexpected extra lines: {rest:?}");
    assert_eq!(stopped.get("submitted"), 6, "{}", stopped.log);
    assert_eq!(stopped.get("seen"), 6, "{}", stopped.log);
    assert_eq!(stopped.get("stream.written"), 6, "{}", stopped.log);
}

#[test]
fn non_public_and_non_tcp_events_are_dropped_in_the_kernel_and_counted() {
    require_root_and_tools();
    let ns = Netns::new("drop");
    ns.track_connections();
    let d = Daemon::start_default(&ns);

    // Loopback TCP: a real connection inside the namespace.
    let lo = ns.name.clone();
    thread::spawn(move || {
        enter_netns(&lo);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = TcpStream::connect(addr).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(b"x").expect("write");
        let mut b = [0u8; 1];
        server.read_exact(&mut b).expect("read");
    })
    .join()
    .expect("loopback thread");

    let entries = [
        Entry::tcp("10.99.0.1", "10.1.2.3", 1000, 443),
        Entry::tcp("10.99.0.1", "192.168.1.1", 1001, 443),
        Entry::tcp("2001:db8::1", "fe80::1", 1002, 443),
        Entry::tcp("2001:db8::1", "ff02::1", 1003, 443),
        Entry::udp("10.99.0.1", "8.8.4.4", 1004, 53),
    ];
    for entry in entries {
        entry.insert(&ns);
    }
    // A sentinel that must be logged: once it arrives, everything before it was handled.
    Entry::tcp("10.99.0.1", "198.51.100.7", 1005, 443).insert(&ns);
    let sentinel = d.next_event();
    assert_eq!(sentinel["dst_addr"], "198.51.100.7", "the first line must be the sentinel: {sentinel}");

    let (c, rest) = d.stop();
    assert!(rest.is_empty(), "nothing else may be printed: {rest:?}");
    assert_eq!(c.get("submitted"), 1, "{}", c.log);
    assert_eq!(c.get("dropped_protocol"), 1, "UDP to 8.8.4.4: {}", c.log);
    assert!(c.get("dropped_dst_class") >= 5, "4 injected + the loopback connection's events: {}", c.log);
    assert_eq!(c.get("parse_error") + c.get("walk_limit") + c.get("ring_full"), 0, "{}", c.log);
    let outcomes: u64 =
        ["parse_error", "walk_limit", "not_conntrack", "dropped_kind", "dropped_protocol", "dropped_dst_class", "dropped_src_class", "ring_full", "submitted"]
            .iter()
            .map(|k| c.get(k))
            .sum();
    assert_eq!(c.get("seen"), outcomes, "every message seen has exactly one outcome: {}", c.log);
}

#[test]
fn real_connection_over_veth_logs_pid_comm_then_destroy() {
    require_root_and_tools();
    let client = Netns::new("cli");
    let server = Netns::new("srv");
    veth(&client, "203.0.113.1/24", &server, "203.0.113.10/24");
    client.track_connections();
    let d = Daemon::start_default(&client);

    let server_name = server.name.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let srv = thread::spawn(move || {
        enter_netns(&server_name);
        let listener = TcpListener::bind("203.0.113.10:8080").expect("bind server");
        ready_tx.send(()).expect("signal");
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).expect("read");
        conn.write_all(b"world").expect("write");
    });
    ready_rx.recv().expect("server ready");

    let client_name = client.name.clone();
    let local_port = thread::Builder::new()
        .name("ct-client".into())
        .spawn(move || {
            enter_netns(&client_name);
            let mut s = TcpStream::connect("203.0.113.10:8080").expect("connect");
            s.write_all(b"hello").expect("write");
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).expect("read");
            s.local_addr().expect("local addr").port()
        })
        .expect("spawn client")
        .join()
        .expect("client thread");
    srv.join().expect("server thread");

    let new = d.next_event();
    assert_fields(
        &new,
        &json!({"type": "NEW", "prot": "TCP", "src_addr": "203.0.113.1", "dst_addr": "203.0.113.10",
                "src_port": local_port, "dst_port": 8080, "tcp_state": "SYN_SENT",
                "pid": std::process::id(), "comm": "ct-client", "uid": 0}),
    );
    let flow = new["flow"].as_u64().expect("flow");
    client.exec(&["conntrack", "-D", "-p", "tcp", "-d", "203.0.113.10", "--dport", "8080"]);
    loop {
        let ev = d.next_event();
        assert_eq!(ev["flow"], flow, "{ev}");
        assert_eq!(ev["pid"], std::process::id(), "the NEW's process is carried to the flow's later events: {ev}");
        if ev["type"] == "DESTROY" {
            break;
        }
        assert_eq!(ev["type"], "UPDATE", "{ev}");
    }
    let (c, _) = d.stop();
    assert_eq!(c.get("ring_full") + c.get("parse_error"), 0, "{}", c.log);
}

#[test]
fn events_disabled_in_the_namespace_is_a_clear_error() {
    require_root_and_tools();
    let ns = Netns::new("noev");
    ns.exec(&["sysctl", "-qw", "net.netfilter.nf_conntrack_events=0"]);
    let err = common::run_expecting_failure(&ns, "[sink.stream]\nenable = true\n");
    assert!(err.contains("net.netfilter.nf_conntrack_events is 0"), "{err}");
    assert!(err.contains("sysctl -w net.netfilter.nf_conntrack_events=1"), "{err}");
}

#[test]
fn rules_drive_the_kernel_prefilter() {
    require_root_and_tools();
    let ns = Netns::new("rules");
    let config = "filter = [\n  \"drop destination address 8.8.8.8\",\n  \"log protocol TCP and destination network PUBLIC\",\n  \"drop any\",\n]\n\
                  [sink.stream]\nenable = true\n";
    let d = Daemon::start(&ns, config);
    for entry in [
        Entry::tcp("10.99.0.1", "8.8.8.8", 5000, 443),
        Entry::tcp("10.99.0.1", "1.1.1.1", 5000, 443),
        Entry::udp("10.99.0.1", "1.1.1.1", 5000, 53),
        Entry::tcp("10.99.0.1", "10.0.0.5", 5000, 22),
    ] {
        entry.insert(&ns);
    }
    let only = d.next_event();
    assert_fields(&only, &json!({"type": "NEW", "dst_addr": "1.1.1.1", "dst_port": 443, "prot": "TCP"}));
    let (c, rest) = d.stop();
    assert!(rest.is_empty(), "exactly one line: {rest:?}");
    assert_eq!(c.get("seen"), 4, "{}", c.log);
    assert_eq!(c.get("submitted"), 2, "8.8.8.8 and 1.1.1.1 (TCP, PUBLIC) reach userspace: {}", c.log);
    assert_eq!(c.get("dropped_protocol"), 1, "UDP never reaches userspace: {}", c.log);
    assert_eq!(c.get("dropped_dst_class"), 1, "10.0.0.5 never reaches userspace: {}", c.log);
    assert_eq!(c.get("dropped_by_rules"), 1, "8.8.8.8 is dropped by the first rule: {}", c.log);
}

#[test]
fn check_prints_the_prefilter_or_the_rule_errors() {
    let ok = Command::new(env!("CARGO_BIN_EXE_conntrackd"))
        .args(["check", "--filter", "log type NEW,DESTROY and protocol TCP and destination network PUBLIC", "--filter", "drop any"])
        .output()
        .expect("run check");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(text.contains("kernel keeps: NEW,DESTROY × TCP × src any × dst PUBLIC"), "{text}");

    let bad = Command::new(env!("CARGO_BIN_EXE_conntrackd")).args(["check", "--filter", "log destination port http"]).output().expect("run check");
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--filter:\nrule 1 \"log destination port http\", column 22: expected a port number or range after 'port', found 'http'"), "{err}");
}
