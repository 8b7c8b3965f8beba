//! GeoIP enrichment cost on one core, for `cargo xtask bench`:
//! `cargo bench -p conntrackd --bench geoip -- CONFIG LOOKUPS`. Opens the
//! databases of the `[geoip]` section of the configuration file CONFIG and
//! prints one JSON object: uncached lookups and events per second, cached
//! events per second, the hit ratio and the process's RSS. Bad arguments or
//! an unusable configuration print an error and exit with status 2. Without
//! arguments (as `cargo test --all-targets` runs it) it measures 20 000
//! lookups in MaxMind's test City database (`tests/data/maxmind`), as a
//! smoke test that fails unless the database was opened and used.
use std::{path::Path, process::ExitCode};

use conntrackd::bench_support::geoip;

const USAGE: &str = "usage: geoip CONFIG LOOKUPS";
const SMOKE_LOOKUPS: usize = 20_000;

fn main() -> ExitCode {
    // cargo bench appends `--bench` to the arguments of every benchmark binary.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let result = match args.as_slice() {
        [] => smoke(),
        [config, lookups] => match lookups.parse::<usize>() {
            Ok(n) if n > 0 => geoip(Path::new(config), n).map_err(|e| format!("{config}: {e}")),
            _ => Err(format!("LOOKUPS must be a positive integer, found {lookups:?}; {USAGE}")),
        },
        _ => Err(format!("two arguments expected, found {}; {USAGE}", args.len())),
    };
    match result {
        Ok(json) => {
            print!("{json}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("geoip bench: {err}");
            ExitCode::from(2)
        }
    }
}

/// A short run on the test database; an error unless it was opened and used.
fn smoke() -> Result<String, String> {
    let database = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/maxmind/GeoIP2-City-Test.mmdb");
    let config = std::env::temp_dir().join(format!("conntrackd-geoip-bench-{}.toml", std::process::id()));
    let toml = format!("[geoip]\ndatabase = \"{}\"\n[sink.stream]\nenable = true\nwriter = \"discard\"\n", database.display());
    std::fs::write(&config, toml).map_err(|e| format!("writing {}: {e}", config.display()))?;
    let result = geoip(&config, SMOKE_LOOKUPS);
    let _ = std::fs::remove_file(&config);
    let json = result?;
    let expected = format!("\"lookups\":{SMOKE_LOOKUPS},");
    if !json.contains(&expected) || !json.contains("\"uncached_lookups_per_s\":") || !json.contains("GeoIP2-City-Test") {
        return Err(format!("the smoke run on {} gave no measurement: {json}", database.display()));
    }
    Ok(json)
}
