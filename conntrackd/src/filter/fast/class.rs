//! The network class of an address in the IPv6 space, as the decide loop
//! needs it once per event and side: the same answer as `NetworkClass::of`
//! (a test compares them on every prefix's edges), from the class prefixes
//! prepared once as mask and value, longest first, so the first match is
//! the longest and no shift is computed per event.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use crate::event::{
    network::{NetworkClass, PREFIXES},
    prefilter::class_bit,
};

#[derive(Debug, Clone, Copy)]
struct Entry {
    mask: u128,
    value: u128,
    len: u8,
    class: NetworkClass,
}

/// [`PREFIXES`] as mask and value, longest first (a stable sort: equal lengths keep their order).
const TABLE: [Entry; PREFIXES.len()] = table();

// Run by the compiler only: an index out of bounds would fail the build, not the daemon.
#[allow(clippy::indexing_slicing)]
const fn table() -> [Entry; PREFIXES.len()] {
    let mut out = [Entry { mask: 0, value: 0, len: 0, class: NetworkClass::Public }; PREFIXES.len()];
    let mut i = 0;
    while i < PREFIXES.len() {
        let p = PREFIXES[i];
        // `NetworkClass::of` ignores a prefix of length 0; a mask that never matches does too.
        let (mask, value) = if p.len == 0 {
            (0, 1)
        } else {
            let len = if p.len > 128 { 128 } else { p.len };
            let mask = u128::MAX << (128 - len as u32);
            (mask, p.addr.to_bits() & mask)
        };
        let entry = Entry { mask, value, len: p.len, class: p.class };
        // Insertion: after every entry at least as long.
        let mut j = i;
        while j > 0 && out[j - 1].len < entry.len {
            out[j] = out[j - 1];
            j -= 1;
        }
        out[j] = entry;
        i += 1;
    }
    out
}

/// The class bit (`class_bit`) of an address (IPv4 mapped).
#[inline]
pub(crate) fn class_of(addr: u128) -> u8 {
    class_bit(class(addr))
}

fn class(addr: u128) -> NetworkClass {
    for e in &TABLE {
        if addr & e.mask == e.value {
            return e.class;
        }
    }
    NetworkClass::Public
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use super::*;
    use crate::filter::ast::addr_bits;

    #[test]
    fn agrees_with_network_class_of_at_every_prefix_edge() {
        let mut addrs: Vec<u128> = vec![0, 1, u128::MAX, addr_bits("8.8.8.8".parse().unwrap()), addr_bits("::ffff:10.0.0.1".parse().unwrap())];
        for p in PREFIXES {
            let base = p.addr.to_bits();
            let span = if p.len >= 128 { 0 } else { u128::MAX >> p.len };
            for a in [base, base | span, base.wrapping_sub(1), (base | span).wrapping_add(1), base ^ 1 << 127, base | span >> 1] {
                addrs.push(a);
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834_u128;
        for _ in 0..2000 {
            x = x.wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645).wrapping_add(1);
            addrs.push(x);
            // Also IPv4-mapped.
            addrs.push(0xffff_0000_0000 | (x >> 96));
        }
        for a in addrs {
            let ip = IpAddr::V6(Ipv6Addr::from_bits(a));
            assert_eq!(class(a), NetworkClass::of(ip), "{ip}");
            let v4 = ip.to_canonical();
            assert_eq!(class(addr_bits(v4)), NetworkClass::of(v4), "{v4}");
        }
    }
}
