//! `cargo xtask setup`: installs, only if missing, what building needs
//! ([`build_tools`]: Debian's rustc-web 1.96 with rust-src and LLVM 22, the
//! `debian-1.96` rustup link, bpf-linker) and what the tests and the
//! benchmark drive ([`test_tools`]: conntrack, nft, ip, setcap, the journald
//! and syslog receivers, the contrib tools, VictoriaLogs, the Go original).
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The rustup name of Debian's rustc-web toolchain (sysroot /usr).
pub(crate) const DEBIAN_TOOLCHAIN: &str = crate::ebpf_build::TOOLCHAIN;
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Debian packages the build needs: the kernel program's compiler with
/// rust-src, and the LLVM bpf-linker is built against.
const BUILD_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "llvm-22-dev"];
/// Debian packages the kernel tests and the benchmark drive.
const TEST_PACKAGES: &[&str] = &["conntrack", "nftables", "iproute2", "libcap2-bin"];

/// Everything: what building needs, then what the tests need.
pub(crate) fn run() -> Result<()> {
    build_tools()?;
    test_tools()
}

/// What `cargo build` of the workspace needs (conntrackd/build.rs builds the kernel program).
pub(crate) fn build_tools() -> Result<()> {
    install_packages(BUILD_PACKAGES)?;
    link_toolchain()?;
    install_bpf_linker()
}

/// What `cargo xtask test` and `cargo xtask bench` drive besides the build.
pub(crate) fn test_tools() -> Result<()> {
    install_packages(TEST_PACKAGES)?;
    crate::setup_logsinks::install()?;
    crate::setup_contrib::install()?;
    crate::setup_victorialogs::install_victorialogs()?;
    crate::setup_peers::install()
}

/// Installs the missing packages from the list; `apt-get update` once, first.
pub(crate) fn install_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !is_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: installing Debian packages: {}", missing.join(" "));
    crate::run(Command::new("apt-get").args(["-o", "DPkg::Lock::Timeout=600", "update", "-q"]), "apt-get update")?;
    crate::run(
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn link_toolchain() -> Result<()> {
    let list = Command::new("rustup").args(["toolchain", "list"]).output().context("running rustup (is rustup installed?)")?;
    if String::from_utf8_lossy(&list.stdout).lines().any(|l| l.starts_with(DEBIAN_TOOLCHAIN)) {
        return Ok(());
    }
    println!("setup: linking Debian's rustc-web as rustup toolchain {DEBIAN_TOOLCHAIN}");
    crate::run(Command::new("rustup").args(["toolchain", "link", DEBIAN_TOOLCHAIN, "/usr"]), "rustup toolchain link")
}

fn install_bpf_linker() -> Result<()> {
    let current = Command::new("bpf-linker").arg("--version").output();
    if current.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)) {
        return Ok(());
    }
    println!("setup: installing bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about 2 minutes)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    crate::run(
        Command::new(cargo)
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX),
        "cargo install bpf-linker",
    )?;
    if Command::new("bpf-linker").arg("--version").output().is_err() {
        bail!("bpf-linker was installed but is not on PATH; add ~/.cargo/bin to PATH");
    }
    Ok(())
}
