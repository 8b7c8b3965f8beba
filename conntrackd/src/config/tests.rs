//! Tests of loading, overriding and validating the configuration.
use super::*;
use crate::sink::config::Writer;

#[test]
fn stream_sink_settings() {
    let c = Config::from_toml("[sink.stream]\nenable = true\nwriter = \"discard\"\n").unwrap();
    assert_eq!(c.sinks.stream.unwrap().writer, Writer::Discard);
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
    assert_eq!(builtin.sinks.stream.as_ref().map(|s| s.writer), Some(Writer::Stdout));
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
    use keys::{keys, Kind};
    for key in keys() {
        let value = match key.kind {
            Kind::Bool => "true",
            Kind::Int => "1",
            Kind::Enum(values) => values[0],
            Kind::Str | Kind::Url(_) | Kind::List | Kind::Table(_) => "x",
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
        assert!(keys().iter().any(|k| k.path == path), "{path} is in contrib/conntrackd.toml but not in the key table");
    }
}

/// The table's enumerations are validation's: every listed value (and
/// scheme) is accepted, in the file and as a flag, and an unlisted one is
/// refused naming the key. A value added to one side only fails here.
#[test]
fn enumerations_in_the_table_are_exactly_what_validation_accepts() {
    use keys::{keys, Kind};
    let mut checked = 0;
    for key in keys() {
        let (good, bad): (Vec<String>, Vec<String>) = match key.kind {
            Kind::Enum(values) => (values.iter().map(|v| v.to_string()).collect(), vec!["bogus".into(), format!("{}x", values[0])]),
            Kind::Url(schemes) => (schemes.iter().map(|s| example_url(s)).collect(), vec!["bogus://127.0.0.1:1".into(), "127.0.0.1:514".into()]),
            Kind::Bool | Kind::Int | Kind::Str | Kind::List | Kind::Table(_) => continue,
        };
        // The key's own sink must be on for its table to be validated.
        let section = key.path.strip_prefix("sink.").and_then(|rest| rest.split_once('.')).map(|(sink, _)| sink).unwrap_or("stream");
        let load = |value: &str| {
            let flags = vec![(key.path, vec![value.to_string()]), ("sink.stream.enable", vec!["true".into()]), (enable_path(section), vec!["true".into()])];
            let mut doc = toml::Table::new();
            keys::apply_flags(&mut doc, &flags).unwrap();
            let by_file = Config::from_text(Path::new("t"), &toml::to_string(&doc).unwrap(), &Overrides::default()).map(|_| ());
            let by_flag = Config::from_text(Path::new("t"), "", &Overrides { flags, ..Overrides::default() }).map(|_| ());
            (by_file, by_flag)
        };
        for value in &good {
            let (file, flag) = load(value);
            assert!(file.is_ok() && flag.is_ok(), "{} = {value:?} is in the key table but validation refuses it: {file:?} {flag:?}", key.path);
        }
        for value in &bad {
            for result in <[_; 2]>::from(load(value)) {
                let err = result.expect_err(&format!("{} = {value:?} is not in the key table but validation accepts it", key.path)).to_string();
                assert!(err.contains(key.path), "{} = {value:?}: the error names another key: {err}", key.path);
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} enumerated keys");
}

/// A valid address for a URL scheme of the key table.
fn example_url(scheme: &str) -> String {
    match scheme {
        "udp" | "tcp" | "http" | "https" => format!("{scheme}://127.0.0.1:5140"),
        "unix" | "unixgram" | "unixpacket" => format!("{scheme}:///run/conntrackd-test.sock"),
        other => panic!("the key table has a new URL scheme {other:?}: add an example address here"),
    }
}

fn enable_path(section: &str) -> &'static str {
    keys::keys().iter().map(|k| k.path).find(|p| *p == format!("sink.{section}.enable")).unwrap_or_else(|| panic!("no key sink.{section}.enable"))
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
    assert_eq!((c.source.ring_buffer_bytes, c.sinks.stream.as_ref().unwrap().writer), (131072, Writer::Stderr));
    assert_eq!(c.source.drain_interval, std::time::Duration::from_millis(50), "default");
    let env = vec![
        ("CONNTRACKD_SOURCE_RING_BUFFER_BYTES".to_string(), "262144".to_string()),
        ("CONNTRACKD_SINK_STREAM_WRITER".to_string(), "discard".to_string()),
        ("CONNTRACKD_FILTER".to_string(), "[\"log type NEW\"]".to_string()),
        ("CONNTRACKD_SOURCE_RELIABLE".to_string(), "true".to_string()),
    ];
    let c = Config::from_text(Path::new("f"), file, &Overrides { env: env.clone(), flags: vec![] }).unwrap();
    assert_eq!((c.source.ring_buffer_bytes, c.sinks.stream.as_ref().unwrap().writer, c.rules.rules.len()), (262144, Writer::Discard, 1));
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
        ("[sink.stream]\nenable = true\nwritter = 1\n", "config file <test>: line 3, column 1: sink.stream.writter: unknown field `writter`"),
        ("[source]\nring_buffer_bytes = \"big\"\n[sink.stream]\nenable = true\n", "config file <test>: line 2, column 21: source.ring_buffer_bytes: invalid type: string \"big\", expected u64"),
        // An enumerated key is a choice: the parser lists its values, with the line.
        ("[source]\nkind = \"bpf\"\n[sink.stream]\nenable = true\n", "config file <test>: line 2, column 8: source.kind: expected auto, ebpf or netlink, found \"bpf\""),
        ("[log]\nlevel = \"loud\"\n[sink.stream]\nenable = true\n", "config log.level: expected debug, info, warn or error, optionally with an offset such as info+2, found \"loud\""),
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
    assert!(c.sinks.stream.is_some() && c.sinks.journal.is_none() && c.sinks.syslog.is_none());
    let c = Config::from_toml("[sink.syslog]\nenable = true\n[sink.journal]\nenable = true\n").unwrap();
    assert!(c.sinks.stream.is_none() && c.sinks.journal.is_some() && c.sinks.syslog.is_some());
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

/// The shape of the Go original's contrib/config.yaml (its keys, its comments, a `---` marker).
const ORIGINAL_YAML: &str = r#"# conntrackd configuration file
---
log:
  level: info
geoip:
  database: ""
filter:
  - 'drop destination.address == "8.8.8.8"'
  - 'log protocol == "TCP" && is_network(destination.address, "PUBLIC")'
  - "drop any"
sink:
  journal:
    enable: false
  syslog:
    enable: false
    address: "udp://localhost:514"
  loki:
    enable: false
    address: "http://localhost:3100"
    labels:
      - "env=production"
      - "host=myhost"
  stream:
    enable: true
    writer: "stdout"  # Options: stdout, stderr, discard
"#;

fn load_file(name: &str, text: &str) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir().join(format!("conntrackd-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let result = Config::load(Some(&path), &Overrides::default());
    std::fs::remove_dir_all(&dir).unwrap();
    result
}

/// What the Go original's installer writes to /etc/conntrackd/conntrackd.yaml (with --with-geoip).
const INSTALLER_YAML: &str = "log:\n  level: \"info\"\n\nfilter:\n  - 'log protocol == \"TCP\" && is_network(destination.address, \"PUBLIC\")'\n  - 'drop any'\n\nsink:\n  stream:\n    enable: true\n\ngeoip:\n  database: \"\"\n";

#[test]
fn the_originals_yaml_files_work_unchanged_and_sed_switches_the_sink() {
    let c = load_file("conntrackd.yaml", ORIGINAL_YAML).unwrap();
    assert_eq!(c.rules.rules.len(), 3);
    assert_eq!(c.sinks.stream.as_ref().map(|s| s.writer), Some(Writer::Stdout));
    assert!(c.sinks.loki.is_none() && c.sinks.journal.is_none() && c.sinks.syslog.is_none());
    assert_eq!(c.geoip.database, None, "an empty database path means none");
    let c = load_file("conntrackd.yaml", INSTALLER_YAML).unwrap();
    assert_eq!(c.rules.rules.len(), 2);
    assert!(c.sinks.stream.is_some() && c.sinks.loki.is_none());
    // The original's documentation: `sed -i s/stream/loki/ /etc/conntrackd/conntrackd.yaml`.
    let c = load_file("conntrackd.yaml", &INSTALLER_YAML.replace("stream", "loki")).unwrap();
    assert!(c.sinks.stream.is_none(), "{c:?}");
    assert_eq!(c.sinks.loki.map(|l| l.endpoint.base), Some("http://localhost:3100".to_string()));
}

#[test]
fn json_and_yaml_errors_name_file_line_column_and_key() {
    let err = load_file("c.yaml", "sink:\n  stream:\n    enable: true\n    writter: stdout\n").unwrap_err().to_string();
    assert!(err.contains("c.yaml") && err.contains("line 4") && err.contains("writter"), "{err}");
    let err = load_file("c.yaml", "sink:\n  stream:\n    enable: [1]\n").unwrap_err().to_string();
    assert!(err.contains("line 3") && err.contains("column"), "{err}");
    let err = load_file("c.json", "{\"sink\": {\"stream\": {\"enable\": true, \"writter\": \"x\"}}}").unwrap_err().to_string();
    assert!(err.contains("c.json: line 1, column") && err.contains("writter"), "{err}");
    let err = load_file("c.json", "{\"sink\": \n  {\"stream\": {\"enable\": \"yes\"}}}").unwrap_err().to_string();
    assert!(err.contains("line 2, column"), "{err}");
    let c =
        load_file("c.json", "{\"filter\": [\"log any\"], \"sink\": {\"stream\": {\"enable\": true, \"writer\": \"stderr\"}}, \"geoip\": {\"database\": null}}")
            .unwrap();
    assert_eq!(c.sinks.stream.map(|s| s.writer), Some(Writer::Stderr));
    let err = load_file("c.conf", "x").unwrap_err().to_string();
    assert!(err.contains("must end in .toml, .yaml, .yml or .json"), "{err}");
}

#[test]
fn yaml_and_json_nesting_is_bounded() {
    // Deep nesting where the schema expects a string, and under no key at all.
    for (name, text) in [
        ("deep.yaml", format!("filter: {}{}", "[".repeat(50_000), "]".repeat(50_000))),
        ("top.yaml", format!("{}{}", "[".repeat(50_000), "]".repeat(50_000))),
        ("deep.json", format!("{{\"filter\": {}{}}}", "[".repeat(50_000), "]".repeat(50_000))),
        ("top.json", format!("{}{}", "[".repeat(50_000), "]".repeat(50_000))),
    ] {
        let err = load_file(name, &text).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains("line 1, column"), "{name}: {err}");
    }
    let err = format::document(Format::Json, Path::new("v.json"), &format!("{}{}", "[".repeat(50_000), "]".repeat(50_000))).unwrap_err().to_string();
    assert!(err.contains("recursion limit") || err.contains("expected"), "{err}");
}

#[test]
fn two_default_files_are_an_error_naming_both() {
    let dir = std::env::temp_dir().join(format!("conntrackd-defaults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(format::default_file(&dir).unwrap(), None);
    std::fs::write(dir.join("conntrackd.yaml"), "").unwrap();
    assert_eq!(format::default_file(&dir).unwrap(), Some(dir.join("conntrackd.yaml")));
    std::fs::write(dir.join("conntrackd.toml"), "").unwrap();
    let err = format::default_file(&dir).unwrap_err().to_string();
    assert!(err.contains("conntrackd.toml") && err.contains("conntrackd.yaml exists too"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_built_in_stream_sink_only_without_another_enabled_sink() {
    let load = |flags: Vec<(&'static str, Vec<String>)>| {
        Config::from_document(Path::new("<built-in default>"), Format::Toml, DEFAULT_CONFIG, &Overrides { flags, ..Overrides::default() }, true).unwrap()
    };
    assert!(load(Vec::new()).sinks.stream.is_some(), "no sink given: the built-in stream sink");
    let c = load(vec![("sink.journal.enable", vec!["true".into()])]);
    assert!(c.sinks.journal.is_some() && c.sinks.stream.is_none(), "--sink.journal.enable alone: no second copy on stdout");
    let c = load(vec![("sink.journal.enable", vec!["true".into()]), ("sink.stream.enable", vec!["true".into()])]);
    assert!(c.sinks.journal.is_some() && c.sinks.stream.is_some(), "both asked for");
    let env = Overrides { env: vec![("CONNTRACKD_SINK_LOKI_ENABLE".into(), "true".into())], ..Overrides::default() };
    let c = Config::from_document(Path::new("<built-in default>"), Format::Toml, DEFAULT_CONFIG, &env, true).unwrap();
    assert!(c.sinks.loki.is_some() && c.sinks.stream.is_none(), "the environment counts as well");
}

/// Every integer key: 0, -1 and values past any sane bound either work
/// (where the key says so) or fail with an error that names the key and
/// what is allowed; none panics or wraps.
#[test]
fn integer_keys_reject_out_of_range_values_naming_the_key() {
    use keys::{keys, Kind};
    let all_sinks = "[sink.stream]\nenable = true\n[sink.journal]\nenable = true\n[sink.syslog]\nenable = true\n[sink.loki]\nenable = true\n";
    let valid =
        [("geoip.cache_entries", "0"), ("geoip.watch_interval_ms", "0"), ("sink.loki.spool_max_bytes", "9223372036854775807"), ("community_id_seed", "0")];
    let ints: Vec<_> = keys().iter().filter(|k| k.kind == Kind::Int).collect();
    assert_eq!(ints.len(), 13, "a new integer key: add its edges here");
    for key in ints {
        for value in ["0", "-1", "9223372036854775807", "18446744073709551616"] {
            let over = Overrides { flags: vec![(key.path, vec![value.into()])], ..Overrides::default() };
            let result = Config::from_text(Path::new("t"), all_sinks, &over);
            if valid.contains(&(key.path, value)) {
                assert!(result.is_ok(), "{} = {value}: {:?}", key.path, result.err());
                continue;
            }
            let err = result.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(key.path) && err.contains("expected"), "{} = {value} must be refused naming the key: {err:?}", key.path);
        }
        let (text, line, name) = match key.path.rsplit_once('.') {
            Some((table, name)) => (format!("[{table}]\n{name} = -1\n"), 2, name),
            None => (format!("{} = -1\n", key.path), 1, key.path),
        };
        let err = Config::from_toml(&text).unwrap_err().to_string();
        let want = format!("config file <test>: line {line}, column {}: {}: invalid value: integer `-1`, expected ", name.len() + 4, key.path);
        assert!(err.starts_with(&want), "got:  {err}\nwant: {want}");
    }
}

#[test]
fn edges_of_the_integer_keys() {
    let c =
        Config::from_toml("[source]\nring_buffer_bytes = 1073741824\nreceive_buffer_bytes = 65536\n[sink.stream]\nenable = true\nqueue_events = 10000000\n")
            .unwrap();
    assert_eq!((c.source.ring_buffer_bytes, c.source.receive_buffer_bytes, c.sinks.stream.map(|s| s.queue_events)), (1 << 30, 65536, Some(10_000_000)));
    assert_eq!(Config::from_toml("community_id_seed = 65535\n[sink.stream]\nenable = true\n").unwrap().community_id_seed, 65535);
    for (text, want) in [
        ("[source]\nring_buffer_bytes = 98304", "config source.ring_buffer_bytes: expected a power of two between 65536 and 1073741824, found 98304"),
        ("[source]\nring_buffer_bytes = 2147483648", "config source.ring_buffer_bytes: expected a power of two between 65536 and 1073741824, found 2147483648"),
        ("[source]\ndrain_interval_ms = 10001", "config source.drain_interval_ms: expected 1..=10000, found 10001"),
        ("[sink.stream]\nqueue_events = 10000001", "config sink.stream.queue_events: expected 1..=10000000, found 10000001"),
        ("[metrics]\nunhealthy_after_s = 604801", "config metrics.unhealthy_after_s: expected 1..=604800 (a week), found 604801"),
        ("[geoip]\ncache_entries = 10000001", "config geoip.cache_entries: expected 0 (no cache) to 10000000, found 10000001"),
        ("community_id_seed = 65536", "config community_id_seed: expected 0 to 65535, found 65536"),
    ] {
        let text = if text.starts_with("[sink.stream]") { format!("{text}\nenable = true\n") } else { format!("{text}\n[sink.stream]\nenable = true\n") };
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert_eq!(err, want);
    }
}

/// The original's `[profiler]` table and flags are accepted; enabling it
/// starts the daemon with a warning instead of failing.
#[test]
fn profiler_keys_are_accepted_and_enabling_warns() {
    let c = Config::from_toml("[profiler]\nenable = false\naddress = \"http://localhost:4040\"\n[sink.stream]\nenable = true\n").unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let over =
        Overrides { env: vec![("CONNTRACKD_PROFILER_ADDRESS".into(), "http://pyroscope:4040".into())], flags: vec![("profiler.enable", vec!["true".into()])] };
    let c = Config::from_text(Path::new("x"), "[sink.stream]\nenable = true\n", &over).unwrap();
    assert_eq!(c.warnings, [PROFILER_WARNING]);
    let err = Config::from_toml("[profiler]\nenabled = true\n[sink.stream]\nenable = true\n").unwrap_err();
    assert!(err.to_string().contains("enabled"), "unknown keys stay errors: {err}");
}

#[test]
fn log_level_takes_the_originals_spelling() {
    let c = Config::from_toml("[log]\nlevel = \"WARN\"\n[sink.stream]\nenable = true\n").unwrap();
    assert_eq!(c.log.level, LevelFilter::WARN);
    let c = Config::from_toml("[log]\nlevel = \"info+2\"\n[sink.stream]\nenable = true\n").unwrap();
    assert_eq!(c.log.level, LevelFilter::WARN);
    let err = Config::from_toml("[log]\nlevel = \"verbose\"\n[sink.stream]\nenable = true\n").unwrap_err().to_string();
    assert!(err.contains("log.level") && err.contains("\"verbose\""), "{err}");
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
