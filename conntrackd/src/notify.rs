//! systemd notification protocol (sd_notify): READY=1, STOPPING=1 and
//! watchdog pings to `$NOTIFY_SOCKET`, when the service manager set it.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{os::unix::net::UnixDatagram, time::Duration};

/// Sends `state` (e.g. "READY=1") if `$NOTIFY_SOCKET` is set; failures are logged, not fatal.
pub(crate) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let path = path.to_string_lossy().into_owned();
    if let Err(err) = send(&path, state) {
        tracing::warn!(socket = %path, state, error = %err, "cannot notify the service manager");
    }
}

fn send(path: &str, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

/// Half the watchdog interval when systemd asked for pings (`WATCHDOG_USEC`,
/// and `WATCHDOG_PID` unset or ours).
pub(crate) fn watchdog_interval() -> Option<Duration> {
    interval_of(std::env::var("WATCHDOG_USEC").ok().as_deref(), std::env::var("WATCHDOG_PID").ok().as_deref(), std::process::id())
}

fn interval_of(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.parse().ok()?;
    if let Some(pid) = pid {
        if pid.parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    // At least 1 us: a zero period would make the timer panic (WATCHDOG_USEC=1).
    (usec > 0).then(|| Duration::from_micros((usec / 2).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("ctd-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn watchdog_interval_from_the_environment() {
        assert_eq!(interval_of(Some("10000000"), None, 7), Some(Duration::from_secs(5)));
        assert_eq!(interval_of(Some("10000000"), Some("7"), 7), Some(Duration::from_secs(5)));
        assert_eq!(interval_of(Some("10000000"), Some("8"), 7), None, "another process's watchdog");
        assert_eq!(interval_of(Some("1"), None, 7), Some(Duration::from_micros(1)), "never a zero period");
        assert_eq!(interval_of(Some("18446744073709551615"), None, 7), Some(Duration::from_micros(u64::MAX / 2)));
        for bad in [None, Some("0"), Some("-1"), Some("soon"), Some("18446744073709551616")] {
            assert_eq!(interval_of(bad, None, 7), None, "{bad:?}");
        }
    }
}
