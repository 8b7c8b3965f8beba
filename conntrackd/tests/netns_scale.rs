//! `netns = ["all"]` at scale: namespaces created by `ip netns`, namespaces of
//! `unshare --net` processes that are not under /run/netns, and churn
//! (namespaces created and deleted at a steady rate). Every namespace's
//! injected event is delivered carrying its namespace in `netns`, later
//! namespaces are watched soon after they appear and released when gone, and
//! the daemon holds one kernel program. Its RSS, the kernel memory of its
//! maps and the CPU a rescan takes are measured and printed.
//!
//! `cargo xtask test` runs a smaller count; `CONNTRACKD_NETNS_SCALE=full`
//! (set by `cargo xtask bench`) runs 200 `ip netns` + 50 `unshare` namespaces
//! and 20 created/deleted per second for 10 s, and with
//! `CONNTRACKD_NETNS_SCALE_REPORT=PATH` writes the figures there as JSON.
mod common;
mod scale_support;

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use common::{inject, require_root_and_tools, Daemon, Netns};
use scale_support::{bpf_objects, cpu_ticks, get, metric, status_kib, Holder, NamedSet, Watcher};

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Scale {
    named: usize,
    unshared: usize,
    churn_per_s: u32,
    churn_s: u64,
}

impl Scale {
    fn from_env() -> Self {
        match std::env::var("CONNTRACKD_NETNS_SCALE").as_deref() {
            Ok("full") => Scale { named: 200, unshared: 50, churn_per_s: 20, churn_s: 10 },
            _ => Scale { named: 40, unshared: 10, churn_per_s: 20, churn_s: 3 },
        }
    }
}

/// Every event under test goes from a link-local (LOCAL) source to this
/// multicast address and port (no packet is sent: entries are injected), so
/// the kernel pre-filter drops the other tests' events on this host before
/// they can fill the daemon's ring buffer.
const DST: [u8; 4] = [239, 77, 0, 1];
const DPORT: u16 = 47113;
const RULES: &str = "filter = [\"log type NEW and source network local and destination address 239.77.0.1 on port 47113\", \"drop any\"]\n";
/// A namespace the daemon must watch: how to enter it, what its events carry as `netns`.
#[derive(Debug, Clone)]
struct Target {
    path: PathBuf,
    label: String,
    created: Instant,
}

/// The unique source (address in 169.254.0.0/16, port) of the event injected into target `i`.
fn source_of(i: usize) -> ([u8; 4], u16) {
    ([169, 254, (i >> 8) as u8, i as u8], 10000 + (i % 50000) as u16)
}

fn inject_into(targets: &[Target], first: usize) {
    for (i, t) in targets.iter().enumerate() {
        let (src, sport) = source_of(first + i);
        inject::udp_entry_at(&t.path, src, sport, DST, DPORT);
    }
}

/// Reads events until every target's arrived; fails naming the missing ones
/// and any that carried the wrong `netns`.
fn expect_events(d: &Daemon, targets: &[Target], first: usize, wait: Duration) {
    let mut missing: HashMap<(String, u64), &Target> = HashMap::new();
    for (i, t) in targets.iter().enumerate() {
        let (src, sport) = source_of(first + i);
        missing.insert((format!("{}.{}.{}.{}", src[0], src[1], src[2], src[3]), u64::from(sport)), t);
    }
    let deadline = Instant::now() + wait;
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(ev) = d.try_event(left.min(Duration::from_secs(1))) else {
            assert!(Instant::now() < deadline, "{} events never arrived, e.g. {:?}", missing.len(), missing.values().take(5).collect::<Vec<_>>());
            continue;
        };
        let key = (ev["src_addr"].as_str().unwrap_or_default().to_string(), ev["src_port"].as_u64().unwrap_or(0));
        if let Some(t) = missing.remove(&key) {
            assert_eq!(ev["netns"].as_str(), Some(t.label.as_str()), "event of {} carries the wrong netns: {ev}", t.path.display());
        }
    }
}

