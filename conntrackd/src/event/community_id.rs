//! Community ID v1 flow hashes: the string Zeek, Suricata, Elastic and
//! packet tools compute for a flow, so a conntrackd event can be joined with
//! their records of the same connection.
//!
//! The hash is SHA-1 over `seed (u16 BE) · address · address · protocol ·
//! 0 · port (u16 BE) · port (u16 BE)` with the smaller endpoint first (the
//! addresses compared as network-order bytes, then the ports), written as
//! `1:` + base64 (standard alphabet, padded). conntrackd logs only TCP and
//! UDP, which both carry ports; ICMP's type/code mapping is not needed.
//! Kept allocation-free: the result is a fixed 30-byte string on the stack.
use std::net::IpAddr;

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// `1:` + 28 base64 characters of a 20-byte SHA-1.
const LEN: usize = 30;

/// A Community ID string, e.g. `1:LQU9qZlK+B5F3KDmev6m5PMibrg=`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommunityId([u8; LEN]);

impl CommunityId {
    /// The flow's hash for one direction of it (either gives the same).
    pub(crate) fn new(seed: u16, protocol: u8, src: (IpAddr, u16), dst: (IpAddr, u16)) -> Self {
        let ordered = match (src.0, dst.0) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (a.octets(), src.1) <= (b.octets(), dst.1),
            (IpAddr::V6(a), IpAddr::V6(b)) => (a.octets(), src.1) <= (b.octets(), dst.1),
            // A conntrack tuple never mixes families; order by family then.
            (IpAddr::V4(_), IpAddr::V6(_)) => true,
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        };
        let (first, second) = if ordered { (src, dst) } else { (dst, src) };
        let mut hasher = Sha1::new();
        hasher.update(seed.to_be_bytes());
        for (addr, _) in [first, second] {
            match addr {
                IpAddr::V4(a) => hasher.update(a.octets()),
                IpAddr::V6(a) => hasher.update(a.octets()),
            }
        }
        hasher.update([protocol, 0]);
        hasher.update(first.1.to_be_bytes());
        hasher.update(second.1.to_be_bytes());
        let digest = hasher.finalize();
        let mut out = [0u8; LEN];
        out[0] = b'1';
        out[1] = b':';
        // 20 bytes encode to exactly 28 padded characters: the slice fits.
        let _ = base64::engine::general_purpose::STANDARD.encode_slice(digest, &mut out[2..]);
        CommunityId(out)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII is ever written ('1', ':' and base64).
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for CommunityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u16, protocol: u8, src: &str, sport: u16, dst: &str, dport: u16) -> String {
        CommunityId::new(seed, protocol, (src.parse().unwrap(), sport), (dst.parse().unwrap(), dport)).to_string()
    }

    /// The specification's baseline vectors for TCP and UDP (its
    /// `baseline_deflt.json` and `baseline_seed1.json`), each flow in both
    /// directions: (protocol, source, port, destination, port, seed 0, seed 1).
    const BASELINE: &[(u8, &str, u16, &str, u16, &str, &str)] = &[
        (6, "2001:470:e5bf:dead:4957:2174:e82c:4887", 63943, "2607:f8b0:400c:c03::1a", 25, "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
        (6, "128.232.110.120", 34855, "66.35.250.204", 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
        (17, "192.168.1.52", 54585, "8.8.8.8", 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
    ];

    #[test]
    fn spec_baseline() {
        for &(proto, src, sport, dst, dport, seed0, seed1) in BASELINE {
            assert_eq!(id(0, proto, src, sport, dst, dport), seed0, "{src}:{sport} -> {dst}:{dport}");
            assert_eq!(id(0, proto, dst, dport, src, sport), seed0, "{dst}:{dport} -> {src}:{sport}");
            assert_eq!(id(1, proto, src, sport, dst, dport), seed1, "seed 1, {src}:{sport} -> {dst}:{dport}");
            assert_eq!(id(1, proto, dst, dport, src, sport), seed1, "seed 1, {dst}:{dport} -> {src}:{sport}");
        }
    }

    /// Equal addresses are ordered by port; the length is always 30.
    #[test]
    fn same_address_orders_by_port() {
        let a = id(0, 17, "2001:db8::1", 5353, "2001:db8::1", 53);
        assert_eq!(a, id(0, 17, "2001:db8::1", 53, "2001:db8::1", 5353));
        assert_eq!(a.len(), LEN);
        assert!(a.starts_with("1:"));
    }
}
