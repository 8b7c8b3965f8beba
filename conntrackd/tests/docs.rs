//! The documentation's examples run: every rule in a ```` ```rules ```` block
//! of docs/rules.md compiles (each block as one list), every rule in a
//! ```` ```rules-invalid ```` block is rejected, and the TOML of the README's
//! migration section is a valid configuration.
use std::process::{Command, Output};

const RULES_MD: &str = include_str!("../../docs/rules.md");
const README: &str = include_str!("../../README.md");

/// The bodies of the fenced blocks whose info string is exactly `info`.
fn blocks<'a>(text: &'a str, info: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, l) if l == format!("```{info}") => current = Some(Vec::new()),
            (Some(_), "```") => out.extend(current.take()),
            (Some(body), l) => body.push(l),
            (None, _) => {}
        }
    }
    out
}

/// `conntrackd check` with `config` and the rules as `--filter` flags.
fn check(config: &str, rules: &[&str]) -> Output {
    let path = std::env::temp_dir().join(format!("conntrackd-docs-{}-{}.toml", std::process::id(), rules.len()));
    std::fs::write(&path, config).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conntrackd"));
    cmd.args(["check", "--config"]).arg(&path);
    for rule in rules {
        cmd.arg(format!("--filter={rule}"));
    }
    let out = cmd.output().expect("run conntrackd check");
    let _ = std::fs::remove_file(&path);
    out
}

#[test]
fn rule_examples_compile() {
    let lists = blocks(RULES_MD, "rules");
    assert!(lists.len() >= 5, "docs/rules.md has its ```rules blocks: {}", lists.len());
    for list in lists {
        let out = check("[sink.stream]\nenable = true\n", &list);
        assert!(out.status.success(), "{list:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn invalid_rule_examples_are_rejected_with_a_position() {
    let rules: Vec<&str> = blocks(RULES_MD, "rules-invalid").into_iter().flatten().collect();
    assert!(rules.len() >= 10, "{rules:?}");
    for rule in rules {
        let out = check("[sink.stream]\nenable = true\n", &[rule]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{rule:?} must be rejected");
        assert!(err.contains("rule 1 ") && err.contains(", column "), "{rule:?}: {err}");
    }
}

/// Whether this build has the Loki sink (it arrives from its own branch).
fn has_loki_sink() -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_conntrackd")).args(["run", "--help"]).output().expect("conntrackd run --help");
    String::from_utf8_lossy(&out.stdout).contains("--sink.loki.enable")
}

#[test]
fn readme_migration_toml_is_a_valid_configuration() {
    let start = README.find("<!-- migration-toml -->").expect("README has the migration TOML marker");
    let toml = blocks(&README[start..], "toml").into_iter().next().expect("a ```toml block after the marker").join("\n");
    let (before, loki) = toml.split_once("[sink.loki]").expect("the example has a [sink.loki] table (last)");
    assert!(before.contains("filter = [") && !loki.contains("\n["), "[sink.loki] is the last table: {toml}");
    let out = check(before, &[]);
    assert!(out.status.success(), "{before}\n{}", String::from_utf8_lossy(&out.stderr));
    // The whole file, [sink.loki] included, must be accepted exactly when the Loki sink is built in.
    let out = check(&toml, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    if has_loki_sink() {
        assert!(out.status.success(), "{toml}\n{err}");
    } else {
        assert!(!out.status.success() && err.contains("loki"), "without the Loki sink the table is refused by name: {err}");
    }
}
