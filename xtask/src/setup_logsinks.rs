//! Setup for the journald and syslog sink tests: the real receivers they
//! start (rsyslogd from rsyslog; systemd-journald and journalctl from
//! systemd) and `unshare` (util-linux) for journald's private mount namespace.
use anyhow::Result;

/// Installs the missing receiver packages.
pub(crate) fn install() -> Result<()> {
    crate::setup::install_packages(&["rsyslog", "systemd", "util-linux"])
}
