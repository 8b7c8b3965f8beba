//! The rule table's cases (`original_rules.rs`): the rule lists of the
//! original's documentation (read from the release archives) and a grid of
//! events to decide every rule list on.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{json, Value};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The archive of `version` under xtask/peers/conntrackd-go.
fn archive(version: &str) -> PathBuf {
    Path::new(ROOT).join(format!("xtask/peers/conntrackd-go/conntrackd-{version}.tar.gz"))
}

/// Files of the release holding rule examples.
const DOC_FILES: [&str; 4] = ["docs/filter.md", "README.md", "contrib/config.yaml", "contrib/install.sh"];

/// A file of the release `version`.
fn release_file(version: &str, file: &str) -> String {
    let member = format!("conntrackd-{version}/{file}");
    let out = Command::new("tar").arg("-xzOf").arg(archive(version)).arg(&member).output().expect("run tar");
    assert!(out.status.success(), "{member} is not in {}: {}", archive(version).display(), text(&out.stderr));
    text(&out.stdout)
}

/// Every rule list of the release's documentation, with the file and line it
/// starts on; for v1.3.0 also the keyword rules of v1.4.1's migration table
/// (its "Old DSL" column).
pub fn doc_rule_lists(version: &str) -> Vec<(String, Vec<String>)> {
    let mut lists = Vec::new();
    for file in DOC_FILES {
        for (line, rules) in rule_lists(&release_file(version, file), file.ends_with(".md")) {
            lists.push((format!("{file}:{line}"), rules));
        }
    }
    if version == "1.3.0" {
        let docs = release_file("1.4.1", "docs/filter.md");
        for (line, old, _) in migration_table(&docs) {
            lists.push((format!("v1.4.1 docs/filter.md:{line} (Old DSL)"), vec![old]));
        }
    }
    lists
}

/// The rows of the original's migration table (`| Old DSL | New CEL |`) as
/// rules: line, keyword rule, CEL rule; an expression gets `log`, and the
/// operator rows (`and`, `or`) are no rules. The CEL rules are part of
/// [`rule_lists`]' result for that file.
pub fn migration_table(text: &str) -> Vec<(usize, String, String)> {
    let mut rows = Vec::new();
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with("| Old DSL | New CEL |") {
            inside = true;
            continue;
        }
        if !line.starts_with('|') {
            inside = false;
        }
        if !inside {
            continue;
        }
        let cells: Vec<String> = line.replace("\\|", "\u{1}").split('|').map(|c| c.trim().replace('\u{1}', "|")).collect();
        let first = |cell: &str| cell.split('`').nth(1).map(str::to_string);
        let (Some(old), Some(new)) = (cells.get(1).and_then(|c| first(c)), cells.get(2).and_then(|c| first(c))) else { continue };
        if ["and", "or"].contains(&old.as_str()) {
            continue;
        }
        let rule = |e: String| if is_rule(&e) { e } else { format!("log {e}") };
        rows.push((i + 1, rule(old), rule(new)));
    }
    rows
}

/// Rule lists of one file: consecutive rule lines (`--filter '…'`, YAML
/// items, and in Markdown bare rules in code blocks) form one list; in
/// Markdown, a rule in backticks outside code blocks is a list of its own,
/// each expression of a `cel` code block is the rule `log <expression>`, and
/// so is each CEL cell of the migration table.
pub fn rule_lists(text: &str, markdown: bool) -> Vec<(usize, Vec<String>)> {
    let mut lists: Vec<(usize, Vec<String>)> = Vec::new();
    let mut current: Option<(usize, Vec<String>)> = None;
    let (mut in_block, mut cel_block) = (!markdown, false);
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if markdown && trimmed.starts_with("```") {
            lists.extend(current.take());
            in_block = !in_block;
            cel_block = in_block && trimmed == "```cel";
            continue;
        }
        if cel_block {
            if !trimmed.is_empty() {
                lists.push((i + 1, vec![format!("log {trimmed}")]));
            }
            continue;
        }
        if !in_block {
            lists.extend(inline_rules(line).into_iter().map(|rule| (i + 1, vec![rule])));
            continue;
        }
        match block_rule(trimmed, markdown) {
            Some(rule) => current.get_or_insert_with(|| (i + 1, Vec::new())).1.push(rule),
            None => lists.extend(current.take()),
        }
    }
    lists.extend(current);
    if markdown {
        lists.extend(migration_table(text).into_iter().map(|(line, _, new)| (line, vec![new])));
    }
    lists.sort_by_key(|(line, _)| *line);
    lists
}

