//! conntrackd's config file for each conntrackd consumer: the built-in
//! default rules (so the rule path and the pre-filter derived from them are
//! exercised), the stream sink on stdout, the source under test, and text
//! logs (the `conntrackd stopped` counters are parsed from them); ulogd's;
//! and the Go original's (YAML: `log any`, the stream sink on stdout).
use std::fs;

use anyhow::{Context, Result};

use super::consumer::{Daemon, Kind};

/// The daemon's default rules: TCP to PUBLIC destinations only.
pub(crate) const RULES: [&str; 2] = ["log protocol tcp and destination network public", "drop any"];
/// conntrackd's ring buffer (eBPF source; its default).
pub(crate) const RING_BUFFER_BYTES: u64 = 4 << 20;
/// The netlink source's socket receive buffer (its default, set explicitly).
pub(crate) const RECEIVE_BUFFER_BYTES: u64 = 8 << 20;

/// Writes `<slug>.toml` for every conntrackd kind into the daemon's config directory.
pub(crate) fn write_all(daemon: &Daemon) -> Result<()> {
    for kind in Kind::ALL {
        if let Some(text) = text(kind) {
            let path = daemon.config(kind);
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let path = daemon.config(Kind::Original);
    fs::write(&path, ORIGINAL).with_context(|| format!("writing {}", path.display()))?;
    super::ulogd::write_config(daemon)
}

/// The Go original's config: every event (its filter language has `log any`;
/// with no rule it would log everything too), JSON lines on stdout.
pub(crate) const ORIGINAL: &str = "filter:\n  - \"log any\"\nsink:\n  stream:\n    enable: true\n    writer: \"stdout\"\n";

/// The config for `kind`; `None` for consumers that are not conntrackd.
pub(crate) fn text(kind: Kind) -> Option<String> {
    let source = match kind {
        Kind::Conntrackd => format!("kind = \"ebpf\"\nring_buffer_bytes = {RING_BUFFER_BYTES}\n"),
        Kind::ConntrackdNoPrefilter => format!("kind = \"ebpf\"\nring_buffer_bytes = {RING_BUFFER_BYTES}\nkernel_prefilter = false\n"),
        Kind::ConntrackdNetlink => format!("kind = \"netlink\"\nreceive_buffer_bytes = {RECEIVE_BUFFER_BYTES}\n"),
        Kind::ConntrackEvents | Kind::Ulogd | Kind::Original => return None,
    };
    let rules: Vec<String> = RULES.iter().map(|r| format!("{r:?}")).collect();
    Some(format!("filter = [{}]\n\n[log]\nformat = \"text\"\n\n[source]\n{source}\n[sink.stream]\nenable = true\nwriter = \"stdout\"\n", rules.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_conntrackd_kind_has_its_source() {
        let ebpf = text(Kind::Conntrackd).unwrap();
        assert!(ebpf.starts_with("filter = [\"log protocol tcp and destination network public\", \"drop any\"]\n"));
        assert!(ebpf.contains("kind = \"ebpf\"") && !ebpf.contains("kernel_prefilter"));
        assert!(ebpf.contains("[log]\nformat = \"text\"\n"));
        assert!(text(Kind::ConntrackdNoPrefilter).unwrap().contains("kernel_prefilter = false"));
        assert!(text(Kind::ConntrackdNetlink).unwrap().contains("kind = \"netlink\"\nreceive_buffer_bytes = 8388608\n"));
        assert!(text(Kind::ConntrackEvents).is_none());
    }
}
