//! contrib/grafana-dashboard.json: every LogQL expression parses with
//! Grafana's own grammar (npm `@grafana/lezer-logql`, `dashboard/logql.cjs`),
//! the dashboard loads into Grafana's dashboard model (PyPI
//! `grafana-foundation-sdk`, `dashboard/model.py`), and every label and field
//! the queries and panels use is one conntrackd emits (the names in
//! `event/fields.rs` and `enrich/mod.rs`, and the Loki stream labels).
//! `cargo xtask setup` installs both tools into `target/contrib-tools`.
use std::{
    collections::BTreeSet,
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::Value;

const DASHBOARD: &str = include_str!("../../contrib/grafana-dashboard.json");
/// The Loki sink's stream labels (README "Loki sink"): the defaults; user labels are the operator's.
const STREAM_LABELS: [&str; 4] = ["service_name", "host", "level", "type"];

fn tools() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/contrib-tools")
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("contrib/grafana-dashboard.json is not JSON")
}

/// Every query: panel targets, and the stream selector of the `host` variable's `label_values(...)`.
fn expressions(d: &Value) -> Vec<String> {
    let mut out: Vec<String> = d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("every target has an expr").to_string())
        .collect();
    for var in d["templating"]["list"].as_array().expect("templating") {
        let q = var["query"]["query"].as_str().expect("variable query");
        let inner = q.strip_prefix("label_values(").and_then(|r| r.rsplit_once(',')).map(|(sel, _)| sel.trim());
        out.push(inner.unwrap_or_else(|| panic!("unexpected variable query {q}")).to_string());
    }
    out
}

/// What Grafana sends to Loki: variables interpolated.
fn interpolate(expr: &str) -> String {
    expr.replace("$__interval", "1m").replace("$__range", "6h").replace("$host", "sparrow.example.com")
}

/// Field names in the source: string literals of fields.rs, and of the name tables in enrich/mod.rs.
fn emitted_fields() -> BTreeSet<String> {
    let src = |p: &str| std::fs::read_to_string(format!("{}/src/{p}", env!("CARGO_MANIFEST_DIR"))).expect("read source");
    let literals = |text: &str| -> Vec<String> {
        text.split('"').skip(1).step_by(2).filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')).map(str::to_string).collect()
    };
    let mut fields: BTreeSet<String> = literals(&src("event/fields.rs")).into_iter().collect();
    // The literals inside each `Names { ... }` table, whatever its layout.
    let enrich = src("event/attached.rs");
    let tables = enrich.split("Names {").skip(1).filter_map(|rest| rest.split_once('}').map(|(table, _)| table));
    fields.extend(tables.flat_map(literals));
    for must in ["type", "src_addr", "dst_addr", "dst_city", "dst_country", "dst_lat", "dst_lon", "dst_asn", "dst_as_org"] {
        assert!(fields.contains(must), "the extraction from the source missed {must}: {fields:?}");
    }
    fields
}

#[test]
fn every_logql_expression_parses_and_uses_emitted_names() {
    let npm = tools().join("npm");
    assert!(npm.join("node_modules/@grafana/lezer-logql").is_dir(), "@grafana/lezer-logql is missing from {}: run `cargo xtask setup`", npm.display());
    let exprs: Vec<String> = expressions(&dashboard()).iter().map(|e| interpolate(e)).collect();
    assert!(exprs.len() >= 9, "panels and variable: {exprs:?}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard/logql.cjs");
    let mut child = Command::new("node")
        .arg(script)
        .arg(&npm)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is missing: install nodejs (`cargo xtask setup` does)");
    child.stdin.take().expect("stdin").write_all(serde_json::to_string(&exprs).expect("json").as_bytes()).expect("write");
    let out = child.wait_with_output().expect("node");
    assert!(out.status.success(), "logql.cjs failed");
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("logql.cjs output");
    let fields = emitted_fields();
    for r in &results {
        let expr = r["expr"].as_str().unwrap_or_default();
        assert_eq!(r["errors"], serde_json::json!([]), "LogQL syntax error (offsets) in {expr}");
        assert!(matches!(r["top"].as_str(), Some("LogExpr" | "MetricExpr")), "{expr}: {}", r["top"]);
        let names = |k: &str| r[k].as_array().expect(k).iter().map(|v| v.as_str().expect("name").to_string()).collect::<Vec<_>>();
        let stream = names("stream");
        assert!(stream.contains(&"service_name".to_string()), "{expr} selects service_name=\"conntrackd\"");
        for label in stream {
            assert!(STREAM_LABELS.contains(&label.as_str()), "{expr}: {label} is not a stream label of the Loki sink");
        }
        for field in names("fields") {
            assert!(fields.contains(&field), "{expr}: {field} is not a field conntrackd emits ({fields:?})");
        }
    }
}

