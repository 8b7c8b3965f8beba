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
