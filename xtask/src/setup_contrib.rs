//! Setup for the contrib tests (unit, install script, dashboard):
//! shellcheck, strip (binutils, the install tests run `dist`), setpriv (util-linux),
//! python3 + pip, node + npm from Debian when missing; Grafana's LogQL parser
//! (npm `@grafana/lezer-logql`), dashboard model (PyPI `grafana-foundation-sdk`)
//! and the Community ID reference implementation (PyPI `communityid`) into
//! `target/contrib-tools`, where the tests look.
use std::{path::Path, process::Command};

use anyhow::Result;

const LEZER_LOGQL: &str = "@grafana/lezer-logql@0.4.2";
/// Grafana 11.6's dashboard model (the package versions carry an epoch).
const FOUNDATION_SDK: &str = "grafana-foundation-sdk==1769699379!11.6.0";
/// Corelight's Community ID implementation, the reference for `community_id`.
const COMMUNITY_ID: &str = "communityid==1.5.0";

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
    for (module, package) in [("grafana_foundation_sdk", FOUNDATION_SDK), ("communityid", COMMUNITY_ID)] {
        if !Path::new(&py_dir.join(module)).is_dir() {
            println!("setup: installing {package} into {}", py_dir.display());
            crate::run(
                Command::new("python3").args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "--target"]).arg(&py_dir).arg(package),
                "pip install",
            )?;
        }
    }
    Ok(())
}

fn found(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}
