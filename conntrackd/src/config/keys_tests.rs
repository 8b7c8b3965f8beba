//! Tests of the key table's environment and flag overrides (kept out of
//! `keys.rs`, which integration tests compile on their own).
use toml::{Table, Value};

use super::keys::*;

#[test]
fn env_and_flags_set_nested_keys_lists_and_booleans() {
    let mut doc: Table = toml::from_str("[sink.stream]\nenable = false\n").unwrap();
    let env = vec![
        ("CONNTRACKD_SINK_STREAM_ENABLE".to_string(), "true".to_string()),
        ("CONNTRACKD_FILTER".to_string(), "[\"log any\"]".to_string()),
        ("PATH".to_string(), "/bin".to_string()),
    ];
    apply_env(&mut doc, &env).unwrap();
    assert_eq!(doc["sink"]["stream"]["enable"], Value::Boolean(true));
    assert_eq!(doc["filter"], Value::Array(vec![Value::String("log any".into())]));
    apply_flags(&mut doc, &[("sink.stream.enable", vec!["false".into()]), ("filter", vec!["drop any".into(), "log any".into()])]).unwrap();
    assert_eq!(doc["sink"]["stream"]["enable"], Value::Boolean(false));
    assert_eq!(doc["filter"].as_array().unwrap().len(), 2);
    apply_flags(&mut doc, &[("source.ring_buffer_bytes", vec!["65536".into()])]).unwrap();
    assert_eq!(doc["source"]["ring_buffer_bytes"], Value::Integer(65536));
}

#[test]
fn bad_overrides_name_their_origin() {
    let mut doc = Table::new();
    let unknown = apply_env(&mut doc, &[("CONNTRACKD_SINK_STREAM_ENABEL".into(), "true".into())]).unwrap();
    assert_eq!(unknown, vec!["CONNTRACKD_SINK_STREAM_ENABEL".to_string()]);
    let err = apply_env(&mut doc, &[("CONNTRACKD_FILTER".into(), "log any".into())]).unwrap_err();
    assert!(err.to_string().contains("expected a TOML array of strings"), "{err}");
    let err = apply_flags(&mut doc, &[("source.reliable", vec!["maybe".into()])]).unwrap_err();
    assert_eq!(err.to_string(), "--source.reliable: expected true or false, found \"maybe\"");
    let err = apply_flags(&mut doc, &[("source.ring_buffer_bytes", vec!["4M".into()])]).unwrap_err();
    assert_eq!(err.to_string(), "--source.ring_buffer_bytes: expected a whole number, found \"4M\"");
    let err = apply_flags(&mut doc, &[("sink.stream.queue_events", vec!["-1".into()])]).unwrap_err();
    assert_eq!(err.to_string(), "--sink.stream.queue_events: expected a whole number of at least 0, found \"-1\"");
    let err = apply_env(&mut doc, &[("CONNTRACKD_GEOIP_CACHE_ENTRIES".into(), "99999999999999999999".into())]).unwrap_err();
    assert_eq!(err.to_string(), "environment variable CONNTRACKD_GEOIP_CACHE_ENTRIES: expected a whole number, found \"99999999999999999999\"");
}

#[test]
fn env_names() {
    assert_eq!(env_name("sink.loki.enable"), "CONNTRACKD_SINK_LOKI_ENABLE");
    assert_eq!(env_name("filter"), "CONNTRACKD_FILTER");
}

#[test]
fn every_key_has_a_help_text_and_a_default() {
    assert_eq!(keys().len(), 55, "a new key: check its help here and add it to contrib/conntrackd.toml");
    for key in keys() {
        let help = key.help();
        assert!(!key.doc.trim().is_empty(), "{} has no doc comment (its help)", key.path);
        assert!(help.ends_with(']') && !help.contains("[default: ]") && !help.contains("a table"), "{}: {help}", key.path);
        assert!(!matches!(key.kind, Kind::Table(_)), "{}: tables are flattened into their keys", key.path);
    }
    let help = |path: &str| keys().iter().find(|k| k.path == path).map(|k| k.help()).unwrap();
    assert_eq!(help("source.ring_buffer_bytes"), "eBPF ring buffer size, a power of two [default: 4194304]");
    assert_eq!(help("sink.loki.tls.ca_file"), "PEM CA bundle to trust [default: the system's]");
    assert_eq!(help("source.netns"), "Network namespaces: self, all, or paths such as /run/netns/NAME [default: self]");
}
