//! conntrackd's micro-benchmarks (`conntrackd/benches/*.rs`: rules,
//! loki_encoder, geoip), built and run with
//! `cargo bench -p conntrackd --bench NAME -- ARGS` when they are needed
//! (xtask itself never depends on the conntrackd crate, and the daemon's
//! build has no benchmark code: the benches enable the feature `bench`).
use std::{
    ffi::OsStr,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use super::interrupt;

/// Runs the bench `name` with `args`; returns what it printed on stdout.
/// Build progress and the bench's errors go to our stderr.
pub(crate) fn run<I, S>(root: &Path, name: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    interrupt::check()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let what = format!("cargo bench -p conntrackd --bench {name}");
    let out = Command::new(cargo)
        .args(["bench", "-p", "conntrackd", "--bench", name, "--"])
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}); its errors are above", out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("{what} printed non-UTF-8"))
}
