//! Reading what the consumers wrote: counting delivered NEW/DESTROY events
//! for the load's public and private destinations, and the counters on
//! conntrackd's `conntrackd stopped` line.
use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader},
    net::Ipv4Addr,
    path::Path,
};

use anyhow::{Context, Result};

/// Output line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// conntrackd's JSON lines.
    Json,
    /// `conntrack -E` text lines.
    Conntrack,
    /// ulogd's JSON output plugin.
    Ulogd,
}

/// Events found in an output file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Delivered {
    /// NEW and DESTROY events to the public destination.
    pub new: u64,
    pub destroy: u64,
    /// NEW and DESTROY events to the private destination.
    pub private_new: u64,
    pub private_destroy: u64,
    /// Lines that are none of these (other types or other destinations).
    pub other: u64,
}

impl Delivered {
    /// NEW + DESTROY to the public destination.
    pub fn public(&self) -> u64 {
        self.new + self.destroy
    }

    /// NEW + DESTROY to the private destination.
    pub fn private(&self) -> u64 {
        self.private_new + self.private_destroy
    }
}

/// Counts the NEW and DESTROY events for `public` and `private` in `path`.
pub(crate) fn delivered(path: &Path, format: Format, public: Ipv4Addr, private: Ipv4Addr) -> Result<Delivered> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut counts = Delivered::default();
    let (public, private) = (public.to_string(), private.to_string());
    for line in BufReader::new(file).split(b'\n') {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let line = String::from_utf8_lossy(&line);
        let (public, private) = match format {
            Format::Json => (json_event(&line, &public), json_event(&line, &private)),
            Format::Conntrack => (conntrack_event(&line, &public), conntrack_event(&line, &private)),
            Format::Ulogd => (ulogd_event(&line, &public), ulogd_event(&line, &private)),
        };
        match (public, private) {
            (Some(Kind::New), _) => counts.new += 1,
            (Some(Kind::Destroy), _) => counts.destroy += 1,
            (_, Some(Kind::New)) => counts.private_new += 1,
            (_, Some(Kind::Destroy)) => counts.private_destroy += 1,
            _ => counts.other += 1,
        }
    }
    Ok(counts)
}

enum Kind {
    New,
    Destroy,
}

/// `{"time":...,"type":"NEW",...,"dst_addr":"203.0.113.10",...}`
fn json_event(line: &str, dst: &str) -> Option<Kind> {
    let field = |key: &str| {
        let start = line.find(&format!(",\"{key}\":\""))? + key.len() + 5;
        line[start..].split('"').next()
    };
    if field("dst_addr")? != dst {
        return None;
    }
    match field("type")? {
        "NEW" => Some(Kind::New),
        "DESTROY" => Some(Kind::Destroy),
        _ => None,
    }
}

fn ulogd_event(line: &str, dst: &str) -> Option<Kind> {
    super::ulogd::event(line, dst).map(|new| if new { Kind::New } else { Kind::Destroy })
}

/// `[1700000000.000001]\t    [NEW] tcp      6 120 SYN_SENT src=... dst=203.0.113.10 ...`
/// (the first `dst=` is the original direction).
fn conntrack_event(line: &str, dst: &str) -> Option<Kind> {
    let first_dst = line.split_whitespace().find_map(|t| t.strip_prefix("dst="))?;
    if first_dst != dst {
        return None;
    }
    match line.split_whitespace().find(|t| matches!(*t, "[NEW]" | "[UPDATE]" | "[DESTROY]"))? {
        "[NEW]" => Some(Kind::New),
        "[DESTROY]" => Some(Kind::Destroy),
        _ => None,
    }
}

/// The `name=value` numbers on the first line containing `marker`; for
/// `kernel=seen=5` the name is `seen`, for `sinks=stream.written=5` it is
/// `stream.written`.
pub(crate) fn counters(lines: &[String], marker: &str) -> Option<BTreeMap<String, u64>> {
    let line = lines.iter().find(|l| l.contains(marker))?;
    let mut map = BTreeMap::new();
    for token in line.split_whitespace() {
        let Some((left, value)) = token.rsplit_once('=') else { continue };
        let name = left.rsplit_once('=').map_or(left, |(_, name)| name);
        if let Ok(value) = value.trim_matches('"').parse() {
            map.insert(name.to_string(), value);
        }
    }
    Some(map)
}

