//! The addresses of a network namespace's own interfaces, so a NEW event can
//! be told apart as locally originated (its original source is ours). The
//! namespace worker reads them inside each namespace and hands them to the
//! source; the event path only looks them up.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{collections::HashSet, net::IpAddr, sync::Arc};

/// How often the namespace worker reads every watched namespace's addresses again.
pub(crate) const REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// A namespace's addresses, as last read by the namespace worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LocalAddrs(Arc<HashSet<IpAddr>>);

impl LocalAddrs {
    /// The addresses of the calling thread's namespace, now.
    pub fn read() -> Self {
        Self(Arc::new(read()))
    }

    /// Whether `ip` is one of the namespace's addresses (IPv4-mapped counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

/// getifaddrs(3) in the calling thread's namespace.
fn read() -> HashSet<IpAddr> {
    let mut out = HashSet::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if let Some(ip) = address(ifa.ifa_addr) {
            out.insert(ip);
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the list came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    out
}

fn address(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: a sockaddr from getifaddrs; the family says which struct it is.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let sin = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 => {
                let sin6 = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::from(sin6.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local() {
        let local = LocalAddrs::read();
        assert!(local.contains("127.0.0.1".parse().unwrap()));
        assert!(local.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!local.contains("203.0.113.200".parse().unwrap()));
    }
}
