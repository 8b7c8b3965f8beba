//! GeoIP end to end: the real daemon in a network namespace enriches injected
//! conntrack entries from MaxMind's test database, looks up only kept events,
//! and swaps databases on SIGHUP under load without losing an event; startup
//! errors for bad database files; `conntrackd geoip lookup`.
mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::mpsc::channel,
    thread,
};

#[path = "common/mmdb.rs"]
mod mmdb;

use common::{entry::Entry, require_root_and_tools, Daemon, Netns};
use serde_json::json;

fn maxmind(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/maxmind").join(name).display().to_string()
}

/// A scratch directory for database files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ctd-geoip-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }

    /// Writes `bytes` to a temporary name and renames it over `name`, as geoipupdate does.
    fn install(&self, name: &str, bytes: &[u8]) -> String {
        let (tmp, path) = (self.0.join(format!("{name}.tmp")), self.0.join(name));
        std::fs::write(&tmp, bytes).expect("write database");
        std::fs::rename(&tmp, &path).expect("rename database");
        path.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn conntrackd(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_conntrackd")).args(args).env("NO_COLOR", "1").output().expect("run conntrackd");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn new_connection_to_london_carries_city_country_and_coordinates() {
    require_root_and_tools();
    let ns = Netns::new("geo-london");
    let config = format!(
        "filter = [\"drop destination port 444\", \"log any\"]\n\
         [geoip]\ndatabase = \"{}\"\ncache_entries = 0\n\
         [source]\nkernel_prefilter = false\n\
         [sink.stream]\nenable = true\n",
        maxmind("GeoIP2-City-Test.mmdb")
    );
    let d = Daemon::start(&ns, &config);
    // Dropped by the rules (in userspace, the kernel pre-filter is off): never looked up.
    Entry::tcp("10.99.0.1", "81.2.69.160", 40001, 444).established().insert(&ns);
    Entry::tcp("10.99.0.1", "81.2.69.160", 40002, 443).established().insert(&ns);
    let new = d.next_event();
    let want = json!({
        "type": "NEW", "dst_addr": "81.2.69.160", "dst_port": 443, "dst_city": "London", "dst_country": "United Kingdom",
        "dst_country_code": "GB", "dst_lat": 51.5142, "dst_lon": -0.0931,
    });
    for (key, value) in want.as_object().unwrap() {
        assert_eq!(&new[key], value, "field {key} of {new}");
    }
    let keys: Vec<&str> = new.as_object().unwrap().keys().map(String::as_str).collect();
    let at = keys.iter().position(|k| *k == "tcp_state").expect("tcp_state");
    assert_eq!(&keys[at + 1..at + 5], ["dst_city", "dst_country", "dst_lat", "dst_lon"], "contract order: {new}");
    assert!(keys.iter().all(|k| !k.starts_with("src_") || k.ends_with("_addr") || k.ends_with("_port")), "private source: {new}");
    let (stopped, rest) = d.stop();
    assert!(rest.is_empty(), "only the kept event is logged: {rest:?}");
    assert_eq!(stopped.get("dropped_by_rules"), 1, "{}", stopped.log);
    assert_eq!(stopped.get("city.lookups"), 1, "one lookup: the kept event's public destination: {}", stopped.log);
    assert_eq!(stopped.get("city.decode_errors"), 0, "{}", stopped.log);
}

#[test]
fn sighup_swaps_the_database_under_load_without_losing_events() {
    require_root_and_tools();
    const N: u16 = 150;
    let ns = Netns::new("geo-reload");
    let scratch = Scratch::new("reload");
    let path = scratch.install("City.mmdb", &mmdb::city_db("Alpha"));
    let config = format!("[geoip]\ndatabase = \"{path}\"\nwatch_interval_ms = 0\n[sink.stream]\nenable = true\n");
    let d = Daemon::start(&ns, &config);
    let (go, wait_go) = channel::<()>();
    let name = ns.name.clone();
    let injector = thread::spawn(move || {
        for i in 0..N {
            if i == 2 * N / 3 {
                wait_go.recv().expect("reload signal");
            }
            Entry::tcp("10.99.0.1", &format!("203.0.113.{}", 1 + i % 200), 20_000 + i, 443).established().insert_in(&name);
        }
    });
    let mut cities = Vec::new();
    let mut ports = Vec::new();
    for n in 0..N {
        if n == N / 3 {
            scratch.install("City.mmdb", &mmdb::city_db("Beta"));
            // SAFETY: kill(2) on the daemon's pid.
            assert_eq!(unsafe { libc::kill(d.pid() as libc::pid_t, libc::SIGHUP) }, 0);
            d.wait_log("GeoIP database reloaded");
            go.send(()).expect("injector alive");
        }
        let ev = d.next_event();
        cities.push(ev["dst_city"].as_str().unwrap_or_else(|| panic!("no dst_city in {ev}")).to_string());
        ports.push(ev["src_port"].as_u64().expect("src_port"));
    }
    injector.join().expect("injector");
    ports.sort_unstable();
    assert_eq!(ports, (0..N).map(|i| u64::from(20_000 + i)).collect::<Vec<_>>(), "every entry arrives once");
    let first_beta = cities.iter().position(|c| c == "Beta").expect("later events use the new database");
    assert!(first_beta >= usize::from(N / 3), "{cities:?}");
    assert!(cities[first_beta..].iter().all(|c| c == "Beta"), "no old database after the swap: {cities:?}");
    assert!(cities[..first_beta].iter().all(|c| c == "Alpha"), "{cities:?}");

    // A broken replacement keeps the database in use.
    scratch.install("City.mmdb", &b"truncated"[..]);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(d.pid() as libc::pid_t, libc::SIGHUP) }, 0);
    let log = d.wait_log("GeoIP reload failed; keeping the previous database");
    assert!(log.contains("City.mmdb") && log.contains("not a valid MaxMind DB file"), "{log}");
    Entry::tcp("10.99.0.1", "203.0.113.250", 30_000, 443).established().insert(&ns);
    assert_eq!(d.next_event()["dst_city"], "Beta");

    let (stopped, _) = d.stop();
    assert_eq!(stopped.get("stream.written"), u64::from(N) + 1, "{}", stopped.log);
    assert_eq!(stopped.get("stream.dropped_queue_full"), 0, "{}", stopped.log);
    assert_eq!(stopped.get("ring_full"), 0, "{}", stopped.log);
    assert_eq!(stopped.get("reloads"), 1, "{}", stopped.log);
    assert_eq!(stopped.get("reload_failures"), 1, "{}", stopped.log);
}

