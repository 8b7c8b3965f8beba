//! ulogd2 as a consumer, configured as its shipped `/etc/ulogd.conf` example
//! intends for flow logging to JSON: the NFCT input plugin in event mode (no
//! `pollinterval`) with `accept_dst_filter` set to the public test range (so,
//! like conntrackd's default rules, it logs only the public destination; the
//! filter is a socket filter that libnetfilter_conntrack attaches in the
//! kernel), IP2STR, and the JSON output plugin with `sync=1`.
//!
//! `hash_enable=0`: every NEW and DESTROY event reaches the output, one JSON
//! line each, as conntrackd and `conntrack -E` write them (with the default
//! hash, ulogd would write one line per flow at DESTROY only). The socket
//! buffer may grow to conntrackd's netlink receive buffer.
use std::fs;

use anyhow::{Context, Result};

use super::{
    consumer::{Daemon, Kind},
    daemon_config::RECEIVE_BUFFER_BYTES,
};

/// Where Debian's ulogd2 and ulogd2-json install the plugins.
const PLUGIN_DIR: &str = "/usr/lib/x86_64-linux-gnu/ulogd";
/// The public test range (the server is 203.0.113.10, TEST-NET-3).
pub(crate) const PUBLIC_RANGE: &str = "203.0.113.0/24";
/// `ct.event` values in ulogd's JSON (NFCT_T_NEW, NFCT_T_DESTROY).
const EVENT_NEW: &str = "1";
const EVENT_DESTROY: &str = "4";

/// Writes ulogd's config into the daemon's config directory.
pub(crate) fn write_config(daemon: &Daemon) -> Result<()> {
    let path = daemon.config(Kind::Ulogd);
    fs::write(&path, config()).with_context(|| format!("writing {}", path.display()))
}

/// The config: JSON to ulogd's stdout (the run's output file), its log to stderr.
pub(crate) fn config() -> String {
    let plugins: String = ["inpflow_NFCT", "filter_IP2STR", "output_JSON"].iter().map(|p| format!("plugin=\"{PLUGIN_DIR}/ulogd_{p}.so\"\n")).collect();
    format!(
        "[global]\nlogfile=\"/dev/stderr\"\nloglevel=3\n{plugins}stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n\n\
         [ct1]\nhash_enable=0\naccept_dst_filter={PUBLIC_RANGE}\n\
         netlink_socket_buffer_size=217088\nnetlink_socket_buffer_maxsize={RECEIVE_BUFFER_BYTES}\n\n\
         [json1]\nsync=1\nfile=\"/dev/stdout\"\n"
    )
}

/// Is this ulogd JSON line a NEW (`Some(true)`) or DESTROY (`Some(false)`)
/// event to `dst`? `{"timestamp": ..., "ct.event": 1, ..., "dest_ip": "203.0.113.10", ...}`
pub(crate) fn event(line: &str, dst: &str) -> Option<bool> {
    let field = |key: &str| {
        let start = line.find(&format!("\"{key}\": "))? + key.len() + 4;
        line[start..].split([',', '}']).next().map(|v| v.trim().trim_matches('"'))
    };
    if field("dest_ip")? != dst {
        return None;
    }
    match field("ct.event")? {
        EVENT_NEW => Some(true),
        EVENT_DESTROY => Some(false),
        _ => None,
    }
}

/// Warnings on ulogd's log that it lost events (the kernel's ENOBUFS).
pub(crate) fn summary(lines: &[String]) -> std::collections::BTreeMap<String, u64> {
    let lost = lines.iter().filter(|l| l.contains("losing events") || l.contains("ENOBUFS") || l.contains("Maximum buffer size")).count() as u64;
    [("enobufs_warnings".to_string(), lost)].into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = r#"{"timestamp": "2026-11-28T06:41:22", "dvc": "Netfilter", "orig.ip.protocol": 6, "ct.id": 438207639, "ct.event": 1, "flow.start.sec": 1795848082, "src_ip": "10.99.0.1", "dest_ip": "203.0.113.10", "reply.ip.saddr.str": "203.0.113.10"}"#;

    #[test]
    fn reads_event_type_and_destination() {
        assert_eq!(event(NEW, "203.0.113.10"), Some(true));
        assert_eq!(event(&NEW.replace("\"ct.event\": 1", "\"ct.event\": 4"), "203.0.113.10"), Some(false));
        assert_eq!(event(&NEW.replace("\"ct.event\": 1", "\"ct.event\": 2"), "203.0.113.10"), None);
        assert_eq!(event(NEW, "10.77.0.10"), None);
        assert_eq!(event("garbage", "203.0.113.10"), None);
    }

    #[test]
    fn config_filters_the_public_range_in_event_mode() {
        let c = config();
        assert!(c.contains("stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n"));
        assert!(c.contains("accept_dst_filter=203.0.113.0/24\n") && !c.contains("pollinterval"));
    }
}
