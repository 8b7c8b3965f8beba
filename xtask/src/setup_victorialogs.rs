//! Builds VictoriaLogs (the Loki-protocol receiver of the Loki sink's tests)
//! once with Go and caches the binary in a versioned directory:
//! `$CONNTRACKD_TOOLS` or `~/.cache/conntrackd`, then `victorialogs-<version>/victoria-logs`.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

const MODULE: &str = "github.com/VictoriaMetrics/VictoriaLogs";
const VERSION: &str = "v1.52.1";

/// Where [`install_victorialogs`] puts the binary.
pub(crate) fn binary() -> Result<PathBuf> {
    Ok(tools_dir()?.join(format!("victorialogs-{VERSION}")).join("victoria-logs"))
}

/// Installs the binary unless the cached one is there.
pub(crate) fn install_victorialogs() -> Result<()> {
    let binary = binary()?;
    let dir = binary.parent().context("the VictoriaLogs binary has no directory")?.to_path_buf();
    if binary.is_file() {
        return Ok(());
    }
    if Command::new("go").arg("version").output().is_err() {
        crate::setup::install_packages(&["golang-go"])?;
    }
    println!("setup: building VictoriaLogs {VERSION} with Go into {} (a few minutes)", dir.display());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let installed = Command::new("go")
        .args(["install", &format!("{MODULE}/app/victoria-logs@{VERSION}")])
        .env("GOBIN", &dir)
        .env("CGO_ENABLED", "0")
        .status()
        .context("running go install")?;
    if !installed.success() {
        println!("setup: go install refused; building inside the downloaded module instead");
        build_from_module(&dir)?;
    }
    if !binary.is_file() {
        bail!("VictoriaLogs build finished but {} is missing", binary.display());
    }
    Ok(())
}

/// `go mod download` the module, copy it somewhere writable, `go build` there.
fn build_from_module(dir: &Path) -> Result<()> {
    let out = Command::new("go").args(["mod", "download", "-json", &format!("{MODULE}@{VERSION}")]).output().context("running go mod download")?;
    if !out.status.success() {
        bail!("go mod download {MODULE}@{VERSION} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let source =
        text.lines().find_map(|l| l.trim().strip_prefix("\"Dir\": \"").and_then(|r| r.strip_suffix("\","))).context("go mod download printed no Dir")?;
    let work = dir.join("src");
    let _ = std::fs::remove_dir_all(&work);
    crate::run(Command::new("cp").args(["-r", source]).arg(&work), "copying the VictoriaLogs module")?;
    crate::run(Command::new("chmod").args(["-R", "u+w"]).arg(&work), "chmod")?;
    crate::run(
        Command::new("go").args(["build", "-o"]).arg(dir.join("victoria-logs")).arg("./app/victoria-logs").current_dir(&work).env("CGO_ENABLED", "0"),
        "go build victoria-logs",
    )?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn tools_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CONNTRACKD_TOOLS") {
        return Ok(dir.into());
    }
    let home = std::env::var_os("HOME").context("HOME is not set (or set CONNTRACKD_TOOLS)")?;
    Ok(PathBuf::from(home).join(".cache/conntrackd"))
}
