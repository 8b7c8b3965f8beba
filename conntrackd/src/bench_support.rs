//! Entry points of the micro-benchmarks in `benches/` (run by `cargo xtask
//! bench`); only with the feature `bench`, which the benches enable and the
//! daemon's build does not. Not an API.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{hint::black_box, path::Path, time::Instant};

use crate::{
    config::{Config, Overrides},
    event::{Endpoints, Event, EventType, Protocol},
    filter::{Rules, RulesError},
    sink::loki::{config::Encoding, throughput},
};

/// The Loki encoder's throughput on `events` synthetic events, protobuf
/// (snappy) then JSON: one JSON object per encoding.
pub fn loki_encoder(events: usize) -> Vec<String> {
    [Encoding::Protobuf, Encoding::Json].into_iter().map(|encoding| throughput::measure(events, encoding).json()).collect()
}

/// GeoIP enrichment cost with the databases of the configuration file
/// `config`, `lookups` per measurement: one JSON object.
pub fn geoip(config: &Path, lookups: usize) -> Result<String, String> {
    let config = Config::load(Some(config), &Overrides::default()).map_err(|e| e.to_string())?;
    crate::enrich::bench::run(&config.geoip, lookups).map_err(|e| e.to_string())
}

/// Evaluates `rules` first-match on a fixed mix of events, `rounds` times
/// over the mix; returns (evaluations, seconds, events logged).
pub fn rule_evaluations<S: AsRef<str> + Sync>(rules: &[S], rounds: u32) -> Result<(u64, f64, u64), String> {
    let rules = Rules::compile(rules).map_err(|e: RulesError| e.to_string())?;
    let events = sample_events();
    let mut logged = 0u64;
    let start = Instant::now();
    for _ in 0..rounds {
        for ev in &events {
            logged += u64::from(rules.logs(black_box(ev)));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok((u64::from(rounds) * events.len() as u64, seconds, logged))
}

fn sample_events() -> Vec<Event> {
    let mut out = Vec::new();
    let flows = [
        ("10.0.0.5", "8.8.8.8", 443),
        ("192.168.1.2", "10.1.1.1", 53),
        ("fd00::1", "2001:db8::7", 22),
        ("127.0.0.1", "127.0.0.1", 80),
        ("10.2.3.4", "1.1.1.1", 8080),
    ];
    for ((src, dst, dst_port), i) in flows.into_iter().zip(0u16..) {
        for (kind, protocol) in [(EventType::New, Protocol::Tcp), (EventType::Destroy, Protocol::Udp)] {
            out.push(Event {
                flow: Some(u32::from(i)),
                ..Event::bare(
                    kind,
                    protocol,
                    Endpoints {
                        src: src.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                        dst: dst.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                        src_port: 40000 + i,
                        dst_port,
                    },
                )
            });
        }
    }
    out
}
