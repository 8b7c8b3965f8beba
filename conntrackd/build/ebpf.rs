//! How the kernel program (crate `conntrackd-ebpf`) is built, shared by
//! `conntrackd/build.rs`, which builds and embeds it on every `cargo build`,
//! and `cargo xtask build-ebpf`.
//!
//! Cargo of Debian's rustc 1.96 (rustup toolchain `debian-1.96`, linked by
//! `cargo xtask setup`; rustup's stable has no rust-src here) builds the
//! crate for `bpfel-unknown-none` with `-Z build-std=core`, which
//! `conntrackd-ebpf/.cargo/config.toml` asks for and `RUSTC_BOOTSTRAP=1`
//! allows on a stable compiler; bpf-linker links it. The crate is its own
//! workspace (own lock file and release profile: `lto = true`,
//! `codegen-units = 1`, `debug = 2`), built in its own target directory so the
//! nested cargo never waits on the lock of the cargo running the build script.
//!
//! aya-build 0.2 (what aya-template's build.rs calls) does not fit: it builds
//! a member of the calling workspace, whose release profile would replace the
//! kernel program's, into a target directory under `OUT_DIR`, so every
//! profile and feature set would rebuild `core` and aya-ebpf from scratch
//! (about 2.5 CPU minutes each, measured).
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The rustup name of Debian's rustc-web toolchain (sysroot `/usr`).
pub const TOOLCHAIN: &str = "debian-1.96";
/// The kernel program's target.
pub const TARGET: &str = "bpfel-unknown-none";

/// What the calling cargo (rustup's stable, clippy, rust-analyzer,
/// cargo-fuzz) exports and the 1.96 build must not inherit: its compiler,
/// wrappers, flags (sanitizers under cargo-fuzz) and target settings, and
/// what it sets for build scripts (`HOST`, `TARGET`, `CARGO_CFG_*`...): the
/// dependencies' build scripts watch some of them, so they would differ
/// between `cargo build` and `cargo xtask build-ebpf` and rebuild both times.
const INHERITED: &[&str] = &[
    "RUSTUP_TOOLCHAIN",
    "RUSTC",
    "RUSTDOC",
    "CARGO",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_TARGET_DIR",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "NUM_JOBS",
    "OPT_LEVEL",
    "DEBUG",
    "PROFILE",
];
/// Prefixes of the build-script variables cargo sets per package and target.
const INHERITED_PREFIXES: &[&str] = &["CARGO_CFG_", "CARGO_FEATURE_", "CARGO_PKG_", "CARGO_MANIFEST_", "DEP_"];

/// The release build of the crate at `ebpf_crate` into `target_dir`.
pub fn command(ebpf_crate: &Path, target_dir: &Path) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", TOOLCHAIN, "cargo", "build", "--release", "--target-dir"]).arg(target_dir).current_dir(ebpf_crate).env("RUSTC_BOOTSTRAP", "1");
    for var in INHERITED {
        cmd.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        if var.to_str().is_some_and(|v| INHERITED_PREFIXES.iter().any(|p| v.starts_with(p))) {
            cmd.env_remove(var);
        }
    }
    cmd
}

/// Where [`command`] leaves the object.
pub fn object(target_dir: &Path) -> PathBuf {
    target_dir.join(TARGET).join("release/conntrackd")
}

/// What is missing to run [`command`], if anything, as a sentence that says
/// what installs it.
pub fn missing_tools() -> Option<String> {
    let setup = "`cargo xtask setup` installs it";
    let sysroot = match Command::new("rustup").args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"]).stderr(Stdio::null()).output() {
        Err(err) => return Some(format!("rustup cannot be run ({err}); the eBPF build needs rustup with the toolchain {TOOLCHAIN}")),
        Ok(out) if !out.status.success() => {
            return Some(format!("the rustup toolchain {TOOLCHAIN} (Debian's rustc-web 1.96, `rustup toolchain link {TOOLCHAIN} /usr`) is missing; {setup}"))
        }
        Ok(out) => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
    };
    let core = sysroot.join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if !core.is_file() {
        return Some(format!("{} is missing: the toolchain {TOOLCHAIN} has no rust-src (Debian package rust-web-src); {setup}", core.display()));
    }
    let linker = Command::new("bpf-linker").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !linker.is_ok_and(|s| s.success()) {
        return Some(format!("bpf-linker is not on PATH (cargo install bpf-linker, built against LLVM 22); {setup}"));
    }
    None
}