/// `{{name}}` in legends, the geomap's coordinates and the table's columns are emitted fields too.
#[test]
fn panel_field_references_are_emitted_fields() {
    let d = dashboard();
    let fields = emitted_fields();
    let mut used = Vec::new();
    for panel in d["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            let legend = t["legendFormat"].as_str().unwrap_or_default();
            used.extend(legend.split("{{").skip(1).filter_map(|s| s.split_once("}}")).map(|(n, _)| n.trim().to_string()));
        }
        for layer in panel["options"]["layers"].as_array().into_iter().flatten() {
            used.push(layer["location"]["latitude"].as_str().expect("latitude field").to_string());
            used.push(layer["location"]["longitude"].as_str().expect("longitude field").to_string());
        }
        for tr in panel["transformations"].as_array().into_iter().flatten() {
            if let Some(names) = tr["options"]["renameByName"].as_object() {
                used.extend(names.keys().filter(|k| !k.starts_with("Value #") && *k != "Time").cloned());
            }
            for c in tr["options"]["conversions"].as_array().into_iter().flatten() {
                used.push(c["targetField"].as_str().expect("targetField").to_string());
            }
        }
    }
    assert!(used.len() >= 10, "{used:?}");
    for name in used {
        assert!(fields.contains(&name), "{name} is not a field conntrackd emits");
    }
    let titles: Vec<&str> = d["panels"].as_array().expect("panels").iter().map(|p| p["title"].as_str().unwrap_or_default()).collect();
    assert!(titles.iter().all(|t| !t.is_empty()), "every panel has a title: {titles:?}");
}

/// The Loki sink's sources (any file under src/sink with "loki" in its path).
fn loki_sink_sources(dir: &std::path::Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src/sink").flatten() {
        let path = entry.path();
        if path.is_dir() {
            loki_sink_sources(&path, out);
        } else if path.to_string_lossy().contains("loki") && path.extension().is_some_and(|e| e == "rs") {
            out.push((path.clone(), std::fs::read_to_string(&path).expect("read loki source")));
        }
    }
}

/// The default stream labels are literals of the Loki sink's code.
#[test]
fn stream_labels_are_the_loki_sinks() {
    let mut sources = Vec::new();
    loki_sink_sources(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/sink"), &mut sources);
    assert!(!sources.is_empty(), "no Loki sink sources under src/sink: the stream labels have nothing to be checked against");
    let all: String = sources.iter().map(|(_, text)| text.as_str()).collect();
    for label in STREAM_LABELS {
        assert!(all.contains(&format!("\"{label}\"")), "the Loki sink never names the stream label {label:?}");
    }
    assert!(all.contains("\"conntrackd\""), "the Loki sink's service_name value");
}

#[test]
fn dashboard_loads_into_grafanas_model() {
    let py = tools().join("python");
    assert!(py.join("grafana_foundation_sdk").is_dir(), "grafana-foundation-sdk is missing from {}: run `cargo xtask setup`", py.display());
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard/model.py"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/grafana-dashboard.json"))
        .env("PYTHONPATH", &py)
        .output()
        .expect("python3 is missing (`cargo xtask setup` installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("model: ok"), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains("Loki queries")).count(), 6, "{text}");
}
