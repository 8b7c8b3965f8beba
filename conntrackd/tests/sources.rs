//! Source tests in network namespaces: eBPF and netlink agree, `auto` falls
//! back when eBPF is refused, bursts are counted not silently lost, several
//! namespaces are watched (and released) with either source, NAT shows in the
//! reply tuple, and DESTROY carries counters and durations.
mod common;

use common::{
    conntrack,
    entry::Entry,
    inject, require_root_and_tools,
    tcp::{connect_as, serve},
    veth, Daemon, Netns,
};
use serde_json::{json, Value};

const LOG_ALL: &str = "[sink.stream]\nenable = true\n";

/// The line without the fields only one source has (time, the task).
fn comparable(mut v: Value) -> Value {
    let obj = v.as_object_mut().expect("object");
    for key in ["time", "pid", "uid", "comm", "user", "exe", "cgroup", "container_id", "unit"] {
        obj.remove(key);
    }
    v
}

#[test]
fn ebpf_and_netlink_print_identical_events() {
    require_root_and_tools();
    let ns = Netns::new("twin");
    let ebpf = Daemon::start(&ns, &format!("[source]\nkind = \"ebpf\"\n{LOG_ALL}"));
    let netlink = Daemon::start(&ns, &format!("[source]\nkind = \"netlink\"\n{LOG_ALL}"));
    Entry::tcp("10.99.0.1", "8.8.8.8", 1000, 443).insert(&ns);
    Entry::tcp("fd00::1", "2001:db8::8", 1001, 443).insert(&ns);
    Entry::udp("10.99.0.1", "1.1.1.1", 1002, 53).insert(&ns);
    conntrack(&ns, &["-U", "-p", "tcp", "-s", "10.99.0.1", "-d", "8.8.8.8", "--sport", "1000", "--dport", "443", "-m", "7"]);
    conntrack(&ns, &["-D", "-p", "tcp", "-s", "10.99.0.1", "-d", "8.8.8.8"]);
    conntrack(&ns, &["-D", "-p", "udp", "-s", "10.99.0.1"]);
    let a: Vec<Value> = ebpf.events(6);
    let b: Vec<Value> = netlink.events(6);
    assert!(a[0].get("pid").is_some(), "the kernel program records the task: {}", a[0]);
    assert!(b[0].get("pid").is_none(), "the netlink source cannot: {}", b[0]);
    for (x, y) in a.into_iter().zip(b) {
        assert_eq!(comparable(x), comparable(y));
    }
    let (ca, rest_a) = ebpf.stop();
    let (cb, rest_b) = netlink.stop();
    assert!(rest_a.is_empty() && rest_b.is_empty(), "{rest_a:?} {rest_b:?}");
    for key in ["seen", "submitted", "parse_error"] {
        assert_eq!(ca.get(key), cb.get(key), "{key}: {} vs {}", ca.log, cb.log);
    }
}

#[test]
fn auto_falls_back_to_netlink_when_ebpf_is_refused() {
    require_root_and_tools();
    let ns = Netns::new("auto");
    let capsh = ["capsh", "--drop=cap_bpf,cap_sys_admin,cap_perfmon", "--", "-c", "exec \"$0\" \"$@\""];
    let d = Daemon::start_with(&ns, LOG_ALL, &capsh);
    let logs = d.logs_so_far();
    assert!(logs.contains("the eBPF source is unavailable; falling back to the netlink source"), "{logs}");
    assert!(logs.contains("Operation not permitted"), "the kernel's error is quoted: {logs}");
    assert!(logs.contains("source=\"netlink\"") || logs.contains("source=netlink"), "{logs}");
    Entry::tcp("10.99.0.1", "8.8.8.8", 2000, 443).insert(&ns);
    let ev = d.next_event();
    assert_eq!((ev["dst_addr"].as_str(), ev["src_port"].as_u64()), (Some("8.8.8.8"), Some(2000)));
    let (c, _) = d.stop();
    assert_eq!(c.get("submitted"), 1, "{}", c.log);
}

/// The kernel program passes the verifier with CAP_BPF and CAP_NET_ADMIN
/// alone (no CAP_PERFMON, no CAP_SYS_ADMIN: pointer arithmetic checked for
/// Spectre v1); the events then carry the task but no `comm`.
#[test]
fn ebpf_without_cap_perfmon_logs_events_without_comm() {
    require_root_and_tools();
    let ns = Netns::new("noperfmon");
    let capsh = ["capsh", "--drop=cap_sys_admin,cap_perfmon", "--", "-c", "exec \"$0\" \"$@\""];
    // kind = "ebpf": no fallback to netlink; the start fails if the verifier refuses the program.
    let d = Daemon::start_with(&ns, &format!("[source]\nkind = \"ebpf\"\n{LOG_ALL}"), &capsh);
    Entry::tcp("10.99.0.1", "8.8.8.8", 2001, 443).insert(&ns);
    let ev = d.next_event();
    assert_eq!((ev["dst_addr"].as_str(), ev["src_port"].as_u64()), (Some("8.8.8.8"), Some(2001)), "{ev}");
    assert!(ev.get("pid").is_some(), "the kernel program records the task: {ev}");
    assert!(ev.get("comm").is_none(), "comm needs CAP_PERFMON: {ev}");
    let (c, _) = d.stop();
    assert_eq!(c.get("submitted"), 1, "{}", c.log);
}

