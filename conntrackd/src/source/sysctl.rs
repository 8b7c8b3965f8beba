//! Checks `net.netfilter.nf_conntrack_events` of the daemon's network namespace.
use std::path::Path;

const PATH: &str = "/proc/sys/net/netfilter/nf_conntrack_events";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SysctlError {
    #[error(
        "net.netfilter.nf_conntrack_events is 0 in this network namespace: the kernel emits no \
         conntrack events. Enable them with `sysctl -w net.netfilter.nf_conntrack_events=1` \
         (and persist it in /etc/sysctl.d/)"
    )]
    Disabled,
    #[error("cannot read {PATH} ({0}): is the nf_conntrack module loaded?")]
    Unreadable(String),
    #[error("unexpected value {0:?} in {PATH}")]
    Unexpected(String),
}

/// What the sysctl says about event delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventsSetting {
    /// 1: every connection produces events.
    Always,
    /// 2: only connections seen after a listener appeared carry the event extension.
    Auto,
}

/// Reads and interprets the sysctl; 0 is an error that names the fix.
pub(crate) fn check_events() -> Result<EventsSetting, SysctlError> {
    let text = std::fs::read_to_string(Path::new(PATH)).map_err(|e| SysctlError::Unreadable(e.to_string()))?;
    interpret(text.trim())
}

fn interpret(value: &str) -> Result<EventsSetting, SysctlError> {
    match value {
        "0" => Err(SysctlError::Disabled),
        "1" => Ok(EventsSetting::Always),
        "2" => Ok(EventsSetting::Auto),
        other => Err(SysctlError::Unexpected(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(interpret("0"), Err(SysctlError::Disabled));
        assert!(SysctlError::Disabled.to_string().contains("sysctl -w net.netfilter.nf_conntrack_events=1"));
        assert_eq!(interpret("1"), Ok(EventsSetting::Always));
        assert_eq!(interpret("2"), Ok(EventsSetting::Auto));
        assert!(interpret("x").is_err());
    }
}
