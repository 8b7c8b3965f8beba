//! Reads (and optionally sets) the conntrack sysctls of the current network
//! namespace: `nf_conntrack_events`, `nf_conntrack_acct`, `nf_conntrack_timestamp`.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::path::Path;

const DIR: &str = "/proc/sys/net/netfilter";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SysctlError {
    #[error(
        "net.netfilter.nf_conntrack_events is 0 in this network namespace: the kernel emits no \
         conntrack events. Enable them with `sysctl -w net.netfilter.nf_conntrack_events=1` \
         (and persist it in /etc/sysctl.d/), or set source.set_sysctls = true"
    )]
    Disabled,
    #[error("cannot read {0}: is the nf_conntrack module loaded?")]
    Unreadable(String),
    #[error("unexpected value {value:?} in {name}")]
    Unexpected { name: &'static str, value: String },
    #[error("cannot set {name} (needs CAP_NET_ADMIN in that namespace): {message}")]
    Write { name: &'static str, message: String },
}

/// What the sysctl says about event delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventsSetting {
    /// 1: every connection produces events.
    Always,
    /// 2: only connections seen after a listener appeared carry the event extension.
    Auto,
}

/// The three settings that shape the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub events: EventsSetting,
    /// Byte and packet counters on DESTROY.
    pub acct: bool,
    /// `start` and `duration_ms`.
    pub timestamp: bool,
}

const NAMES: [&str; 3] = ["nf_conntrack_events", "nf_conntrack_acct", "nf_conntrack_timestamp"];

/// Sets all three to 1 (a system change, not restored at exit).
pub(crate) fn enable_all() -> Result<(), SysctlError> {
    for name in NAMES {
        std::fs::write(Path::new(DIR).join(name), "1").map_err(|e| SysctlError::Write { name, message: e.to_string() })?;
    }
    Ok(())
}

/// Reads the three settings of the current namespace; events = 0 is an error that names the fix.
pub(crate) fn read() -> Result<Settings, SysctlError> {
    let events = interpret(read_one(NAMES[0])?.as_str())?;
    let acct = read_one(NAMES[1])? != "0";
    let timestamp = read_one(NAMES[2])? != "0";
    Ok(Settings { events, acct, timestamp })
}

fn read_one(name: &'static str) -> Result<String, SysctlError> {
    let path = Path::new(DIR).join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| SysctlError::Unreadable(format!("{} ({e})", path.display())))?;
    Ok(text.trim().to_string())
}

fn interpret(value: &str) -> Result<EventsSetting, SysctlError> {
    match value {
        "0" => Err(SysctlError::Disabled),
        "1" => Ok(EventsSetting::Always),
        "2" => Ok(EventsSetting::Auto),
        other => Err(SysctlError::Unexpected { name: NAMES[0], value: other.to_string() }),
    }
}

/// Logs what the settings mean for the output of one namespace.
pub(crate) fn report(settings: &Settings, netns: &str) {
    if settings.events == EventsSetting::Auto {
        tracing::warn!(
            netns,
            "net.netfilter.nf_conntrack_events is 2: connections created before conntrackd started \
             produce no DESTROY event; set it to 1 (or source.set_sysctls = true) to see them all"
        );
    }
    if !settings.acct {
        tracing::info!(netns, "net.netfilter.nf_conntrack_acct is 0: DESTROY events carry no byte/packet counters");
    }
    if !settings.timestamp {
        tracing::info!(netns, "net.netfilter.nf_conntrack_timestamp is 0: events carry no start or duration_ms");
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
