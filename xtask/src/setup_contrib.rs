//! Setup for the contrib tests (unit, install script, dashboard):
//! shellcheck, strip (binutils, the install tests run `dist`), setpriv (util-linux),
//! python3 + pip, node + npm from Debian when missing; Grafana's LogQL parser
//! (npm `@grafana/lezer-logql`) and dashboard model (PyPI
//! `grafana-foundation-sdk`) into `target/contrib-tools`, where the tests look.
use std::{path::Path, process::Command};

use anyhow::Result;

const LEZER_LOGQL: &str = "@grafana/lezer-logql@0.4.2";
/// Grafana 11.6's dashboard model (the package versions carry an epoch).
const FOUNDATION_SDK: &str = "grafana-foundation-sdk==1769699379!11.6.0";

/// Installs what is missing; the npm and pip steps only once per target dir.
pub(crate) fn install() -> Result<()> {
    crate::setup::install_packages(&["shellcheck", "binutils", "util-linux", "python3", "python3-pip"])?;
    if !found("node") || !found("npm") {
        crate::setup::install_packages(&["nodejs", "npm"])?;
    }
    let tools = crate::workspace_root().join("target/contrib-tools");
    let npm_dir = tools.join("npm");
    if !npm_dir.join("node_modules/@grafana/lezer-logql/package.json").is_file() {
        println!("setup: installing {LEZER_LOGQL} into {}", npm_dir.display());
        std::fs::create_dir_all(&npm_dir)?;
        crate::run(Command::new("npm").args(["install", "--no-save", "--no-audit", "--no-fund", "--prefix"]).arg(&npm_dir).arg(LEZER_LOGQL), "npm install")?;
    }
    let py_dir = tools.join("python");
    if !Path::new(&py_dir.join("grafana_foundation_sdk")).is_dir() {
        println!("setup: installing {FOUNDATION_SDK} into {}", py_dir.display());
        crate::run(
            Command::new("python3").args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "--target"]).arg(&py_dir).arg(FOUNDATION_SDK),
            "pip install",
        )?;
    }
    Ok(())
}

fn found(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}
