//! Namespace scale part of `cargo xtask bench` (and `cargo xtask bench
//! --netns` alone): the test `conntrackd/tests/netns_scale.rs` at its full
//! count — 200 `ip netns` namespaces, 50 `unshare --net` processes outside
//! /run/netns, then 20 namespaces created and deleted per second for 10 s —
//! built in release mode. It checks every namespace's event arrived and the
//! targets (one program, RSS ≤ 64 MiB, maps ≤ 16 MiB); the figures go to
//! `target/bench/netns-scale.{md,json}`.
use std::{fs, path::Path, process::Command};

use anyhow::{Context, Result};
use serde_json::Value;

pub(crate) fn run(root: &Path, bench_dir: &Path) -> Result<String> {
    fs::create_dir_all(bench_dir).with_context(|| format!("creating {}", bench_dir.display()))?;
    let json = bench_dir.join("netns-scale.json");
    let _ = fs::remove_file(&json);
    eprintln!("bench: namespace scale (200 ip netns + 50 unshare --net, churn 20/s for 10 s), release build");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    crate::run(
        Command::new(cargo)
            .args(["test", "--release", "--package", "conntrackd", "--test", "netns_scale", "--", "--nocapture", "--test-threads=1"])
            .env("CONNTRACKD_NETNS_SCALE", "full")
            .env("CONNTRACKD_NETNS_SCALE_REPORT", &json)
            .current_dir(root),
        "the namespace scale test",
    )?;
    let text = fs::read_to_string(&json).with_context(|| format!("the scale test wrote no {}", json.display()))?;
    let figures: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", json.display()))?;
    let markdown = markdown(&figures);
    fs::write(bench_dir.join("netns-scale.md"), &markdown).context("writing netns-scale.md")?;
    Ok(markdown)
}

fn markdown(f: &Value) -> String {
    let num = |key: &str| f[key].as_f64().unwrap_or(f64::NAN);
    let mib = |kib: f64| kib / 1024.0;
    format!(
        "## Network namespaces (`netns = [\"all\"]`)\n\n\
         | measurement | result |\n|---|---|\n\
         | namespaces | {} `ip netns` + {} `unshare --net` (+ the host's own), {} watched at the peak |\n\
         | churn | {} created and {} deleted in {} s |\n\
         | kernel programs loaded | {} |\n\
         | map memory (memlock, {} maps) | {:.2} MiB |\n\
         | daemon RSS now / peak | {:.1} / {:.1} MiB |\n\
         | CPU per rescan | {:.2} ms ({} rescans measured) |\n\
         | daemon CPU, idle, all watched | {:.2} % of a core |\n\
         | start with {} namespaces | {:.2} s |\n\
         | new namespace watched after (median / max) | {:.2} / {:.2} s |\n\
         | deleted namespace released after (max) | {:.2} s |\n\
         | one event injected into each, all delivered in | {:.2} s |\n",
        f["named"],
        f["unshared"],
        f["watched_at_peak"],
        f["churn_created"],
        f["churn_deleted"],
        f["churn_s"],
        f["programs"],
        f["maps"],
        num("map_memlock_bytes") / 1048576.0,
        mib(num("vm_rss_kib")),
        mib(num("vm_hwm_kib")),
        num("cpu_per_rescan_ms"),
        f["rescans"],
        num("idle_cpu_fraction") * 100.0,
        num("named") / 2.0,
        num("start_s"),
        num("watch_latency_p50_s"),
        num("watch_latency_max_s"),
        num("released_max_s"),
        num("delivery_s"),
    )
}
