//! Process attribution in namespaces: a local connection carries its
//! process on NEW, UPDATE and DESTROY; a forwarded one never does; a
//! cgroup named like a container scope gives `cgroup` and `container_id`;
//! and rules can drop by process.
mod common;

use std::{io::Write, process::Command};

use common::{
    require_root_and_tools,
    tcp::{connect_as, serve},
    veth, Daemon, Netns,
};
use serde_json::Value;

/// Events of one flow until its DESTROY (after deleting it in `ns`).
fn flow_until_destroy(d: &Daemon, ns: &Netns, dport: &str) -> Vec<Value> {
    let first = d.next_event();
    let flow = first["flow"].clone();
    ns.exec(&["conntrack", "-D", "-p", "tcp", "--dport", dport]);
    let mut events = vec![first];
    while events.last().is_some_and(|e| e["type"] != "DESTROY") {
        let ev = d.next_event();
        if ev["flow"] == flow {
            events.push(ev);
        }
    }
    events
}

#[test]
fn a_local_connection_carries_its_process_on_every_event() {
    require_root_and_tools();
    let (client, server) = (Netns::new("pc"), Netns::new("ps"));
    veth(&client, "203.0.113.1/24", &server, "203.0.113.10/24");
    client.track_connections();
    let d = Daemon::start_default(&client);
    let srv = serve(&server, 9001, 1);
    connect_as(&client, "ct-proc", "203.0.113.10:9001");
    srv.join().expect("server");
    let exe = std::fs::read_link("/proc/self/exe").expect("own exe").to_string_lossy().into_owned();
    let events = flow_until_destroy(&d, &client, "9001");
    assert!(events.len() >= 2, "{events:?}");
    for ev in &events {
        assert_eq!(ev["pid"], std::process::id(), "{ev}");
        assert_eq!(ev["comm"], "ct-proc", "{ev}");
        assert_eq!(ev["user"], "root", "{ev}");
        assert_eq!(ev["exe"], exe.as_str(), "{ev}");
        assert!(ev["cgroup"].is_string(), "{ev}");
    }
    d.stop();
}

#[test]
fn a_forwarded_connection_has_no_process_fields() {
    require_root_and_tools();
    let (client, router, server) = (Netns::new("fc"), Netns::new("fr"), Netns::new("fs"));
    veth(&client, "198.51.100.2/24", &router, "198.51.100.1/24");
    let (ra, sb) = ("veth-r2", "veth-s2");
    common::sh(&["ip", "link", "add", ra, "netns", &router.name, "type", "veth", "peer", "name", sb, "netns", &server.name]);
    router.exec(&["ip", "addr", "add", "203.0.113.1/24", "dev", ra]);
    router.exec(&["ip", "link", "set", ra, "up"]);
    server.exec(&["ip", "addr", "add", "203.0.113.10/24", "dev", sb]);
    server.exec(&["ip", "link", "set", sb, "up"]);
    client.exec(&["ip", "route", "add", "default", "via", "198.51.100.1"]);
    server.exec(&["ip", "route", "add", "default", "via", "203.0.113.1"]);
    router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    router.nft("table inet ctd {\n chain forward_ct { type filter hook forward priority 0; ct state new,established,related accept; }\n}\n");
    let d = Daemon::start_default(&router);
    let srv = serve(&server, 9002, 1);
    connect_as(&client, "ct-fwd", "203.0.113.10:9002");
    srv.join().expect("server");
    let events = flow_until_destroy(&d, &router, "9002");
    assert_eq!(events[0]["src_addr"], "198.51.100.2", "{events:?}");
    for ev in &events {
        for key in ["pid", "comm", "uid", "user", "exe", "cgroup"] {
            assert!(ev.get(key).is_none(), "a forwarded packet's task is not the connection's owner: {key} in {ev}");
        }
    }
    let (c, _) = d.stop();
    assert!(c.get("not_attributed") >= 1, "{}", c.log);
}

#[test]
fn a_container_cgroup_gives_cgroup_and_container_id() {
    require_root_and_tools();
    let root = std::path::Path::new("/sys/fs/cgroup/unified");
    let root = if root.join("cgroup.procs").exists() { root } else { std::path::Path::new("/sys/fs/cgroup") };
    assert!(root.join("cgroup.procs").exists(), "no cgroup v2 hierarchy under /sys/fs/cgroup");
    let id = format!("{:0>64}", format!("{:x}", std::process::id()));
    let parent = root.join(format!("ctd-test-{}", std::process::id()));
    let scope = parent.join(format!("docker-{id}.scope"));
    std::fs::create_dir_all(&scope).expect("create a cgroup");
    let (client, server) = (Netns::new("cgc"), Netns::new("cgs"));
    veth(&client, "203.0.113.1/24", &server, "203.0.113.10/24");
    client.track_connections();
    let d = Daemon::start_default(&client);
    let srv = serve(&server, 9003, 1);
    // `ip netns exec` remounts /sys, so the client is moved into the cgroup
    // from here, while it waits for the go-ahead on stdin.
    // It stays alive until the NEW is seen: /proc details come from a live process.
    let script = "read go; exec 3<>/dev/tcp/203.0.113.10/9003; printf hi >&3; head -c 2 <&3 >/dev/null; read done";
    let mut child =
        Command::new("ip").args(["netns", "exec", &client.name, "bash", "-c", script]).stdin(std::process::Stdio::piped()).spawn().expect("run the client");
    std::fs::write(scope.join("cgroup.procs"), child.id().to_string()).expect("move the client into the cgroup");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("go");
    srv.join().expect("server");
    let new = d.next_event();
    stdin.write_all(b"done\n").expect("done");
    assert!(child.wait().expect("client").success());
    assert_eq!(new["comm"], "bash", "{new}");
    assert_eq!(new["container_id"], id.as_str(), "{new}");
    assert!(new["cgroup"].as_str().is_some_and(|c| c.ends_with(&format!("/docker-{id}.scope"))), "{new}");
    d.stop();
    let _ = std::fs::remove_dir(&scope);
    let _ = std::fs::remove_dir(&parent);
}

#[test]
fn rules_can_drop_by_process() {
    require_root_and_tools();
    let (client, server) = (Netns::new("rpc"), Netns::new("rps"));
    veth(&client, "203.0.113.1/24", &server, "203.0.113.10/24");
    client.track_connections();
    let config = "filter = [\"drop process comm ct-dropme\", \"log type NEW and destination network public\", \"drop any\"]\n[sink.stream]\nenable = true\n";
    let d = Daemon::start(&client, config);
    let srv = serve(&server, 9004, 2);
    let dropped = connect_as(&client, "ct-dropme", "203.0.113.10:9004");
    let kept = connect_as(&client, "ct-keepme", "203.0.113.10:9004");
    srv.join().expect("server");
    let ev = d.next_event();
    assert_eq!((ev["comm"].as_str(), ev["src_port"].as_u64()), (Some("ct-keepme"), Some(u64::from(kept))), "{ev}");
    let (c, rest) = d.stop();
    assert!(rest.iter().all(|l| !l.contains(&format!("\"src_port\":{dropped},"))), "{rest:?}");
    assert!(c.get("dropped_by_rules") >= 1, "{}", c.log);
}