fn is_rule(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    (lower.starts_with("log ") || lower.starts_with("drop ")) && !text.contains('<')
}

/// The rule a line of a code block (or a YAML or shell file) holds.
fn block_rule(line: &str, markdown: bool) -> Option<String> {
    if let Some(at) = line.find("--filter ") {
        let rest = line[at + "--filter ".len()..].trim_start();
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let end = rest[1..].find(quote)?;
        return Some(rest[1..1 + end].to_string());
    }
    if let Some(item) = line.strip_prefix("- ") {
        let item = item.trim();
        let quote = item.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let inner = item.strip_prefix(quote)?.strip_suffix(quote)?;
        return is_rule(inner).then(|| inner.to_string());
    }
    (markdown && is_rule(line)).then(|| line.to_string())
}

/// Rules in backticks on a Markdown line.
fn inline_rules(line: &str) -> Vec<String> {
    line.split('`').skip(1).step_by(2).filter(|s| is_rule(s)).map(str::to_string).collect()
}

/// Events of every type and protocol, IPv4 and IPv6 (loopback, link-local,
/// private, shared, multicast, broadcast, unspecified, IPv4-mapped, public —
/// among them every address the original's tests use) on either side, with
/// well-known, registered and ephemeral ports, and TCP states.
pub fn grid() -> Vec<Value> {
    let v4 = [
        "10.0.0.1",
        "10.19.80.100",
        "10.19.80.101",
        "192.168.1.1",
        "192.168.1.77",
        "172.16.5.4",
        "172.32.0.1",
        "127.0.0.1",
        "169.254.10.1",
        "224.0.0.1",
        "239.255.255.250",
        "8.8.8.8",
        "8.8.4.4",
        "8.8.8.100",
        "8.8.9.1",
        "1.1.1.1",
        "1.2.3.4",
        "5.6.7.8",
        "78.47.60.169",
        "203.0.113.9",
        "100.64.0.1",
        "0.0.0.0",
        "255.255.255.255",
    ];
    let v6 = ["fc00::1", "fd12::5", "2001:db8::1", "2001:4860:4860::8888", "::1", "fe80::1", "ff02::1", "::ffff:10.0.0.1", "::ffff:8.8.8.8", "::"];
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for a in v4 {
        pairs.extend([("10.0.0.1", a), (a, "8.8.8.8")]);
    }
    for a in v6 {
        pairs.extend([("fd00::1", a), (a, "2001:4860:4860::8888")]);
    }
    let ports = [(1234, 80), (1234, 443), (1234, 53), (53, 1234), (40000, 22), (1024, 8000), (65535, 8999), (0, 3389)];
    let mut events = Vec::new();
    for (kind, state) in [("NEW", "SYN_SENT"), ("UPDATE", "ESTABLISHED"), ("DESTROY", "TIME_WAIT")] {
        for prot in ["TCP", "UDP"] {
            for (src, dst) in &pairs {
                for (sport, dport) in ports {
                    let mut ev = json!({"type": kind, "flow": 0, "prot": prot, "src_addr": src, "dst_addr": dst, "src_port": sport, "dst_port": dport});
                    if prot == "TCP" {
                        ev["tcp_state"] = json!(state);
                    }
                    events.push(ev);
                }
            }
        }
    }
    events
}

/// Distinct rule lists in first-seen order, each with where it was first seen.
pub fn distinct(lists: impl IntoIterator<Item = (String, Vec<String>)>) -> Vec<(String, Vec<String>)> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for (source, rules) in lists {
        if seen.insert(rules.clone(), ()).is_none() {
            out.push((source, rules));
        }
    }
    out
}