#[test]
fn replaced_file_is_picked_up_by_the_watcher() {
    require_root_and_tools();
    let ns = Netns::new("geo-watch");
    let scratch = Scratch::new("watch");
    let path = scratch.install("City.mmdb", &mmdb::city_db("Alpha"));
    let d = Daemon::start(&ns, &format!("[geoip]\ndatabase = \"{path}\"\nwatch_interval_ms = 100\n[sink.stream]\nenable = true\n"));
    Entry::tcp("10.99.0.1", "203.0.113.7", 41_000, 443).established().insert(&ns);
    assert_eq!(d.next_event()["dst_city"], "Alpha");
    scratch.install("City.mmdb", &mmdb::city_db("Beta"));
    let line = d.wait_log("GeoIP database reloaded");
    assert!(line.contains("file changed"), "{line}");
    Entry::tcp("10.99.0.1", "203.0.113.7", 41_001, 443).established().insert(&ns);
    assert_eq!(d.next_event()["dst_city"], "Beta");
    d.stop();
}

#[test]
fn startup_fails_on_a_wrong_missing_or_truncated_database() {
    let scratch = Scratch::new("startup");
    let whole = std::fs::read(maxmind("GeoIP2-City-Test.mmdb")).expect("test database");
    let truncated = scratch.install("Truncated.mmdb", &whole[..whole.len() - 200]);
    let missing = scratch.0.join("Missing.mmdb").display().to_string();
    let country = maxmind("GeoIP2-Country-Test.mmdb");
    let cases = [
        (country.as_str(), "database_type is \"GeoIP2-Country\", expected a City database"),
        (missing.as_str(), "cannot read the file: No such file or directory"),
        (truncated.as_str(), "not a valid MaxMind DB file"),
    ];
    for (db, problem) in cases {
        for command in ["check", "run"] {
            let (ok, _, stderr) = conntrackd(&[command, "--geoip.database", db]);
            assert!(!ok, "{command} accepted {db}");
            assert!(stderr.contains(&format!("geoip.database {db}: {problem}")), "{command} {db}: {stderr}");
        }
    }
    let (ok, stdout, stderr) = conntrackd(&["check", "--geoip.database", &maxmind("GeoIP2-City-Test.mmdb")]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("GeoIP2-City, built 20") && stdout.contains("search-tree nodes"), "{stdout}");
}

#[test]
fn geoip_lookup_prints_what_the_daemon_attaches() {
    let city = maxmind("GeoIP2-City-Test.mmdb");
    let (ok, stdout, stderr) = conntrackd(&["geoip", "lookup", "81.2.69.160", "--geoip.database", &city]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "{\"dst_city\":\"London\",\"dst_country\":\"United Kingdom\",\"dst_lat\":51.5142,\"dst_lon\":-0.0931,\"dst_country_code\":\"GB\"}\n");
    let (ok, stdout, stderr) = conntrackd(&["geoip", "lookup", "192.168.1.1", "--geoip.database", &city]);
    assert!(ok && stdout == "{}\n" && stderr.contains("PRIVATE"), "{stdout} {stderr}");
    let scratch = Scratch::new("lookup");
    let config = scratch.install("conntrackd.toml", b"[sink.stream]\nenable = true\n");
    let (ok, _, stderr) = conntrackd(&["geoip", "lookup", "81.2.69.160", "--config", &config]);
    assert!(!ok && stderr.contains("no GeoIP database is configured"), "{stderr}");
    // A flat @ip-location-db-style record: the warning says what is wrong.
    let flat = scratch.install("Flat.mmdb", &mmdb::build("ip-location-db city", &[("203.0.113.0/24", mmdb::flat_record())]));
    let (ok, stdout, stderr) = conntrackd(&["geoip", "lookup", "203.0.113.1", "--geoip.database", &flat]);
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("GeoIP record has an unexpected shape") && stderr.contains("expected map"), "{stderr}");
}
