//! Embeds the kernel program built by `cargo xtask build-ebpf`.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=CONNTRACKD_EBPF_OBJ");
    let obj = match std::env::var_os("CONNTRACKD_EBPF_OBJ") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/ebpf/bpfel-unknown-none/release/conntrackd"),
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
}
