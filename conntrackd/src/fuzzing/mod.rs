//! Entry points of the cargo-fuzz targets (`conntrackd/fuzz`), compiled only
//! with the `fuzzing` feature (which the fuzz crate enables) and in tests.
//! Each takes arbitrary bytes and must never panic, hang or exhaust the
//! stack; the unit tests replay the committed corpora through these same
//! functions on stable Rust (`conntrackd/fuzz/regressions`, `corpus`).
//!
//! | target            | input                                  | max length |
//! |-------------------|----------------------------------------|------------|
//! | `rules`           | rules, one per line (keyword or CEL)   | 72 KiB     |
//! | `rules_generated` | bytes choosing rule trees (`rulegen`)  | 4 KiB      |
//! | `netlink`         | one ctnetlink message                  | 16 KiB     |
//! | `config`          | a TOML configuration file              | 72 KiB     |
mod render;
mod rulegen;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use crate::{
    event::{Endpoints, Event, EventType, Process, Protocol},
    filter::{Prefilter, Rules},
};

/// A fuzz target's entry point.
pub type Entry = fn(&[u8]);

/// Every fuzz target: name and entry point (the fuzz crate's binaries and the replay test use these).
pub const TARGETS: [(&str, Entry); 4] = [("rules", rules), ("rules_generated", rules_generated), ("netlink", netlink), ("config", config)];

/// Compiles newline-separated rules; if they compile, derives the kernel
/// table and evaluates them on sample events, checking the soundness invariant.
pub fn rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines: Vec<&str> = text.lines().collect();
    let Ok(rules) = Rules::compile(&lines) else { return };
    check_sound(&rules, &lines);
}

/// Rule trees chosen by the bytes, written in the keyword language and in
/// CEL: each rule must compile exactly when it is within the limits (else
/// fail with the limit's error at the right column), and both writings must
/// give the same verdicts and the same kernel table.
pub fn rules_generated(data: &[u8]) {
    let mut u = arbitrary::Unstructured::new(data);
    if let Ok(set) = rulegen::RuleSet::generate(&mut u) {
        set.check();
    }
}

/// Decodes one netlink message as the netlink source does; must never panic.
pub fn netlink(data: &[u8]) {
    let prefilter = Prefilter::keep_all();
    if let Ok(rec) = crate::source::netlink::decode::decode(data, &prefilter) {
        let _ = Event::from_record(&rec, 0);
    }
}

/// Loads a configuration text in every format (TOML, YAML, JSON), with and
/// without a `--filter` flag; must never panic.
pub fn config(data: &[u8]) {
    use crate::config::{Config, Format, Overrides};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let overrides = Overrides { env: vec![], flags: vec![("filter", vec!["log any".into()])] };
    for format in [Format::Toml, Format::Yaml, Format::Json] {
        let _ = Config::from_text_as(std::path::Path::new("fuzz.conf"), format, text, &overrides);
        let _ = Config::from_text_as(std::path::Path::new("fuzz.conf"), format, text, &Overrides::default());
    }
}

/// Whatever the rules log, the kernel table keeps; the fast decide loop
/// picks the rule evaluating every tree in order picks.
fn check_sound<T: std::fmt::Debug>(rules: &Rules, texts: &[T]) {
    let table = Prefilter::derive(rules);
    let _ = table.to_string();
    for ev in sample_events() {
        let decided = rules.decide(&ev);
        assert_eq!(decided, rules.decide_by_tree(&ev), "the fast loop and the trees disagree for {texts:?} on {ev:?}");
        assert!(!decided.0 || table.keeps(&ev), "unsound kernel table for {texts:?} on {ev:?}");
    }
}

/// Events over every class, both protocols, every type, boundary ports, with and without a process.
fn sample_events() -> Vec<Event> {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    let pairs = [
        ("10.0.0.1", "8.8.8.8"),
        ("fd00::1", "ff02::1"),
        ("127.0.0.1", "::ffff:192.168.1.1"),
        ("203.0.113.7", "10.1.2.3"),
        ("169.254.1.1", "224.0.0.251"),
        ("2001:db8::1", "::1"),
        ("::ffff:10.0.0.9", "fe80::1"),
    ];
    let ports = [(1024, 443), (22, 0), (65535, 53), (8080, 80)];
    let mut events = Vec::new();
    for (i, (src, dst)) in pairs.iter().enumerate() {
        for (j, kind) in [EventType::New, EventType::Update, EventType::Destroy].into_iter().enumerate() {
            let (src_port, dst_port) = ports[(i + j) % ports.len()];
            let protocol = if (i + j) % 2 == 0 { Protocol::Tcp } else { Protocol::Udp };
            let mut ev = Event::bare(kind, protocol, Endpoints { src: ip(src), dst: ip(dst), src_port, dst_port });
            if j == 1 {
                ev.process = Some(std::sync::Arc::new(Process {
                    comm: Some(["curl", "sshd", "nginx"][i % 3].into()),
                    user: Some(["root", "nobody"][i % 2].into()),
                    exe: Some(["/usr/bin/curl", "/usr/sbin/sshd"][i % 2].into()),
                    ..Process::default()
                }));
            }
            events.push(ev);
        }
    }
    events
}