/// conntrack -E's own summary: `N flow events have been shown` on exit, and
/// how many times it warned that it lost events (`ENOBUFS`).
pub(crate) fn conntrack_summary(lines: &[String]) -> BTreeMap<String, u64> {
    let mut map = BTreeMap::new();
    let shown = lines.iter().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        let at = words.windows(2).position(|w| w == ["flow", "events"])?;
        words.get(at.checked_sub(1)?)?.parse::<u64>().ok()
    });
    if let Some(shown) = shown {
        map.insert("events_shown".to_string(), shown);
    }
    map.insert("enobufs_warnings".to_string(), lines.iter().filter(|l| l.contains("ENOBUFS")).count() as u64);
    map
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DST: &str = "203.0.113.10";

    #[test]
    fn json_lines() {
        let new = r#"{"time":"t","level":"INFO","msg":"NEW TCP connection from a to b","type":"NEW","flow":1,"prot":"TCP","src_addr":"203.0.113.1","dst_addr":"203.0.113.10","src_port":1024,"dst_port":9}"#;
        assert!(matches!(json_event(new, DST), Some(Kind::New)));
        let other = new.replace("\"dst_addr\":\"203.0.113.10\"", "\"dst_addr\":\"198.51.100.1\"");
        assert!(json_event(&other, DST).is_none());
        assert!(matches!(json_event(&new.replace("\"NEW\"", "\"DESTROY\""), DST), Some(Kind::Destroy)));
        assert!(json_event("garbage", DST).is_none());
    }

    #[test]
    fn conntrack_lines() {
        let new = "[1700000000.123456]\t    [NEW] tcp      6 120 SYN_SENT src=203.0.113.1 dst=203.0.113.10 sport=1024 dport=9 [UNREPLIED] src=203.0.113.10 dst=203.0.113.1 sport=9 dport=1024";
        assert!(matches!(conntrack_event(new, DST), Some(Kind::New)));
        let destroy = " [DESTROY] tcp      6 SYN_SENT src=203.0.113.1 dst=203.0.113.10 sport=1 dport=9 [UNREPLIED] src=203.0.113.10 dst=203.0.113.1";
        assert!(matches!(conntrack_event(destroy, DST), Some(Kind::Destroy)));
        let reverse = "[UPDATE] tcp 6 src=203.0.113.10 dst=203.0.113.1 sport=9 dport=1";
        assert!(conntrack_event(reverse, DST).is_none());
    }

    #[test]
    fn delivered_splits_public_and_private() {
        let path = std::env::temp_dir().join(format!("ctbench-parse-{}.out", std::process::id()));
        let line =
            |kind: &str, dst: &str| format!(r#"{{"time":"t","type":"{kind}","flow":1,"prot":"TCP","src_addr":"203.0.113.1","dst_addr":"{dst}","dst_port":9}}"#);
        let text = [line("NEW", DST), line("DESTROY", DST), line("NEW", "10.77.0.10"), line("UPDATE", DST), "junk".to_string()].join("\n");
        std::fs::write(&path, text).unwrap();
        let d = delivered(&path, Format::Json, DST.parse().unwrap(), "10.77.0.10".parse().unwrap());
        let _ = std::fs::remove_file(&path);
        let d = d.unwrap();
        assert_eq!((d.new, d.destroy, d.private_new, d.private_destroy, d.other), (1, 1, 1, 0, 2));
        assert_eq!((d.public(), d.private()), (2, 1));
    }

    #[test]
    fn stopped_line_counters() {
        let lines = vec![
            "x INFO conntrackd stopped kernel=seen=10 parse_error=0 ring_full=2 submitted=8 decode_errors=0 sinks=stream.written=8 stream.dropped_queue_full=0"
                .to_string(),
        ];
        let c = counters(&lines, "conntrackd stopped").unwrap();
        assert_eq!(c["seen"], 10);
        assert_eq!(c["ring_full"], 2);
        assert_eq!(c["stream.written"], 8);
        assert!(counters(&lines, "absent").is_none());
    }

    #[test]
    fn conntrack_summary_lines() {
        let lines = vec![
            "WARNING: We have hit ENOBUFS! We are losing events.".to_string(),
            "conntrack v1.4.7 (conntrack-tools): 42 flow events have been shown.".to_string(),
        ];
        let s = conntrack_summary(&lines);
        assert_eq!(s["events_shown"], 42);
        assert_eq!(s["enobufs_warnings"], 1);
    }

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(strip_ansi("\u{1b}[32m INFO\u{1b}[0m ready"), " INFO ready");
    }
}
