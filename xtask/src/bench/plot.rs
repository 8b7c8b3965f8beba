//! PNG plots of `report.json` (`bench-<mode>.png`: CPU per 100k events and
//! loss against the rate, one line per consumer), drawn by `plot.py` with
//! matplotlib from a venv the benchmark creates in `target/bench/venv`.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

const SCRIPT: &str = include_str!("plot.py");
const MATPLOTLIB: &str = "matplotlib";

/// Draws the plots for the report in `dir`; returns the files written.
pub(crate) fn draw(root: &Path, dir: &Path) -> Result<Vec<String>> {
    let python = venv(&root.join("target/bench/venv"))?;
    let script = dir.join("plot.py");
    fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    let out = Command::new(&python).arg(&script).arg(dir).output().with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!("{} failed ({}): {}", script.display(), out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
}

/// The venv's python, with matplotlib; created on first use.
fn venv(dir: &Path) -> Result<PathBuf> {
    let python = dir.join("bin/python3");
    let has = |python: &Path| Command::new(python).args(["-c", "import matplotlib"]).output().is_ok_and(|o| o.status.success());
    if python.is_file() && has(&python) {
        return Ok(python);
    }
    eprintln!("bench: creating {} with {MATPLOTLIB} from PyPI", dir.display());
    let status = Command::new("python3").args(["-m", "venv"]).arg(dir).status().context("running python3 -m venv (install Debian's python3-venv)")?;
    if !status.success() {
        bail!("python3 -m venv {} failed ({status}); install Debian's python3-venv", dir.display());
    }
    let status = Command::new(&python).args(["-m", "pip", "install", "--quiet", MATPLOTLIB]).status().context("running pip in the venv")?;
    if !status.success() || !has(&python) {
        bail!("pip install {MATPLOTLIB} into {} failed ({status})", dir.display());
    }
    Ok(python)
}
