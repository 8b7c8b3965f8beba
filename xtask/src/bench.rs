//! `cargo xtask bench` (being written).
use std::path::Path;

pub(crate) fn run(_root: &Path, _quick: bool) -> anyhow::Result<()> {
    anyhow::bail!("cargo xtask bench is not written yet")
}
