//! GeoIP enrichment cost for `cargo xtask bench` (`benches/geoip.rs`, through
//! `bench_support`; feature `bench`): on one core with the configured
//! databases — uncached address lookups, whole events (private source, public
//! destination) without and with the cache — and the process's RSS with the
//! databases open.
use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    time::Instant,
};

use super::{DatabaseError, Enricher};
use crate::{
    enrich::GeoipConfig,
    event::{network::NetworkClass, Endpoints, Event, EventType, Protocol},
};

/// Distinct destinations in the cached run (a busy host's working set).
const WORKING_SET: usize = 1_000;

/// Runs the measurements; returns one JSON object.
pub(crate) fn run(config: &GeoipConfig, lookups: usize) -> Result<String, DatabaseError> {
    let rss_before_kib = rss_kib("VmRSS:");
    let uncached_config = GeoipConfig { cache_entries: 0, ..config.clone() };
    let Some(mut uncached) = Enricher::open(&uncached_config)? else { return Ok("{\"error\":\"no GeoIP database configured\"}\n".into()) };
    let rss_open_kib = rss_kib("VmRSS:");
    let addresses = public_addresses(lookups);
    let anon_before_kib = rss_kib("RssAnon:");

    let start = Instant::now();
    let found = addresses.iter().filter(|&&ip| black_box(uncached.lookup(ip)).is_some()).count();
    let lookup_s = start.elapsed().as_secs_f64();

    let mut ev = event();
    let start = Instant::now();
    for &ip in &addresses {
        ev.orig.dst = ip;
        uncached.enrich(black_box(&mut ev));
    }
    let event_s = start.elapsed().as_secs_f64();

    let Some(mut cached) = Enricher::open(&GeoipConfig { cache_entries: config.cache_entries.max(WORKING_SET), ..config.clone() })? else {
        return Ok(String::new());
    };
    let start = Instant::now();
    for &ip in addresses.iter().take(WORKING_SET).cycle().take(lookups) {
        ev.orig.dst = ip;
        cached.enrich(black_box(&mut ev));
    }
    let cached_s = start.elapsed().as_secs_f64();
    let stats = cached.stats();

    let n = lookups as f64;
    Ok(format!(
        "{{\"databases\":{:?},\"lookups\":{lookups},\"found\":{found},\
         \"uncached_lookups_per_s\":{:.0},\"uncached_ns_per_lookup\":{:.1},\
         \"uncached_events_per_s\":{:.0},\"cached_events_per_s\":{:.0},\"cached_ns_per_event\":{:.1},\
         \"cache_hit_ratio\":{:.4},\"decode_errors\":{},\
         \"rss_kib_before_open\":{rss_before_kib},\"rss_kib_open\":{rss_open_kib},\
         \"rss_kib_after_lookups\":{},\"rss_file_kib_after_lookups\":{},\"rss_anon_kib_growth_in_lookups\":{}}}\n",
        uncached.describe().join("; "),
        n / lookup_s,
        lookup_s * 1e9 / n,
        n / event_s,
        n / cached_s,
        cached_s * 1e9 / n,
        stats.cache_hits as f64 / (stats.cache_hits + stats.cache_misses).max(1) as f64,
        uncached.stats().city.decode_errors + uncached.stats().asn.decode_errors,
        rss_kib("VmRSS:"),
        rss_kib("RssFile:"),
        rss_kib("RssAnon:").saturating_sub(anon_before_kib),
    ))
}

/// `n` pseudo-random PUBLIC IPv4 addresses (xorshift, fixed seed: repeatable).
fn public_addresses(n: usize) -> Vec<IpAddr> {
    let mut state: u32 = 0x9E37_79B9;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let ip = IpAddr::V4(Ipv4Addr::from(state));
        if NetworkClass::of(ip) == NetworkClass::Public {
            out.push(ip);
        }
    }
    out
}

fn event() -> Event {
    let private: IpAddr = Ipv4Addr::new(10, 99, 0, 1).into();
    Event { flow: Some(1), ..Event::bare(EventType::New, Protocol::Tcp, Endpoints { src: private, dst: private, src_port: 40_000, dst_port: 443 }) }
}

/// A `/proc/self/status` memory line (VmRSS, RssAnon, RssFile) in KiB; 0 if unreadable.
fn rss_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap_or("");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}