/// 200k entries as fast as ctnetlink takes them; every event is delivered or counted.
fn burst(kind: &str, buffer_key: &str) {
    require_root_and_tools();
    let ns = Netns::new(&format!("burst-{kind}"));
    let config = format!("[source]\nkind = \"{kind}\"\n{buffer_key} = 65536\n{LOG_ALL}");
    let d = Daemon::start(&ns, &config);
    const N: u32 = 200_000;
    assert_eq!(inject::udp_entries(&ns.name, N, [8, 8, 8, 8]), N);
    Entry::tcp("10.99.0.1", "198.51.100.9", 3000, 443).insert(&ns);
    let delivered = d.events_until("dst_addr", &json!("198.51.100.9")).len() as u64 - 1;
    let (c, _) = d.stop();
    let lost = match kind {
        "ebpf" => c.get("ring_full"),
        _ => c.get("lost"),
    };
    assert_eq!(delivered + lost, u64::from(N), "delivered {delivered} + counted lost {lost} must be all: {}", c.log);
    assert!(lost > 0, "a 64 KiB buffer cannot hold a 200k burst; nothing lost means the test did not test: {}", c.log);
    let needle = if kind == "ebpf" { "kernel ring buffer was full" } else { "netlink receive buffer overflowed" };
    assert!(c.all_logs.contains(needle), "the loss is reported: {}", c.all_logs);
}

#[test]
fn burst_with_a_small_ring_buffer_is_counted() {
    burst("ebpf", "ring_buffer_bytes");
}

#[test]
fn burst_with_a_small_receive_buffer_is_counted() {
    burst("netlink", "receive_buffer_bytes");
}

#[test]
fn all_namespaces_including_later_ones_carry_their_name() {
    all_namespaces("ebpf", "nsa", "nsb");
}

#[test]
fn all_namespaces_with_the_netlink_source() {
    all_namespaces("netlink", "nsla", "nslb");
}

/// `netns = ["all"]`: an existing and a later namespace, each event named,
/// and the later one released once deleted.
fn all_namespaces(kind: &str, first: &str, second: &str) {
    require_root_and_tools();
    let a = Netns::new(first);
    let d = Daemon::start(
        &a,
        &format!(
            "filter = [\"log protocol tcp and destination network public\", \"drop any\"]\n[source]\nkind = \"{kind}\"\nnetns = [\"all\"]\n[sink.stream]\nenable = true\n"
        ),
    );
    let b = Netns::new(second);
    d.wait_log(&format!("netns={}", b.name));
    Entry::tcp("10.99.0.1", "8.8.8.8", 4001, 443).insert(&a);
    Entry::tcp("10.99.0.1", "8.8.8.8", 4002, 443).insert(&b);
    let mut found = Vec::new();
    while found.len() < 2 {
        let ev = d.next_event();
        let netns = ev["netns"].as_str().unwrap_or_default().to_string();
        if netns == a.name || netns == b.name {
            found.push((netns, ev["src_port"].as_u64().unwrap_or(0)));
        }
    }
    found.sort();
    assert_eq!(found, vec![(a.name.clone(), 4001), (b.name.clone(), 4002)]);
    let name = b.name.clone();
    drop(b);
    // Other tests' namespaces come and go too: wait for this one's line.
    while !d.wait_log(&format!("netns={name} ")).contains("network namespace removed") {}
    d.stop();
}

#[test]
fn nat_shows_in_the_reply_tuple() {
    require_root_and_tools();
    let (client, server) = (Netns::new("natc"), Netns::new("nats"));
    veth(&client, "203.0.113.1/24", &server, "203.0.113.10/24");
    client.track_connections();
    client.nft("table ip ctdnat {\n chain out { type nat hook output priority -100; ip daddr 203.0.113.99 tcp dport 80 dnat to 203.0.113.10:8080; }\n}\n");
    let d = Daemon::start_default(&client);
    let srv = serve(&server, 8080, 1);
    connect_as(&client, "ct-nat", "203.0.113.99:80");
    srv.join().expect("server");
    let new = d.next_event();
    for (key, want) in [
        ("type", json!("NEW")),
        ("dst_addr", json!("203.0.113.99")),
        ("dst_port", json!(80)),
        ("reply_src_addr", json!("203.0.113.10")),
        ("reply_src_port", json!(8080)),
        ("reply_dst_addr", json!("203.0.113.1")),
    ] {
        assert_eq!(new[key], want, "{key} in {new}");
    }
    d.stop();
}

#[test]
fn destroy_carries_counters_start_and_duration() {
    require_root_and_tools();
    let (client, server) = (Netns::new("acctc"), Netns::new("accts"));
    veth(&client, "203.0.113.1/24", &server, "203.0.113.10/24");
    client.track_connections();
    let d = Daemon::start(&client, "filter = [\"log type DESTROY\", \"drop any\"]\n[source]\nset_sysctls = true\n[sink.stream]\nenable = true\n");
    assert_eq!(client.exec(&["sysctl", "-n", "net.netfilter.nf_conntrack_acct"]).trim(), "1");
    let srv = serve(&server, 8081, 1);
    connect_as(&client, "ct-acct", "203.0.113.10:8081");
    srv.join().expect("server");
    client.exec(&["conntrack", "-D", "-p", "tcp", "--dport", "8081"]);
    let ev = d.next_event();
    assert_eq!(ev["type"], "DESTROY", "{ev}");
    for key in ["orig_packets", "orig_bytes", "reply_packets", "reply_bytes", "duration_ms"] {
        assert!(ev[key].is_u64(), "{key} in {ev}");
    }
    assert!(ev["orig_packets"].as_u64() >= Some(3) && ev["orig_bytes"].as_u64() > Some(100), "{ev}");
    assert!(ev["start"].as_str().is_some_and(|s| s.ends_with('Z') && s.len() == 27), "{ev}");
    d.stop();
}