#[test]
fn every_namespace_on_the_host_is_watched_by_one_program() {
    require_root_and_tools();
    let scale = Scale::from_env();
    let home = Netns::new("scale");
    let port = 30000 + (std::process::id() % 20000) as u16;
    let half = scale.named / 2;
    let mut named = NamedSet::new("ctds");
    let early = named.create(half);

    let config = format!("{RULES}[source]\nnetns = [\"all\"]\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n[sink.stream]\nenable = true\n");
    let started = Instant::now();
    let d = Daemon::start(&home, &config);
    let start_s = started.elapsed().as_secs_f64();
    let mut watcher = Watcher::default();
    let mut targets: Vec<Target> = early.iter().map(|n| Target { path: NamedSet::path(n), label: n.clone(), created: started }).collect();
    watcher.wait_watched(&d, targets.iter().map(|t| t.label.as_str()), Duration::from_secs(30));

    // Later namespaces: the rest of the named ones and the unshare holders, all at once.
    let created = Instant::now();
    let late = named.create(scale.named - half);
    targets.extend(late.iter().map(|n| Target { path: NamedSet::path(n), label: n.clone(), created }));
    let holders: Vec<Holder> = (0..scale.unshared).map(|_| Holder::spawn()).collect();
    targets.extend(holders.iter().map(|h| Target { path: h.netns_path(), label: h.netns_inode().to_string(), created: h.created }));
    let late_targets = &targets[half..];
    watcher.wait_watched(&d, late_targets.iter().map(|t| t.label.as_str()), Duration::from_secs(30));
    let mut latencies: Vec<f64> = late_targets.iter().map(|t| watcher.watched_at(&t.label).saturating_duration_since(t.created).as_secs_f64()).collect();
    latencies.sort_by(f64::total_cmp);

    let injected = Instant::now();
    inject_into(&targets, 0);
    expect_events(&d, &targets, 0, Duration::from_secs(30));
    let delivery_s = injected.elapsed().as_secs_f64();

    // Idle with every namespace watched: the daemon's CPU and one rescan's.
    let body = get(&home, port, "/metrics");
    let (scans0, scan_cpu0) = (metric(&body, "conntrackd_netns_rescans_total"), metric(&body, "conntrackd_netns_rescan_cpu_seconds_total"));
    let ticks0 = cpu_ticks(d.pid());
    std::thread::sleep(Duration::from_secs(5));
    let idle_cpu_per_s = (cpu_ticks(d.pid()) - ticks0) as f64 / clock_ticks() / 5.0;
    let body = get(&home, port, "/metrics");
    let scans = metric(&body, "conntrackd_netns_rescans_total") - scans0;
    let cpu_per_rescan_ms = (metric(&body, "conntrackd_netns_rescan_cpu_seconds_total") - scan_cpu0) * 1e3 / scans.max(1.0);
    let attached = metric(&body, "conntrackd_sources_attached");
    assert!(attached >= (scale.named + scale.unshared + 1) as f64, "conntrackd_sources_attached {attached}:\n{body}");

    // Churn: namespaces created and deleted at a steady rate, each one's event delivered.
    let churn = churn(&d, &mut watcher, scale);
    let (rss_kib, hwm_kib) = (status_kib(d.pid(), "VmRSS"), status_kib(d.pid(), "VmHWM"));
    let bpf = bpf_objects(d.pid());
    let figures = format!(
        "{{\"named\":{},\"unshared\":{},\"churn_created\":{},\"churn_deleted\":{},\"churn_s\":{},\"watched_at_peak\":{attached},\
         \"programs\":{},\"maps\":{},\"map_memlock_bytes\":{},\"vm_rss_kib\":{rss_kib},\"vm_hwm_kib\":{hwm_kib},\
         \"start_s\":{start_s:.3},\"watch_latency_p50_s\":{:.3},\"watch_latency_max_s\":{:.3},\"delivery_s\":{delivery_s:.3},\
         \"rescans\":{scans},\"cpu_per_rescan_ms\":{cpu_per_rescan_ms:.3},\"idle_cpu_fraction\":{idle_cpu_per_s:.4},\"released_max_s\":{:.3}}}",
        scale.named,
        scale.unshared,
        churn.created,
        churn.deleted,
        scale.churn_s,
        bpf.programs.len(),
        bpf.maps.len(),
        bpf.map_memlock(),
        latencies[latencies.len() / 2],
        latencies.last().copied().unwrap_or(0.0),
        churn.released_max_s,
    );
    println!("netns scale figures: {figures}\nmaps (type, max_entries, memlock): {:?}", bpf.maps.values().collect::<Vec<_>>());
    if let Some(path) = std::env::var_os("CONNTRACKD_NETNS_SCALE_REPORT") {
        std::fs::write(&path, &figures).expect("write the figures");
    }
    assert_eq!(bpf.programs.len(), 1, "one kernel program for every namespace: {:?}", bpf.programs);
    assert!(bpf.map_memlock() <= 16 << 20, "map memory {} B > 16 MiB: {:?}", bpf.map_memlock(), bpf.maps);
    assert!(hwm_kib <= 64 << 10, "peak RSS {hwm_kib} KiB > 64 MiB");
    assert!(latencies.last().copied().unwrap_or(0.0) <= 5.0, "a later namespace took {latencies:?} s to be watched");
    drop(holders);
    drop(named);
    d.stop();
}

struct Churned {
    created: usize,
    deleted: usize,
    released_max_s: f64,
}

/// Creates `churn_per_s` namespaces a second for `churn_s` s; each, once
/// watched, gets its event injected and is deleted right after; then checks
/// every event arrived and every namespace was released.
fn churn(d: &Daemon, watcher: &mut Watcher, scale: Scale) -> Churned {
    let mut set = NamedSet::new("ctdc");
    let every = Duration::from_secs(1) / scale.churn_per_s;
    let total = (u64::from(scale.churn_per_s) * scale.churn_s) as usize;
    let first = 50_000;
    let (mut live, mut done): (Vec<Target>, Vec<Target>) = (Vec::new(), Vec::new());
    let mut deleted_at: HashMap<String, Instant> = HashMap::new();
    let begin = Instant::now();
    let mut next = begin;
    while done.len() < total {
        if live.len() + done.len() < total && Instant::now() >= next {
            let name = set.create(1).remove(0);
            live.push(Target { path: NamedSet::path(&name), label: name, created: Instant::now() });
            next += every;
        }
        watcher.poll(d);
        let (ready, waiting): (Vec<Target>, Vec<Target>) = live.drain(..).partition(|t| watcher.is_watched(&t.label));
        live = waiting;
        for t in ready {
            inject_into(std::slice::from_ref(&t), first + done.len());
            set.delete(&t.label);
            deleted_at.insert(t.label.clone(), Instant::now());
            done.push(t);
        }
        assert!(begin.elapsed() < Duration::from_secs(scale.churn_s * 3 + 30), "churn stalled: {} namespaces never watched", live.len());
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("churn: {total} namespaces created and deleted in {:.1} s", begin.elapsed().as_secs_f64());
    expect_events(d, &done, first, Duration::from_secs(30));
    watcher.wait_released(d, done.iter().map(|t| t.label.as_str()), Duration::from_secs(30));
    let released_max_s = done.iter().map(|t| watcher.released_at(&t.label).saturating_duration_since(deleted_at[&t.label]).as_secs_f64()).fold(0.0, f64::max);
    Churned { created: total, deleted: total, released_max_s }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}
