//! contrib/conntrackd.service: `systemd-analyze verify` accepts it (with the
//! man pages the binary generates on MANPATH), `systemd-analyze security`
//! rates its exposure at most 2.5, and the real binary runs as an unprivileged
//! user holding exactly the unit's capabilities: the eBPF source attaches and
//! logs an injected event, with `comm` (CAP_PERFMON). Watching another
//! namespace fails with a clear error under the unit's set and works with
//! the CAP_SYS_ADMIN of contrib/conntrackd-netns.conf.
mod common;

use std::{path::PathBuf, process::Command};

use common::{entry::Entry, require_root_and_tools, Daemon, Netns};

const UNIT: &str = include_str!("../../contrib/conntrackd.service");
const NETNS_DROP_IN: &str = include_str!("../../contrib/conntrackd-netns.conf");
const INSTALLED_BINARY: &str = "/usr/local/bin/conntrackd";
/// The uid/gid the capability test runs as (nobody/nogroup).
const NOBODY: &str = "65534";

/// The values of every `key=` line of the unit, in order.
fn unit_values(key: &str) -> Vec<String> {
    values(UNIT, key)
}

fn values(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    text.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::to_string).collect()
}

/// setpriv arguments: user nobody holding exactly `caps` (inheritable, ambient, bounding).
fn setpriv(caps: &[String]) -> Vec<String> {
    let set = format!("-all,{}", caps.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(","));
    let mut args = vec!["setpriv".to_string(), format!("--reuid={NOBODY}"), format!("--regid={NOBODY}"), "--clear-groups".into()];
    args.extend(["--inh-caps", "--ambient-caps", "--bounding-set"].map(|o| format!("{o}={set}")));
    args.push("--".into());
    args
}

/// The unit's capabilities, e.g. ["bpf", "net_admin", "perfmon"]; the
/// bounding set must be exactly the ambient set.
fn unit_capabilities() -> Vec<String> {
    let parse = |key: &str| -> Vec<String> {
        let values = unit_values(key);
        assert_eq!(values.len(), 1, "one {key}= line expected, found {values:?}");
        let mut caps: Vec<String> =
            values[0].split_whitespace().map(|c| c.strip_prefix("CAP_").unwrap_or_else(|| panic!("{key}: {c} is not CAP_*")).to_lowercase()).collect();
        caps.sort();
        caps
    };
    let ambient = parse("AmbientCapabilities");
    assert_eq!(ambient, parse("CapabilityBoundingSet"), "the bounding set is the ambient set");
    ambient
}

fn tool(name: &str, package: &str) {
    let ok = Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "`{name}` is missing: install the Debian package {package} (`cargo xtask setup` does)");
}

/// A scratch directory under the target dir, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// The unit with ExecStart pointing at the binary under test, in `dir`.
fn unit_for_test(dir: &std::path::Path) -> PathBuf {
    let exec = unit_values("ExecStart");
    assert_eq!(exec, [format!("{INSTALLED_BINARY} run")], "the installer puts the binary at {INSTALLED_BINARY}");
    let text = UNIT.replace(&format!("ExecStart={INSTALLED_BINARY}"), &format!("ExecStart={}", env!("CARGO_BIN_EXE_conntrackd")));
    let path = dir.join("conntrackd.service");
    std::fs::write(&path, text).expect("write unit copy");
    path
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    tool("systemd-analyze", "systemd");
    let dir = scratch("unit-verify");
    let man = dir.join("man");
    let out = Command::new(env!("CARGO_BIN_EXE_conntrackd")).arg("man").arg(man.join("man1")).output().expect("conntrackd man");
    assert!(out.status.success(), "conntrackd man: {}", String::from_utf8_lossy(&out.stderr));
    let pages = String::from_utf8_lossy(&out.stdout).into_owned();
    for page in ["conntrackd.1", "conntrackd-run.1", "conntrackd-check.1"] {
        assert!(pages.lines().any(|l| l == page), "{page} missing from {pages}");
    }
    let run_page = std::fs::read_to_string(man.join("man1/conntrackd-run.1")).expect("read run page");
    assert!(run_page.contains("sink.stream.enable"), "the key flags are documented in conntrackd-run(1)");
    let unit = unit_for_test(&dir);
    // `verify` also runs `man conntrackd(1)` for Documentation=.
    let out = Command::new("systemd-analyze").arg("verify").arg(&unit).env("MANPATH", &man).output().expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {} {stderr}", out.status);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unit_exposure_is_at_most_2_5() {
    tool("systemd-analyze", "systemd");
    let dir = scratch("unit-security");
    let unit = unit_for_test(&dir);
    let out = Command::new("systemd-analyze").args(["security", "--offline=true", "--no-pager"]).arg(&unit).output().expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("no exposure line in:\n{text}"));
    let figure: f64 =
        line.split(':').nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no figure in {line:?}"));
    println!("{}", line.trim());
    assert!(figure <= 2.5, "exposure {figure} > 2.5:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `Name:\tvalue` from /proc/PID/status.
fn proc_status(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let prefix = format!("{name}:");
    status.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().to_string()).unwrap_or_else(|| panic!("no {name} in status"))
}

fn cap_bit(name: &str) -> u32 {
    match name {
        "net_admin" => 12,
        "sys_admin" => 21,
        "perfmon" => 38,
        "bpf" => 39,
        other => panic!("capability {other} has no bit here; add it"),
    }
}

