//! Builds the Go original (`xtask/peers/conntrackd-go/*.tar.gz`, MIT, see
//! the README there) once with Go into `target/peers/conntrackd-go-<version>`,
//! the peer the side-by-side tests (`conntrackd/tests/original.rs`) run next
//! to ours. Each archive's SHA-256 is checked before it is unpacked; the
//! binary is written under a temporary name and renamed, so an interrupted
//! build never leaves a binary that looks finished. tzdata too: the tests
//! run the original in a local time zone.
//!
//! Next to each binary, the rule table's test binary
//! (`conntrackd-go-<version>-rules.test`, see [`rules_test_binary`]): the
//! original's `internal/filter` tests compiled with the hooks of
//! `xtask/peers/conntrackd-go/ruletable` (which record what those tests
//! load and decide, and answer cases with the original's verdicts), for
//! `conntrackd/tests/original_rules.rs`. It is rebuilt when those Go files
//! change (their SHA-256 is kept beside it).
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

/// Where the rule table's test binary of `version` lives.
pub(crate) fn rules_test_binary(root: &Path, version: &str) -> PathBuf {
    root.join("target/peers").join(format!("conntrackd-go-{version}-rules.test"))
}

/// Builds every release whose binary is missing, and every rule table
/// binary that is missing or older than its Go files.
pub(crate) fn install() -> Result<()> {
    // The stream comparison runs the original in a local time zone.
    crate::setup::install_packages(&["tzdata"])?;
    let root = crate::workspace_root();
    let missing: Vec<&Release> = RELEASES.iter().filter(|r| !binary(&root, r.version).is_file()).collect();
    let mut stale = Vec::new();
    for release in &RELEASES {
        let digest = rules_digest(&root, release.version)?;
        if !rules_test_binary(&root, release.version).is_file() || std::fs::read_to_string(rules_stamp(&root, release.version)).ok().as_deref() != Some(&digest)
        {
            stale.push((release, digest));
        }
    }
    if missing.is_empty() && stale.is_empty() {
        return Ok(());
    }
    require_go()?;
    for release in missing {
        build(&root, release)?;
    }
    for (release, digest) in stale {
        build_rules_test(&root, release, &digest)?;
    }
    Ok(())
}

/// The hooks file of a release's rule language.
fn hooks_file(version: &str) -> &'static str {
    if version.starts_with("1.3.") {
        "hooks_keyword_test.go"
    } else {
        "hooks_cel_test.go"
    }
}

/// The functions each release's hooks wrap: file, the original's line, its new name.
fn renames(version: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    const CEL: [(&str, &str, &str); 2] =
        [("filter.go", "func NewFilter(", "func originalNewFilter("), ("filter.go", "func (f *Filter) Evaluate(", "func (f *Filter) originalEvaluate(")];
    const KEYWORD: [(&str, &str, &str); 4] = [
        ("filter.go", "func NewFilter(", "func originalNewFilter("),
        ("filter.go", "func (f *Filter) Evaluate(", "func (f *Filter) originalEvaluate("),
        ("parser.go", "func NewParser(", "func originalNewParser("),
        ("eval.go", "func Compile(", "func originalCompile("),
    ];
    if version.starts_with("1.3.") {
        &KEYWORD
    } else {
        &CEL
    }
}

fn rules_stamp(root: &Path, version: &str) -> PathBuf {
    root.join("target/peers").join(format!("conntrackd-go-{version}-rules.test.sha256"))
}

/// SHA-256 of the Go files compiled into the rule table binary of `version`
/// (`conntrackd/tests/original_rules.rs` computes the same to detect a stale build).
fn rules_digest(root: &Path, version: &str) -> Result<String> {
    let dir = root.join("xtask/peers/conntrackd-go/ruletable");
    let out = Command::new("sha256sum").arg(dir.join("ruletable_test.go")).arg(dir.join(hooks_file(version))).output().context("running sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().step_by(2).collect::<Vec<_>>().join(" "))
}

/// `go test -c` of the original's `internal/filter` with the hooks in a copy
/// whose wrapped functions are renamed (each rename must match exactly once).
fn build_rules_test(root: &Path, release: &Release, digest: &str) -> Result<()> {
    let version = release.version;
    let peers = root.join("target/peers");
    let work = peers.join(format!("src-rules-{version}"));
    unpack(root, release, &work)?;
    let package = work.join(format!("conntrackd-{version}/internal/filter"));
    for (file, from, to) in renames(version) {
        let path = package.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let found = text.lines().filter(|l| l.starts_with(from)).count();
        if found != 1 {
            bail!("{}: expected one line starting with {from:?}, found {found} (the hooks of the rule table no longer fit this release)", path.display());
        }
        std::fs::write(&path, text.replacen(from, to, 1)).with_context(|| format!("writing {}", path.display()))?;
    }
    let dir = root.join("xtask/peers/conntrackd-go/ruletable");
    for (from, to) in [("ruletable_test.go", "zz_ruletable_test.go"), (hooks_file(version), "zz_ruletable_hooks_test.go")] {
        std::fs::copy(dir.join(from), package.join(to)).with_context(|| format!("copying {from} into {}", package.display()))?;
    }
    let out = rules_test_binary(root, version);
    println!("setup: building the Go original's rule table v{version} into {}", out.display());
    let partial = peers.join(format!(".conntrackd-go-{version}-rules.test.partial"));
    crate::run(
        Command::new("go")
            .args(["test", "-c", "-trimpath", "-o"])
            .arg(&partial)
            .arg("./internal/filter")
            .current_dir(work.join(format!("conntrackd-{version}")))
            .env("CGO_ENABLED", "0"),
        &format!("go test -c (the rule table of conntrackd v{version})"),
    )?;
    std::fs::rename(&partial, &out).with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
    std::fs::write(rules_stamp(root, version), digest).context("writing the rule table's stamp")?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Checks the archive's SHA-256 and unpacks it into a fresh `work`.
fn unpack(root: &Path, release: &Release, work: &Path) -> Result<()> {
    let Release { version, sha256, .. } = release;
    let archive = root.join("xtask/peers/conntrackd-go").join(format!("conntrackd-{version}.tar.gz"));
    let actual = sha256_of(&archive)?;
    if actual != *sha256 {
        bail!("{}: SHA-256 is {actual}, expected {sha256} (the archive must be the unchanged release)", archive.display());
    }
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    crate::run(Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(work), "unpacking the Go original")
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
    let Release { version, commit, .. } = release;
    let out = binary(root, version);
    let peers = out.parent().context("peer directory")?;
    let work = peers.join(format!("src-{version}"));
    println!("setup: building the Go original v{version} into {} (a few minutes the first time)", out.display());
    unpack(root, release, &work)?;
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
