//! Builds the kernel program (crate `conntrackd-ebpf`, see `build/ebpf.rs`)
//! and embeds it, so plain `cargo build`, `cargo test` and `cargo clippy` work
//! once `cargo xtask setup` has installed the toolchain. `CONNTRACKD_EBPF_OBJ`
//! names a prebuilt object to embed instead (no eBPF toolchain needed).
#[path = "build/ebpf.rs"]
mod ebpf;

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=CONNTRACKD_EBPF_OBJ");
    let obj = match std::env::var_os("CONNTRACKD_EBPF_OBJ") {
        Some(path) => prebuilt(PathBuf::from(path)),
        None => build(),
    };
    println!("cargo:rustc-env=CONNTRACKD_EBPF_OBJ={}", obj.display());
    println!("cargo:rustc-env=CTD_BUILD_GIT_COMMIT={}", git_commit());
    println!("cargo:rustc-env=CTD_BUILD_AYA_VERSION={}", aya_version());
}

/// The object `CONNTRACKD_EBPF_OBJ` names; it must exist.
fn prebuilt(obj: PathBuf) -> PathBuf {
    println!("cargo:rerun-if-changed={}", obj.display());
    if !obj.is_file() {
        fail(&format!("CONNTRACKD_EBPF_OBJ={} is not a file (unset it to build the kernel program)", obj.display()));
    }
    obj.canonicalize().unwrap_or(obj)
}

/// Builds the kernel program in `<target-dir>/ebpf` and copies the object
/// into `OUT_DIR`, which is what gets embedded.
fn build() -> PathBuf {
    // The kernel program's inputs; the outputs are not watched (cargo would
    // see the object newer than this run and run it once more).
    for path in [
        "conntrackd-ebpf/src",
        "conntrackd-ebpf/Cargo.toml",
        "conntrackd-ebpf/Cargo.lock",
        "conntrackd-ebpf/.cargo/config.toml",
        "conntrackd-ebpf/rust-toolchain.toml",
        "conntrackd-common/src",
        "conntrackd-common/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed=../{path}");
    }
    if let Some(missing) = ebpf::missing_tools() {
        fail(&format!("cannot build the kernel program: {missing}. Or set CONNTRACKD_EBPF_OBJ to a prebuilt object."));
    }
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_else(|| fail("cargo did not set OUT_DIR")));
    let target_dir = ebpf_target_dir(&out_dir);
    let ebpf_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conntrackd-ebpf");
    let mut cmd = ebpf::command(&ebpf_crate, &target_dir);
    // This script's stdout is for cargo; the nested build's output is shown on failure (or with -vv).
    cmd.stdout(std::io::stderr());
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!("building the kernel program failed ({status}): {cmd:?}; its errors are above")),
        Err(err) => fail(&format!("cannot run {cmd:?}: {err}")),
    }
    let built = ebpf::object(&target_dir);
    let embedded = out_dir.join("conntrackd-ebpf.o");
    if let Err(err) = std::fs::copy(&built, &embedded) {
        fail(&format!("the kernel program was built, but {} cannot be copied to {}: {err}", built.display(), embedded.display()));
    }
    embedded
}

/// `<target-dir>/ebpf`, shared by every profile, feature set and host target
/// (the object does not depend on them) and by `cargo xtask build-ebpf`.
/// `OUT_DIR` is `<target-dir>[/<triple>]/<profile>/build/conntrackd-<hash>/out`;
/// in any other layout the build goes under `OUT_DIR`.
fn ebpf_target_dir(out_dir: &Path) -> PathBuf {
    let cargo_layout = out_dir.ancestors().nth(2).and_then(Path::file_name) == Some(std::ffi::OsStr::new("build"));
    let Some(mut dir) = out_dir.ancestors().nth(4).filter(|_| cargo_layout) else {
        return out_dir.join("ebpf");
    };
    let target = std::env::var("TARGET").unwrap_or_default();
    if dir.file_name().is_some_and(|name| name == target.as_str()) {
        dir = dir.parent().unwrap_or(dir);
    }
    dir.join("ebpf")
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

/// The commit being built, or "unknown" outside a git checkout.
fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git").args(args).output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // HEAD names a branch, whose ref file (or packed-refs) changes with every
    // commit. Ask git where they are: in a worktree `.git` is a file, and a
    // watched path that does not exist would rerun this script every build.
    let mut watched = vec!["HEAD".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.extend([branch, "packed-refs".to_string()]);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name]).filter(|p| Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
}

/// aya's version from the workspace lock file.
fn aya_version() -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap_or_default();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"aya\"" {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return v.trim_end_matches('"').to_string();
            }
        }
    }
    "unknown".into()
}
