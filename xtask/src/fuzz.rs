//! `cargo xtask fuzz TARGET|--all [--seconds N]`: runs cargo-fuzz targets of
//! `conntrackd/fuzz` with rustup's nightly, one after the other (one process,
//! one job: the machine is shared), installing what is missing, and prints
//! per target the executions, the corpus size and whether it found a crash.
//!
//! New inputs go to `conntrackd/fuzz/target/corpus/TARGET` (not committed);
//! the committed seeds (`corpus/TARGET`) and regressions (`regressions/TARGET`)
//! are read only. Crashes are written to `conntrackd/fuzz/target/artifacts/TARGET/`:
//! minimize one (`cargo fuzz tmin`) into `regressions/TARGET/` with a test.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// A fuzz target of `conntrackd/fuzz/Cargo.toml` and how it is run.
pub(crate) struct Target {
    pub name: &'static str,
    /// libFuzzer's -max_len: deep nesting and the 64 KiB rule limit need long inputs.
    pub max_len: usize,
    /// A libFuzzer dictionary under `conntrackd/fuzz/dict`.
    pub dict: Option<&'static str>,
}

/// Every target (a test checks them against the fuzz crate's binaries).
pub(crate) const TARGETS: [Target; 4] = [
    Target { name: "rules", max_len: 72 << 10, dict: Some("rules.dict") },
    // Bytes choose rule trees; a few hundred already make 64 KiB rules.
    Target { name: "rules_generated", max_len: 4 << 10, dict: None },
    // A ctnetlink event is a few hundred bytes; room for deep attribute nesting.
    Target { name: "netlink", max_len: 16 << 10, dict: None },
    Target { name: "config", max_len: 72 << 10, dict: Some("config.dict") },
];

/// What one run reported.
#[derive(Debug, Default)]
struct Summary {
    executions: Option<u64>,
    corpus: Option<u64>,
    crash: Option<String>,
}

pub(crate) fn run(root: &Path, target: Option<&str>, seconds: u64) -> Result<()> {
    let selected: Vec<&Target> = match target {
        None => TARGETS.iter().collect(),
        Some(name) => match TARGETS.iter().find(|t| t.name == name) {
            Some(t) => vec![t],
            None => bail!("no fuzz target {name:?}: expected one of {}", TARGETS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")),
        },
    };
    install()?;
    let mut results = Vec::new();
    for t in &selected {
        let summary = run_one(root, t, seconds)?;
        results.push((t.name, summary));
    }
    println!("fuzz summary ({seconds} s per target):");
    for (name, s) in &results {
        let n = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
        let verdict = s.crash.as_deref().map_or_else(|| "no crash".to_string(), |c| format!("CRASH: {c}"));
        println!("  {name}: {} executions, corpus {} inputs, {verdict}", n(s.executions), n(s.corpus));
    }
    let failed: Vec<&str> = results.iter().filter(|(_, s)| s.crash.is_some()).map(|(n, _)| *n).collect();
    if !failed.is_empty() {
        bail!("fuzz targets found crashes: {}", failed.join(", "));
    }
    Ok(())
}

fn install() -> Result<()> {
    let has_nightly = Command::new("rustup").args(["run", "nightly", "rustc", "--version"]).output().is_ok_and(|o| o.status.success());
    if !has_nightly {
        println!("fuzz: installing rustup's nightly toolchain (cargo-fuzz needs sanitizers)");
        crate::run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]), "rustup toolchain install nightly")?;
    }
    if Command::new("cargo").args(["fuzz", "--version"]).output().map_or(true, |o| !o.status.success()) {
        println!("fuzz: installing cargo-fuzz");
        crate::run(Command::new("cargo").args(["install", "cargo-fuzz"]), "cargo install cargo-fuzz")?;
    }
    Ok(())
}

fn run_one(root: &Path, t: &Target, seconds: u64) -> Result<Summary> {
    let dir = root.join("conntrackd/fuzz");
    let work = dir.join("target/corpus").join(t.name);
    let artifacts = dir.join("target/artifacts").join(t.name);
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&artifacts)?;
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "fuzz", "run", "--fuzz-dir", "."]).arg(t.name).arg(&work);
    // The kernel object `cargo xtask fuzz` built: conntrackd's build.rs embeds it instead of building it again.
    cmd.env("CONNTRACKD_EBPF_OBJ", crate::ebpf_object(root));
    for committed in ["corpus", "regressions"] {
        let path = dir.join(committed).join(t.name);
        if path.is_dir() {
            cmd.arg(path);
        }
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={}", t.max_len))
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    if let Some(dict) = t.dict {
        cmd.arg(format!("-dict={}", dir.join("dict").join(dict).display()));
    }
    cmd.current_dir(&dir).stderr(Stdio::piped());
    for var in ["RUSTUP_TOOLCHAIN", "RUSTC", "CARGO", "RUSTFLAGS", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    println!("fuzz: {} for {seconds} s (max_len {})", t.name, t.max_len);
    let mut child = cmd.spawn().with_context(|| format!("fuzzing {}: cannot start rustup", t.name))?;
    let mut summary = Summary::default();
    for line in BufReader::new(child.stderr.take().context("stderr")?).lines() {
        let line = line?;
        eprintln!("{line}");
        read_line(&line, &mut summary);
    }
    let status = child.wait()?;
    if !status.success() && summary.crash.is_none() {
        summary.crash = Some(format!("cargo fuzz exited with {status} (see the output above)"));
    }
    Ok(summary)
}

/// Picks the figures out of libFuzzer's output.
fn read_line(line: &str, s: &mut Summary) {
    let number = |after: &str| line.split(after).nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()).and_then(|n| n.parse().ok());
    if line.starts_with("stat::number_of_executed_units:") {
        s.executions = number(": ");
    } else if line.starts_with('#') && line.contains(" corp: ") {
        s.corpus = number(" corp: ").or(s.corpus);
    } else if line.contains("Test unit written to ") {
        s.crash = line.split("Test unit written to ").nth(1).map(str::to_string);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_the_fuzz_crates_binaries() {
        let manifest = std::fs::read_to_string(crate::workspace_root().join("conntrackd/fuzz/Cargo.toml")).unwrap();
        let bins: Vec<&str> =
            manifest.lines().filter_map(|l| l.strip_prefix("name = \"")).filter_map(|l| l.strip_suffix('"')).filter(|n| *n != "conntrackd-fuzz").collect();
        assert_eq!(bins, TARGETS.iter().map(|t| t.name).collect::<Vec<_>>());
        for t in TARGETS.iter().filter_map(|t| t.dict) {
            assert!(crate::workspace_root().join("conntrackd/fuzz/dict").join(t).is_file(), "{t}");
        }
    }

    #[test]
    fn reads_libfuzzer_figures() {
        let mut s = Summary::default();
        for line in [
            "#1048576\tpulse  cov: 2270 ft: 9001 corp: 812/51Kb lim: 4096 exec/s: 3495 rss: 512Mb",
            "#2097152\tDONE   cov: 2301 ft: 9120 corp: 840/55Kb lim: 4096 exec/s: 3501 rss: 530Mb",
            "stat::number_of_executed_units: 2097152",
        ] {
            read_line(line, &mut s);
        }
        assert_eq!((s.executions, s.corpus, s.crash.as_deref()), (Some(2_097_152), Some(840), None));
        read_line("artifact_prefix='x/'; Test unit written to x/crash-da39a3ee", &mut s);
        assert_eq!(s.crash.as_deref(), Some("x/crash-da39a3ee"));
    }
}