#[test]
fn binary_attaches_ebpf_as_an_unprivileged_user_with_the_units_capabilities() {
    require_root_and_tools();
    tool("setpriv", "util-linux");
    let caps = unit_capabilities();
    let args = setpriv(&caps);
    let prefix: Vec<&str> = args.iter().map(String::as_str).collect();
    let ns = Netns::new("unitcaps");
    // kind = "ebpf": no fallback to netlink; the start fails if eBPF is refused.
    let d = Daemon::start_with(&ns, "[source]\nkind = \"ebpf\"\n[sink.stream]\nenable = true\n", &prefix);
    let logs = d.logs_so_far();
    assert!(logs.contains("source=\"ebpf\"") || logs.contains("source=ebpf"), "{logs}");
    let pid = d.pid();
    assert_eq!(proc_status(pid, "Uid").split_whitespace().collect::<Vec<_>>(), [NOBODY; 4]);
    let expected: u64 = caps.iter().map(|c| 1u64 << cap_bit(c)).sum();
    let eff = u64::from_str_radix(&proc_status(pid, "CapEff"), 16).expect("CapEff hex");
    let bnd = u64::from_str_radix(&proc_status(pid, "CapBnd"), 16).expect("CapBnd hex");
    assert_eq!((eff, bnd), (expected, expected), "effective and bounding sets are the unit's");
    Entry::tcp("10.99.0.1", "8.8.8.8", 40002, 443).established().insert(&ns);
    let ev = d.next_event();
    assert_eq!((ev["type"].as_str(), ev["dst_addr"].as_str(), ev["src_port"].as_u64()), (Some("NEW"), Some("8.8.8.8"), Some(40002)), "{ev}");
    assert_eq!(ev["comm"].as_str(), Some("conntrack"), "CAP_PERFMON lets the kernel program read comm: {ev}");
    let (stopped, _) = d.stop();
    assert_eq!(stopped.get("submitted"), 1, "{}", stopped.log);
}

#[test]
fn other_namespaces_need_the_drop_ins_cap_sys_admin() {
    require_root_and_tools();
    tool("setpriv", "util-linux");
    let extra = values(NETNS_DROP_IN, "AmbientCapabilities");
    assert_eq!(extra, ["CAP_SYS_ADMIN"], "the drop-in adds CAP_SYS_ADMIN only");
    assert_eq!(values(NETNS_DROP_IN, "CapabilityBoundingSet"), extra);
    let (home, other) = (Netns::new("dropin-a"), Netns::new("dropin-b"));
    let config = format!("[source]\nkind = \"ebpf\"\nnetns = [\"self\", \"/run/netns/{}\"]\n[sink.stream]\nenable = true\n", other.name);

    // The unit's set: a clear error at start, naming the capability.
    let path = std::env::temp_dir().join(format!("conntrackd-dropin-{}.toml", std::process::id()));
    std::fs::write(&path, &config).expect("write config");
    let out = Command::new("ip")
        .args(["netns", "exec", &home.name])
        .args(setpriv(&unit_capabilities()))
        .args([env!("CARGO_BIN_EXE_conntrackd"), "run", "--log.format=text", "--config"])
        .arg(&path)
        .output()
        .expect("run conntrackd");
    let _ = std::fs::remove_file(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must not start without CAP_SYS_ADMIN: {err}");
    assert!(err.contains("setns needs CAP_SYS_ADMIN") && err.contains(&other.name), "{err}");

    // With the drop-in's capability added: events of the other namespace, named.
    let mut caps = unit_capabilities();
    caps.push("sys_admin".into());
    let args = setpriv(&caps);
    let d = Daemon::start_with(&home, &config, &args.iter().map(String::as_str).collect::<Vec<_>>());
    Entry::tcp("10.99.0.2", "8.8.4.4", 40003, 443).established().insert(&other);
    let ev = d.next_event();
    assert_eq!((ev["netns"].as_str(), ev["src_port"].as_u64()), (Some(other.name.as_str()), Some(40003)), "{ev}");
    d.stop();
}

#[test]
fn unit_with_the_netns_drop_in_verifies_and_stays_under_2_5() {
    tool("systemd-analyze", "systemd");
    let dir = scratch("unit-dropin");
    let unit = unit_for_test(&dir);
    // A drop-in's [Service] lines merge into the unit's, as in one file.
    let merged = format!("{}\n{NETNS_DROP_IN}", std::fs::read_to_string(&unit).expect("read unit"));
    std::fs::write(&unit, merged).expect("write merged unit");
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&unit).output().expect("systemd-analyze");
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("systemd-analyze").args(["security", "--offline=true", "--no-pager"]).arg(&unit).output().expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    for granted in ["CapabilityBoundingSet=~CAP_SYS_ADMIN", "RestrictNamespaces=~net"] {
        let line = text.lines().find(|l| l.contains(granted)).unwrap_or_else(|| panic!("no {granted} line:\n{text}"));
        assert!(line.starts_with('✗'), "the drop-in grants {granted}: {line}");
    }
    let line = text.lines().find(|l| l.contains("Overall exposure level")).expect("exposure line");
    let figure: f64 = line.split(':').nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).expect("figure");
    println!("with the netns drop-in: {}", line.trim());
    assert!(figure <= 2.5, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
