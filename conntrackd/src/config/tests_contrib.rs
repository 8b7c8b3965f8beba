//! The documented configuration (contrib/conntrackd.toml) against the parser,
//! its commented `[sink.loki]` block included.
use super::Config;

/// contrib/conntrackd.toml with its commented `[sink.loki]` block switched on.
fn contrib_with_loki() -> String {
    let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/conntrackd.toml"));
    let mut in_loki = false;
    let mut out = String::new();
    for line in text.lines() {
        in_loki |= line.starts_with("# [sink.loki]");
        let is_key = line
            .strip_prefix("# ")
            .is_some_and(|rest| rest.starts_with('[') || rest.split_once(" = ").is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        out.push_str(if in_loki && is_key { &line[2..] } else { line });
        out.push('\n');
    }
    out
}

#[test]
fn every_documented_key_is_accepted() {
    // The example CA file does not exist here: validation does not open it.
    let text = contrib_with_loki();
    let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let loki = config.sinks.loki.expect("loki enabled");
    assert_eq!(loki.labels, vec![("environment".to_string(), "production".to_string())]);
    assert_eq!(loki.spool_dir.as_deref(), Some(std::path::Path::new("/var/lib/conntrackd/spool")));
    assert!(loki.ca_file.is_some() && loki.bearer_token.is_some() && loki.tenant_id.is_some());
}
