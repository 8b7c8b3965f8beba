//! Network classes (docs/rules.md): LOCAL, PRIVATE, MULTICAST, and PUBLIC
//! for everything else. IPv4-mapped IPv6 addresses are classified as IPv4.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::net::{IpAddr, Ipv6Addr};

use conntrackd_common::{CLASS_LOCAL, CLASS_MULTICAST, CLASS_PRIVATE, CLASS_PUBLIC};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NetworkClass {
    Local,
    Private,
    Public,
    Multicast,
}

/// A prefix of the non-PUBLIC classes, as an IPv6 prefix: IPv4 prefixes are
/// written IPv4-mapped (`::ffff:0:0/96` + the IPv4 prefix length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClassPrefix {
    pub addr: Ipv6Addr,
    pub len: u8,
    pub class: NetworkClass,
}

const fn v4(a: u8, b: u8, len: u8, class: NetworkClass) -> ClassPrefix {
    ClassPrefix { addr: Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, (a as u16) << 8 | b as u16, 0), len: 96 + len, class }
}

const fn v6(first: u16, len: u8, class: NetworkClass) -> ClassPrefix {
    ClassPrefix { addr: Ipv6Addr::new(first, 0, 0, 0, 0, 0, 0, 0), len, class }
}

/// Every non-PUBLIC prefix; they do not overlap. Anything else is PUBLIC,
/// including the rest of `::ffff:0:0/96` (public IPv4).
pub(crate) const PREFIXES: [ClassPrefix; 10] = [
    v4(127, 0, 8, NetworkClass::Local),
    v4(169, 254, 16, NetworkClass::Local),
    ClassPrefix { addr: Ipv6Addr::LOCALHOST, len: 128, class: NetworkClass::Local },
    v6(0xfe80, 10, NetworkClass::Local),
    v4(10, 0, 8, NetworkClass::Private),
    v4(172, 16, 12, NetworkClass::Private),
    v4(192, 168, 16, NetworkClass::Private),
    v6(0xfc00, 7, NetworkClass::Private),
    v4(224, 0, 4, NetworkClass::Multicast),
    v6(0xff00, 8, NetworkClass::Multicast),
];

impl NetworkClass {
    pub const ALL: [NetworkClass; 4] = [NetworkClass::Local, NetworkClass::Private, NetworkClass::Public, NetworkClass::Multicast];

    /// The class of an address.
    pub fn of(ip: IpAddr) -> Self {
        let v6 = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let bits = u128::from(v6);
        PREFIXES
            .iter()
            .filter(|p| p.len > 0 && bits >> (128 - u32::from(p.len)) == u128::from(p.addr) >> (128 - u32::from(p.len)))
            .max_by_key(|p| p.len)
            .map_or(NetworkClass::Public, |p| p.class)
    }

    /// Value stored in the kernel's class tries.
    pub fn kernel_value(self) -> u32 {
        match self {
            NetworkClass::Local => CLASS_LOCAL,
            NetworkClass::Private => CLASS_PRIVATE,
            NetworkClass::Public => CLASS_PUBLIC,
            NetworkClass::Multicast => CLASS_MULTICAST,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkClass::Local => "LOCAL",
            NetworkClass::Private => "PRIVATE",
            NetworkClass::Public => "PUBLIC",
            NetworkClass::Multicast => "MULTICAST",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> &'static str {
        NetworkClass::of(s.parse().unwrap()).as_str()
    }

    #[test]
    fn classes_match_the_contract() {
        for (ip, want) in [
            ("127.0.0.1", "LOCAL"),
            ("::1", "LOCAL"),
            ("169.254.3.4", "LOCAL"),
            ("fe80::1", "LOCAL"),
            ("10.1.2.3", "PRIVATE"),
            ("172.31.255.255", "PRIVATE"),
            ("172.32.0.1", "PUBLIC"),
            ("192.168.1.1", "PRIVATE"),
            ("fd00::1", "PRIVATE"),
            ("224.0.0.1", "MULTICAST"),
            ("239.255.255.250", "MULTICAST"),
            ("ff02::1", "MULTICAST"),
            ("8.8.8.8", "PUBLIC"),
            ("100.64.0.1", "PUBLIC"),
            ("203.0.113.10", "PUBLIC"),
            ("0.0.0.0", "PUBLIC"),
            ("2001:4860:4860::8888", "PUBLIC"),
            ("::ffff:10.0.0.1", "PRIVATE"),
            ("::ffff:127.0.0.1", "LOCAL"),
        ] {
            assert_eq!(class(ip), want, "{ip}");
        }
    }
}
