//! The shipped command line has no benchmark helpers: `bench-loki-encoder`
//! and `geoip bench` are unknown commands (the measurements live in
//! `benches/`, behind the feature `bench`), and `--help` lists exactly the
//! daemon's commands. This binary is built with the features the tests
//! enable (`bench`, `testing`), so the daemon's default build has even less.
use std::process::{Command, Output};

fn conntrackd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conntrackd")).args(args).output().expect("run conntrackd")
}

fn assert_unknown_subcommand(args: &[&str], name: &str) {
    let out = conntrackd(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "conntrackd {args:?} must be a usage error: {stderr}");
    assert!(stderr.contains(&format!("unrecognized subcommand '{name}'")), "conntrackd {args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "conntrackd {args:?} printed {}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn bench_loki_encoder_is_an_unknown_command() {
    assert_unknown_subcommand(&["bench-loki-encoder"], "bench-loki-encoder");
    assert_unknown_subcommand(&["bench-loki-encoder", "--events", "10"], "bench-loki-encoder");
}

#[test]
fn geoip_bench_is_an_unknown_command() {
    assert_unknown_subcommand(&["geoip", "bench"], "bench");
    assert_unknown_subcommand(&["geoip", "bench", "--lookups", "10"], "bench");
}

/// The command names in a `Commands:` section of clap's help.
fn commands(help: &str) -> Vec<String> {
    let section = help.split_once("Commands:\n").map(|(_, rest)| rest).unwrap_or_default();
    section.lines().take_while(|l| l.starts_with("  ")).filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
}

#[test]
fn help_lists_only_the_daemons_commands() {
    let out = conntrackd(&["--help"]);
    assert!(out.status.success(), "conntrackd --help: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(commands(&String::from_utf8_lossy(&out.stdout)), ["run", "check", "filter", "geoip", "version", "completion", "help"]);
    let out = conntrackd(&["geoip", "--help"]);
    assert!(out.status.success(), "conntrackd geoip --help: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(commands(&String::from_utf8_lossy(&out.stdout)), ["lookup", "help"]);
}
