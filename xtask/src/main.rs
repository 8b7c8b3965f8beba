//! Project tasks: `cargo xtask setup | build-ebpf | build | run | test | fuzz | bench | dist`.
//!
//! Every task that builds first installs what is missing of what it needs,
//! and says what it installs: the build toolchain for `build-ebpf`, `build`,
//! `run` and `dist`; that and the test tools for `test` and `bench`.
mod bench;
mod dist;
/// The kernel program's build command, shared with `conntrackd/build.rs`
/// (xtask does not depend on the conntrackd crate).
#[path = "../../conntrackd/build/ebpf.rs"]
mod ebpf_build;
mod fuzz;
mod setup;
mod setup_contrib;
mod setup_logsinks;
mod setup_peers;
mod setup_victorialogs;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "conntrackd project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing (idempotent): the build toolchain, then what the tests drive.
    Setup {
        /// Only what building needs (Debian's rustc-web 1.96, LLVM 22, the debian-1.96 link, bpf-linker).
        #[arg(long)]
        build_only: bool,
    },
    /// Build the kernel program for bpfel-unknown-none with Debian's rustc 1.96 (`cargo build` does it too).
    BuildEbpf,
    /// Build target/release/conntrackd with the kernel program embedded (installs only the build toolchain).
    Build,
    /// Build and run the daemon (as root); extra arguments go to `conntrackd run`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install the test tools, build and run every test (as root: the kernel tests use network namespaces).
    Test,
    /// Run cargo-fuzz targets of conntrackd/fuzz with nightly, one after the other.
    Fuzz {
        /// Target: rules, rules_generated, netlink or config.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        target: Option<String>,
        /// Run every target, each for --seconds.
        #[arg(long)]
        all: bool,
        /// How long to run each target, in seconds.
        #[arg(long, default_value_t = 300)]
        seconds: u64,
    },
    /// Measure delivery and CPU cost against conntrack-tools on generated load (as root).
    Bench {
        /// Fewer events and rates, for a smoke run.
        #[arg(long)]
        quick: bool,
        /// Only the namespace scale measurement (250 namespaces and churn).
        #[arg(long, conflicts_with = "quick")]
        netns: bool,
        /// Only these NEW rates per second (comma-separated; `max` = the generator's maximum) [default: 10000,50000,100000,max].
        #[arg(long, value_delimiter = ',', conflicts_with = "quick")]
        rates: Vec<String>,
        /// How often each run is repeated (the report shows the median) [default: 3].
        #[arg(long, conflicts_with = "quick")]
        repeats: Option<usize>,
    },
    /// Release artifacts in target/dist: stripped binary, man pages, unit, config, each with .sha256.
    Dist {
        /// Also cross-build conntrackd-linux-arm64 (installs Debian's aarch64 gcc and rustup's std).
        #[arg(long)]
        arm64: bool,
        /// Package this already built binary as the amd64 one instead of a release build (tests).
        #[arg(long, value_name = "PATH", conflicts_with = "arm64")]
        binary: Option<PathBuf>,
        /// Output directory [default: target/dist].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let root = workspace_root();
    match Cli::parse().task {
        Task::Setup { build_only: true } => setup::build_tools(),
        Task::Setup { build_only: false } => setup::run(),
        Task::BuildEbpf => {
            setup::build_tools()?;
            build_ebpf(&root)
        }
        Task::Build => {
            setup::build_tools()?;
            build(&root)
        }
        Task::Run { args } => {
            setup::build_tools()?;
            build(&root)?;
            let bin = root.join("target/release/conntrackd");
            let status = Command::new(&bin).arg("run").args(&args).status().with_context(|| format!("running {}", bin.display()))?;
            if !status.success() {
                bail!("conntrackd exited with {status}");
            }
            Ok(())
        }
        Task::Test => {
            setup::run()?;
            require_root("the kernel tests create network namespaces")?;
            // The lints (the audited modules deny unwrap, indexing, truncating casts) hold only if clippy runs.
            cargo(&root, &["fmt", "--all", "--check"])?;
            cargo(&root, &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
            cargo(&root, &["test", "--workspace", "--all-targets"])
        }
        Task::Fuzz { target, all: _, seconds } => {
            build_ebpf(&root)?;
            fuzz::run(&root, target.as_deref(), seconds)
        }
        Task::Bench { quick, netns, rates, repeats } => {
            setup::run()?;
            build(&root)?;
            require_root("the benchmark creates network namespaces")?;
            if netns {
                return bench::run_netns(&root);
            }
            bench::run(&root, quick, &rates, repeats)
        }
        Task::Dist { arm64, binary, out } => {
            let out = out.unwrap_or_else(|| root.join("target/dist"));
            if binary.is_none() {
                setup::build_tools()?;
            }
            dist::run(&root, &dist::Options { arm64, binary, out })
        }
    }
}

/// The kernel object, where `conntrackd/build.rs` expects it.
pub(crate) fn ebpf_object(root: &Path) -> PathBuf {
    ebpf_build::object(&root.join("target/ebpf"))
}

/// The same build as `conntrackd/build.rs` runs, into the same directory.
fn build_ebpf(root: &Path) -> Result<()> {
    if let Some(missing) = ebpf_build::missing_tools() {
        bail!("cannot build the eBPF program: {missing}");
    }
    run(&mut ebpf_build::command(&root.join("conntrackd-ebpf"), &root.join("target/ebpf")), "building the eBPF program")?;
    let obj = ebpf_object(root);
    if !obj.is_file() {
        bail!("the eBPF build succeeded but {} is missing", obj.display());
    }
    Ok(())
}

/// The release binary; its build script builds the kernel program.
fn build(root: &Path) -> Result<()> {
    cargo(root, &["build", "--release", "--package", "conntrackd"])
}

fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo).args(args).current_dir(root), &format!("cargo {}", args.join(" ")))
}

pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn require_root(why: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("run this as root ({why}): sudo -E cargo xtask ...");
    }
    Ok(())
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}
