//! The kernel pre-filter table: which (event type, protocol, source class,
//! destination class) combinations the kernel program keeps, as the POLICY
//! map holds it, and the same checks in userspace for the netlink source.
//! The rules derive it (`filter/prefilter.rs`); the sources write it to the
//! kernel; `conntrackd check` prints it.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{fmt, net::IpAddr};

use conntrackd_common::{Counter, Policy, CLASS_LOCAL, CLASS_MULTICAST, CLASS_PRIVATE, CLASS_PUBLIC};

use super::{network::NetworkClass, EventType, Protocol};

pub(crate) const KINDS: [EventType; 3] = [EventType::New, EventType::Update, EventType::Destroy];
pub(crate) const PROTOCOLS: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];

pub(crate) fn kind_bit(kind: EventType) -> u8 {
    match kind {
        EventType::New => 0,
        EventType::Update => 1,
        EventType::Destroy => 2,
    }
}

pub(crate) fn protocol_bit(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
    }
}

/// The class's bit: its value in the kernel's class tries (checked below at compile time).
pub(crate) fn class_bit(class: NetworkClass) -> u8 {
    match class {
        NetworkClass::Local => 0,
        NetworkClass::Private => 1,
        NetworkClass::Public => 2,
        NetworkClass::Multicast => 3,
    }
}

const _: () = assert!(CLASS_LOCAL == 0 && CLASS_PRIVATE == 1 && CLASS_PUBLIC == 2 && CLASS_MULTICAST == 3, "class_bit must be the kernel value");

/// Which (type, protocol, source class, destination class) combinations the
/// kernel keeps: `keep[kind][protocol]` has bit `src * 4 + dst` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefilter {
    keep: [[u16; 2]; 3],
}

impl Prefilter {
    /// The table of `keep[kind bit][protocol bit]` class masks (bit `src * 4 + dst`).
    pub fn from_masks(keep: [[u16; 2]; 3]) -> Self {
        Self { keep }
    }

    /// The default rules' table (`log protocol tcp and destination network
    /// public`, `drop any`): TCP of every type to a PUBLIC destination. The
    /// sources' tests use it; `filter`'s tests check the rules derive it.
    #[cfg(test)]
    pub fn tcp_to_public() -> Self {
        Self { keep: [[0x4444, 0]; 3] }
    }

    /// Keeps every TCP/UDP event (pre-filter disabled; only the rules decide).
    pub fn keep_all() -> Self {
        Self { keep: [[u16::MAX; 2]; 3] }
    }

    /// Event types some rule path can log: the multicast groups to join.
    pub fn kinds(&self) -> Vec<EventType> {
        KINDS.iter().copied().filter(|&k| self.wants_kind(k)).collect()
    }

    /// The kernel-side policy value.
    pub fn policy(&self, wakeup_bytes: u32) -> Policy {
        // Row by row: `keep[kind * 2 + protocol]`.
        let mut keep = [0u32; 6];
        for (cell, &mask) in keep.iter_mut().zip(self.keep.iter().flatten()) {
            *cell = u32::from(mask);
        }
        Policy { keep, wakeup_bytes, _pad: 0 }
    }

    /// The kernel program's first check, in userspace (netlink source): the
    /// class mask kept for this type and protocol, or DropProtocol.
    pub fn row(&self, kind: EventType, proto: u8) -> Result<u16, Counter> {
        let p = conntrackd_common::protocol_index(proto).ok_or(Counter::DropProtocol)?;
        match usize::try_from(p).map_or(0, |p| self.mask(kind, p)) {
            0 => Err(Counter::DropProtocol),
            row => Ok(row),
        }
    }

    /// The kernel program's class checks on a row from [`Prefilter::row`]:
    /// source class, then destination class, with the same outcome counters.
    pub fn classes(row: u16, src: IpAddr, dst: IpAddr) -> Result<(), Counter> {
        let dsts = (row >> (class_bit(NetworkClass::of(src)) * 4)) & 0xf;
        if dsts == 0 {
            return Err(Counter::DropSrcClass);
        }
        if dsts & (1 << class_bit(NetworkClass::of(dst))) == 0 {
            return Err(Counter::DropDstClass);
        }
        Ok(())
    }

    /// True if some event of this type may be kept.
    pub fn wants_kind(&self, kind: EventType) -> bool {
        self.keep.get(usize::from(kind_bit(kind))).is_some_and(|row| row.iter().any(|&m| m != 0))
    }

    /// The class mask kept for the type and the protocol's index (0 TCP, 1
    /// UDP); none for any other index.
    fn mask(&self, kind: EventType, protocol: usize) -> u16 {
        self.keep.get(usize::from(kind_bit(kind))).and_then(|row| row.get(protocol)).copied().unwrap_or(0)
    }

    /// The kernel's decision for a concrete event, in userspace (tests and fuzzing check soundness with it).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn keeps(&self, ev: &crate::event::Event) -> bool {
        let src = class_bit(NetworkClass::of(ev.orig.src));
        let dst = class_bit(NetworkClass::of(ev.orig.dst));
        let mask = self.mask(ev.kind, usize::from(protocol_bit(ev.protocol)));
        mask & (1 << (src * 4 + dst)) != 0
    }
}

impl fmt::Display for Prefilter {
    /// One line per group of (types × protocols) sharing the same classes,
    /// e.g. "NEW,UPDATE,DESTROY × TCP × src any × dst PUBLIC".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut groups: Vec<(u16, Vec<EventType>, Protocol)> = Vec::new();
        for proto in PROTOCOLS {
            for kind in KINDS {
                let mask = self.mask(kind, usize::from(protocol_bit(proto)));
                match groups.iter_mut().find(|(m, _, p)| *m == mask && *p == proto) {
                    Some(group) => group.1.push(kind),
                    None => groups.push((mask, vec![kind], proto)),
                }
            }
        }
        let lines: Vec<String> = groups
            .iter()
            .filter(|(mask, ..)| *mask != 0)
            .flat_map(|(mask, kinds, proto)| {
                let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                classes(*mask).into_iter().map(move |c| format!("{} × {} × {c}", kinds.join(","), proto.as_str()))
            })
            .collect();
        if lines.is_empty() {
            return f.write_str("kernel keeps: nothing (every event is dropped in the kernel)");
        }
        write!(f, "kernel keeps: {}", lines.join("; "))
    }
}

/// "src S × dst D" parts covering a 16-bit class mask.
fn classes(mask: u16) -> Vec<String> {
    let names = |bits: u16| -> String {
        if bits == 0xf {
            return "any".into();
        }
        let n: Vec<&str> = NetworkClass::ALL.iter().filter(|c| bits & (1 << class_bit(**c)) != 0).map(|c| c.as_str()).collect();
        n.join(",")
    };
    let rows: Vec<u16> = (0..4).map(|src| (mask >> (src * 4)) & 0xf).collect();
    let mut parts: Vec<(u16, u16)> = Vec::new(); // (src bits, dst bits)
    for (src, &dsts) in rows.iter().enumerate().filter(|(_, d)| **d != 0) {
        match parts.iter_mut().find(|(_, d)| *d == dsts) {
            Some(part) => part.0 |= 1 << src,
            None => parts.push((1 << src, dsts)),
        }
    }
    parts.into_iter().map(|(s, d)| format!("src {} × dst {}", names(s), names(d))).collect()
}
