//! Entry points for the cargo-fuzz targets (`conntrackd/fuzz`: rules,
//! netlink, config). Each takes
//! arbitrary input and must never panic.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use crate::{
    event::{Endpoints, Event, EventType, Protocol},
    filter::{Prefilter, Rules},
};

/// Compiles newline-separated rules; if they compile, derives the kernel
/// table and evaluates them on a few events, checking the soundness invariant.
pub fn rules(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let Ok(rules) = Rules::compile(&lines) else { return };
    let table = Prefilter::derive(&rules);
    let _ = table.to_string();
    for (src, dst) in [("10.0.0.1", "8.8.8.8"), ("fd00::1", "ff02::1"), ("127.0.0.1", "::ffff:192.168.1.1")] {
        for kind in [EventType::New, EventType::Update, EventType::Destroy] {
            let ev = Event::bare(
                kind,
                Protocol::Tcp,
                Endpoints {
                    src: src.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                    dst: dst.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                    src_port: 1024,
                    dst_port: 443,
                },
            );
            assert!(!rules.logs(&ev) || table.keeps(&ev), "unsound kernel table for {lines:?}");
        }
    }
}

/// Decodes one netlink message as the netlink source does; must never panic.
pub fn netlink(data: &[u8]) {
    let prefilter = Prefilter::keep_all();
    if let Ok(rec) = crate::source::netlink::decode::decode(data, &prefilter) {
        let _ = Event::from_record(&rec, 0);
    }
}

/// Loads a configuration text (and a `--filter` flag); must never panic.
pub fn config(text: &str) {
    let overrides = crate::config::Overrides { env: vec![], flags: vec![("filter", vec!["log any".into()])] };
    let _ = crate::config::Config::from_text(std::path::Path::new("fuzz.toml"), text, &overrides);
    let _ = crate::config::Config::from_text(std::path::Path::new("fuzz.toml"), text, &crate::config::Overrides::default());
}
