//! Embeds the kernel program built by `cargo xtask build-ebpf`.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=CONNTRACKD_EBPF_OBJ");
    let obj = match std::env::var_os("CONNTRACKD_EBPF_OBJ") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ebpf/bpfel-unknown-none/release/conntrackd"),
    };
    println!("cargo:rerun-if-changed={}", obj.display());
    if !obj.is_file() {
        eprintln!(
            "error: the eBPF object {} does not exist.\n\
             Build it first with `cargo xtask build-ebpf` (or use `cargo xtask build`, \
             `cargo xtask run`, `cargo xtask test`, which do it for you).",
            obj.display()
        );
        std::process::exit(1);
    }
    let obj = obj.canonicalize().unwrap_or(obj);
    println!("cargo:rustc-env=CONNTRACKD_EBPF_OBJ={}", obj.display());
    println!("cargo:rustc-env=CTD_BUILD_GIT_COMMIT={}", git_commit());
    println!("cargo:rustc-env=CTD_BUILD_AYA_VERSION={}", aya_version());
}

/// The commit being built, or "unknown" outside a git checkout.
fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // HEAD names a branch; the branch file changes with every commit. `--git-path`
    // finds both in a worktree too (where .git is a file): a path that does not
    // exist would make cargo rerun this script, and rebuild the crate, every time.
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        let mut watch = vec![head.clone()];
        if let Some(branch) = std::fs::read_to_string(&head).ok().as_deref().and_then(|h| h.trim().strip_prefix("ref: ").map(str::to_string)) {
            watch.extend(git(&["rev-parse", "--git-path", &branch]));
            watch.extend(git(&["rev-parse", "--git-path", "packed-refs"]));
        }
        for path in watch.iter().filter(|p| std::path::Path::new(p).exists()) {
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
