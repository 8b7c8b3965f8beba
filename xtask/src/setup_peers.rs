//! Builds the Go original (`xtask/peers/conntrackd-go/*.tar.gz`, MIT, see
//! the README there) once with Go into `target/peers/conntrackd-go-<version>`,
//! the peer the side-by-side tests (`conntrackd/tests/original.rs`) run next
//! to ours. Each archive's SHA-256 is checked before it is unpacked; the
//! binary is written under a temporary name and renamed, so an interrupted
//! build never leaves a binary that looks finished. tzdata too: the tests
//! run the original in a local time zone.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// One release: version, git commit (for `-ldflags`), SHA-256 of the archive.
struct Release {
    version: &'static str,
    commit: &'static str,
    sha256: &'static str,
}

const RELEASES: [Release; 2] = [
    Release {
        version: "1.4.1",
        commit: "27a9f62b0638ed9638a98728e1d531722b70734d",
        sha256: "e39d6733a0d2d6964e31a19de99648e91bfd1ff43652033bf6d701c76579452b",
    },
    Release {
        version: "1.3.0",
        commit: "f918edfb5ef1682f2f760cabc4b939ed2525847a",
        sha256: "a70a56ace94fba2999eff3018bb9a40f3fddb85e1d5225e1faed9f30491b858c",
    },
];

const VERSION_PACKAGE: &str = "github.com/tschaefer/conntrackd/internal/version";

/// Where the built binary of `version` lives.
pub(crate) fn binary(root: &Path, version: &str) -> PathBuf {
    root.join("target/peers").join(format!("conntrackd-go-{version}"))
}

/// Builds every release whose binary is missing.
pub(crate) fn install() -> Result<()> {
    // The stream comparison runs the original in a local time zone.
    crate::setup::install_packages(&["tzdata"])?;
    let root = crate::workspace_root();
    let missing: Vec<&Release> = RELEASES.iter().filter(|r| !binary(&root, r.version).is_file()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    require_go()?;
    for release in missing {
        build(&root, release)?;
    }
    Ok(())
}

/// Go 1.21+ (it fetches the 1.26 toolchain the archives ask for by itself).
fn require_go() -> Result<()> {
    if Command::new("go").arg("version").output().is_err() {
        crate::setup::install_packages(&["golang-go"])?;
    }
    let out = Command::new("go").args(["env", "GOVERSION"]).output().context("running go env GOVERSION")?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let minor = text.strip_prefix("go1.").and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()).and_then(|m| m.parse::<u32>().ok());
    match minor {
        Some(m) if m >= 21 => Ok(()),
        _ => bail!("building the Go original needs Go 1.21 or newer (found {text:?}); install it from https://go.dev/dl/ and put it on PATH"),
    }
}

fn build(root: &Path, release: &Release) -> Result<()> {
    let Release { version, commit, sha256 } = release;
    let archive = root.join("xtask/peers/conntrackd-go").join(format!("conntrackd-{version}.tar.gz"));
    let actual = sha256_of(&archive)?;
    if actual != *sha256 {
        bail!("{}: SHA-256 is {actual}, expected {sha256} (the archive must be the unchanged release)", archive.display());
    }
    let out = binary(root, version);
    let peers = out.parent().context("peer directory")?;
    let work = peers.join(format!("src-{version}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    println!("setup: building the Go original v{version} into {} (a few minutes the first time)", out.display());
    crate::run(Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&work), "unpacking the Go original")?;
    let partial = peers.join(format!(".conntrackd-go-{version}.partial"));
    let ldflags = format!("-X {VERSION_PACKAGE}.Version=v{version} -X {VERSION_PACKAGE}.GitCommit={commit}");
    crate::run(
        Command::new("go")
            .args(["build", "-trimpath", "-o"])
            .arg(&partial)
            .args(["-ldflags", &ldflags, "."])
            .current_dir(work.join(format!("conntrackd-{version}")))
            .env("CGO_ENABLED", "0"),
        &format!("go build (conntrackd v{version})"),
    )?;
    std::fs::rename(&partial, &out).with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn sha256_of(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(path).output().context("running sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum {}: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string())
}
