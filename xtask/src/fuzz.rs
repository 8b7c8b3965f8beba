//! `cargo xtask fuzz TARGET [--seconds N]`: runs a cargo-fuzz target of
//! `conntrackd/fuzz` with rustup's nightly, installing what is missing.
use std::{path::Path, process::Command};

use anyhow::Result;

pub(crate) fn run(root: &Path, target: &str, seconds: u64) -> Result<()> {
    let has_nightly = Command::new("rustup").args(["run", "nightly", "rustc", "--version"]).output().is_ok_and(|o| o.status.success());
    if !has_nightly {
        println!("fuzz: installing rustup's nightly toolchain (cargo-fuzz needs sanitizers)");
        crate::run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]), "rustup toolchain install nightly")?;
    }
    if Command::new("cargo").args(["fuzz", "--version"]).output().map_or(true, |o| !o.status.success()) {
        println!("fuzz: installing cargo-fuzz");
        crate::run(Command::new("cargo").args(["install", "cargo-fuzz"]), "cargo install cargo-fuzz")?;
    }
    let dir = root.join("conntrackd/fuzz");
    let corpus = dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus)?;
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "fuzz", "run", "--fuzz-dir", "."])
        .arg(target)
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .current_dir(&dir);
    for var in ["RUSTUP_TOOLCHAIN", "RUSTC", "CARGO", "RUSTFLAGS", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    crate::run(&mut cmd, &format!("fuzzing {target}"))
}
