//! Tests of loading, overriding and validating the configuration.
use super::*;

#[test]
fn stream_sink_settings() {
    let c = Config::from_toml("[sink.stream]\nenable = true\nwriter = \"discard\"\n").unwrap();
    assert_eq!(c.stream.unwrap().writer, Writer::Discard);
    assert_eq!(c.source.ring_buffer_bytes, 4 << 20);
}

#[test]
fn unknown_key_names_line_and_key() {
    let err = Config::from_toml("[sink.stream]\nenable = true\nwritter = \"stdout\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("line 3, column 1"), "{text}");
    assert!(text.contains("writter"), "{text}");
}

#[test]
fn filter_key_and_overrides() {
    let c = Config::from_toml("filter = [\"drop any\"]\n[sink.stream]\nenable = true\n").unwrap();
    assert_eq!(c.rules.rules.len(), 1);
    let c = Config::from_toml("[sink.stream]\nenable = true\n").unwrap();
    assert!(c.rules.rules.is_empty(), "no filter key logs everything");
    let over = Overrides { flags: vec![("filter", vec!["log type NEW".into(), "drop any".into()])], ..Overrides::default() };
    let c = Config::from_text(Path::new("x"), "filter = [\"drop any\"]\n[sink.stream]\nenable = true\n", &over).unwrap();
    assert_eq!(c.rules.rules.len(), 2);
    let builtin = Config::from_text(Path::new("d"), DEFAULT_CONFIG, &Overrides::default()).unwrap();
    assert_eq!(builtin.rules, Rules::defaults());
    assert_eq!(builtin.stream.as_ref().map(|s| s.writer), Some(Writer::Stdout));
}

#[test]
fn bad_rules_name_the_origin_and_rule() {
    let err = Config::from_toml("filter = [\"log any\", \"drop port 80\"]\n[sink.stream]\nenable = true\n").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("config file <test>: filter:\nrule 2 \"drop port 80\", column 6:"), "{text}");
}

#[test]
fn source_keys() {
    let c = Config::from_toml("[source]\nkind = \"netlink\"\nreliable = true\nnetns = [\"self\", \"/run/netns/a\"]\n[sink.stream]\nenable = true\n").unwrap();
    assert_eq!(c.source.kind, crate::source::Kind::Netlink);
    assert!(c.source.reliable && c.source.label_events);
    assert_eq!(c.source.netns, vec![None, Some(PathBuf::from("/run/netns/a"))]);
    let c = Config::from_toml("[sink.stream]\nenable = true\n").unwrap();
    assert!(!c.source.label_events && c.source.kind == crate::source::Kind::Auto);
    for (bad, key) in [("kind = \"bpf\"", "source.kind"), ("netns = [\"all\", \"self\"]", "source.netns"), ("netns = [\"x\"]", "source.netns")] {
        let err = Config::from_toml(&format!("[source]\n{bad}\n[sink.stream]\nenable = true\n")).unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
    }
}

/// Every key of the table is accepted by the file schema, and every key
/// the example config documents is in the table: env, flags and file agree.
#[test]
fn key_table_matches_the_schema_and_the_example() {
    use keys::{Kind, KEYS};
    for key in KEYS {
        let value = match key.kind {
            Kind::Bool => "true",
            Kind::Int => "1",
            Kind::Str => "x",
            Kind::List => "x",
        };
        let over = Overrides { flags: vec![(key.path, vec![value.into()])], ..Overrides::default() };
        if let Err(ConfigError::Parse { message, .. }) = Config::from_text(Path::new("t"), "", &over) {
            panic!("{}: {message}", key.path);
        }
    }
    let doc: toml::Table = toml::from_str(DEFAULT_CONFIG).unwrap();
    let mut paths = Vec::new();
    flatten("", &doc, &mut paths);
    for path in paths {
        assert!(KEYS.iter().any(|k| k.path == path), "{path} is in contrib/conntrackd.toml but not in config/keys.rs");
    }
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => flatten(&path, t, out),
            _ => out.push(path),
        }
    }
}

#[test]
fn precedence_defaults_file_env_flags() {
    let file = "[source]\nring_buffer_bytes = 131072\n[sink.stream]\nenable = true\nwriter = \"stderr\"\n";
    let c = Config::from_text(Path::new("f"), file, &Overrides::default()).unwrap();
    assert_eq!((c.source.ring_buffer_bytes, c.stream.as_ref().unwrap().writer), (131072, Writer::Stderr));
    assert_eq!(c.source.drain_interval, std::time::Duration::from_millis(50), "default");
    let env = vec![
        ("CONNTRACKD_SOURCE_RING_BUFFER_BYTES".to_string(), "262144".to_string()),
        ("CONNTRACKD_SINK_STREAM_WRITER".to_string(), "discard".to_string()),
        ("CONNTRACKD_FILTER".to_string(), "[\"log type NEW\"]".to_string()),
        ("CONNTRACKD_SOURCE_RELIABLE".to_string(), "true".to_string()),
    ];
    let c = Config::from_text(Path::new("f"), file, &Overrides { env: env.clone(), flags: vec![] }).unwrap();
    assert_eq!((c.source.ring_buffer_bytes, c.stream.as_ref().unwrap().writer, c.rules.rules.len()), (262144, Writer::Discard, 1));
    assert!(c.source.reliable);
    let flags = vec![
        ("source.ring_buffer_bytes", vec!["524288".to_string()]),
        ("filter", vec!["log any".to_string(), "drop any".to_string()]),
        ("source.reliable", vec!["false".to_string()]),
    ];
    let c = Config::from_text(Path::new("f"), file, &Overrides { env, flags }).unwrap();
    assert_eq!((c.source.ring_buffer_bytes, c.rules.rules.len(), c.source.reliable), (524288, 2, false));
}

