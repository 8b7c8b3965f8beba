//! Runs `cargo xtask bench --quick` once, in-process, so the benchmark keeps
//! working: every consumer on both modes at one rate, the generator check
//! (which fails the run on a mismatch), the reports and the plots. It uses
//! the debug conntrackd that `cargo test --workspace` builds (a release build
//! would add minutes) and writes to `target/bench-test`, not `target/bench`.
//! It shares the benchmark's namespaces (`ctbench-*`) with the reload test
//! (one at a time); do not run `cargo xtask bench` while the tests run.
use std::path::Path;

use super::{run_with, Options};

#[test]
fn bench_quick_runs_every_consumer_and_checks_the_generator() {
    let _lab = super::LAB.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the benchmark creates network namespaces: run as root (cargo xtask test)");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let daemon = root.join("target/debug/conntrackd");
    assert!(daemon.is_file(), "{} is missing: build it with cargo build -p conntrackd (cargo xtask test does)", daemon.display());
    let out = root.join("target/bench-test");
    let _ = std::fs::remove_file(out.join("report.json"));
    run_with(root, &Options { quick: true, daemon: Some(daemon), out: Some(out.clone()), rates: Vec::new(), repeats: None })
        .expect("cargo xtask bench --quick");

    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json")).expect("JSON");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2 * super::Kind::ALL.len(), "one run per consumer and mode");
    for r in runs {
        assert!(r["delivered"].as_u64().unwrap_or(0) > 0, "{} delivered nothing on {}", r["consumer"], r["mode"]);
        for column in ["kernel_filter", "filter_ns_per_event", "filter_ns_per_run", "producer_cpu_s_per_100k", "cpu_s_per_100k_delivered", "exited_early"] {
            assert!(!r[column].is_null() || r["kernel_filter"] == "none", "{} on {}: no {column}", r["consumer"], r["mode"]);
        }
        if r["kernel_filter"] == "eBPF socket filter" {
            // The BPF statistics count every event the filter saw: NEW and DESTROY of every entry.
            assert!(
                r["filter_runs"].as_u64().unwrap_or(0) >= r["generated"].as_u64().unwrap_or(u64::MAX),
                "{} on {}: filter runs {} of {} events",
                r["consumer"],
                r["mode"],
                r["filter_runs"],
                r["generated"]
            );
            assert!(r["filter_ns_per_run"].as_f64().is_some_and(|ns| ns > 0.0), "{}: no filter run time", r["consumer"]);
        }
    }
    let original = runs.iter().filter(|r| r["consumer"] == super::Kind::Original.name()).count();
    assert_eq!(original, 2, "the Go original ran on both modes");
    let markdown = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    for heading in ["## conntrackd ebpf against the Go original", "## Kernel-side cost per consumer", "kernel filter ns/ev"] {
        assert!(markdown.contains(heading), "report.md lacks {heading:?}");
    }
    let loki = std::fs::read_to_string(out.join("loki.md")).expect("loki.md");
    assert!(loki.contains("without structured metadata"), "loki.md lacks the bytes per event");
    let loki: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("loki.json")).expect("loki.json")).expect("JSON");
    let bytes = loki["bytes_per_event"].as_array().expect("bytes_per_event");
    assert_eq!(bytes.len(), 4, "both encodings x both line formats");
    for b in bytes {
        assert!(b["entries"].as_u64().unwrap_or(0) > 0 && b["entries"] == b["written"] && b["undecoded"] == 0, "{b}");
        assert!(b["per_event_without_metadata"].as_f64() < b["per_event"].as_f64(), "{b}");
    }
    let checks = report["generator_checks"].as_array().expect("generator_checks");
    assert!(!checks.is_empty() && checks.iter().all(|c| c["ok"] == true && c["created"] == c["requested"]));
    for mode in ["all-public", "mixed"] {
        assert!(out.join(format!("bench-{mode}.png")).is_file(), "plot for {mode}");
    }
}