#[test]
fn error_messages_name_file_line_column_and_key() {
    let cases = [
        ("[sink.stream]\nenable = true\nwritter = 1\n", "config file <test>: line 3, column 1: unknown field `writter`"),
        ("[source]\nring_buffer_bytes = \"big\"\n[sink.stream]\nenable = true\n", "config file <test>: line 2, column 21: invalid type: string \"big\", expected u64"),
        ("[source]\nkind = \"bpf\"\n[sink.stream]\nenable = true\n", "config source.kind: expected auto, ebpf or netlink, found \"bpf\""),
        ("[log]\nlevel = \"loud\"\n[sink.stream]\nenable = true\n", "config log.level: expected debug, info, warn or error, found \"loud\""),
        ("[metrics]\nlisten = \"localhost\"\n[sink.stream]\nenable = true\n", "config metrics.listen: expected IP:PORT such as 127.0.0.1:9469, found \"localhost\""),
        ("filter = [\"log port 1\"]\n[sink.stream]\nenable = true\n", "config file <test>: filter:\nrule 1 \"log port 1\", column 5: found 'port' without a direction: expected 'source port', 'destination port' or 'on port'"),
    ];
    for (text, want) in cases {
        let err = Config::from_toml(text).unwrap_err().to_string();
        assert!(err.starts_with(want), "got:  {err}\nwant: {want}");
    }
}

#[test]
fn no_sink_is_an_error() {
    let err = Config::from_toml("[sink.stream]\nenable = false\n").unwrap_err();
    assert!(err.to_string().contains("no sink is enabled"), "{err}");
}

#[test]
fn contrib_example_and_log_sinks() {
    let c = Config::from_toml(include_str!("../../../contrib/conntrackd.toml")).unwrap();
    assert!(c.stream.is_some() && c.journal.is_none() && c.syslog.is_none());
    let c = Config::from_toml("[sink.syslog]\nenable = true\n[sink.journal]\nenable = true\n").unwrap();
    assert!(c.stream.is_none() && c.journal.is_some() && c.syslog.is_some());
    let err = Config::from_toml("[sink.syslog]\nenable = true\nadress = \"udp://x\"\n").unwrap_err().to_string();
    assert!(err.contains("line 3, column 1") && err.contains("adress"), "{err}");
    let err = Config::from_toml("[sink.syslog]\nenable = true\naddress = \"x\"\n").unwrap_err().to_string();
    assert!(err.starts_with("config sink.syslog.address: expected udp://"), "{err}");
}

#[test]
fn geoip_keys() {
    let c = Config::from_toml("[geoip]\ndatabase = \"/x/City.mmdb\"\ncache_entries = 0\nwatch_interval_ms = 0\n[sink.stream]\nenable = true\n").unwrap();
    assert_eq!(c.geoip.database.as_deref(), Some(Path::new("/x/City.mmdb")));
    assert_eq!((c.geoip.asn_database, c.geoip.cache_entries, c.geoip.watch_interval), (None, 0, None));
    let c = Config::from_toml("[geoip]\ndatabase = \"\"\n[sink.stream]\nenable = true\n").unwrap();
    assert_eq!((c.geoip.database, c.geoip.cache_entries), (None, 4096), "an empty path means no database");
    let err = Config::from_toml("[geoip]\ndatabse = \"x\"\n[sink.stream]\nenable = true\n").unwrap_err();
    assert!(err.to_string().contains("line 2") && err.to_string().contains("databse"), "{err}");
    let over = Overrides { flags: vec![("geoip.database", vec!["/flag".into()])], ..Overrides::default() };
    let c = Config::from_text(Path::new("x"), "[geoip]\ndatabase = \"/file\"\n[sink.stream]\nenable = true\n", &over).unwrap();
    assert_eq!(c.geoip.database.as_deref(), Some(Path::new("/flag")));
}

#[test]
fn bad_ring_size_is_rejected() {
    let err = Config::from_toml("[source]\nring_buffer_bytes = 1000\n[sink.stream]\nenable = true\n").unwrap_err();
    assert!(err.to_string().contains("source.ring_buffer_bytes"), "{err}");
}

#[test]
fn deep_nesting_is_an_error_with_file_and_line_not_a_crash() {
    let deep_array = format!("[sink.stream]\nenable = true\n[source]\nnetns = {}{}\n", "[".repeat(20_000), "]".repeat(20_000));
    let deep_inline = format!("[sink.stream]\nenable = true\nx = {}1{}\n", "{a = ".repeat(20_000), "}".repeat(20_000));
    let dotted = format!("[sink.stream]\nenable = true\n{} = 1\n", ["a"; 100_000].join("."));
    let header = format!("[sink.stream]\nenable = true\n[{}]\n", ["a"; 100_000].join("."));
    for (name, text, line) in [("array", deep_array, 4), ("inline table", deep_inline, 3), ("dotted key", dotted, 3), ("table header", header, 3)] {
        let err = Config::from_text(Path::new("/etc/deep.toml"), &text, &Overrides::default()).expect_err(name).to_string();
        assert!(err.starts_with(&format!("config file /etc/deep.toml: line {line}, column ")), "{name}: {err}");
        assert!(err.ends_with("recursion limit exceeded (arrays, inline tables or dotted keys nested too deeply)"), "{name}: {err}");
    }
}
