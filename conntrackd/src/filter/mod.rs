//! Which events are logged. Until the rule languages land, the policy is fixed
//! to the built-in default rules (`log protocol tcp and destination network
//! public`, `drop any`): NEW, UPDATE and DESTROY of TCP connections to PUBLIC
//! destinations.
//! [`Prefilter`] is what the kernel program enforces through its maps; the
//! daemon applies the same test in userspace ([`Prefilter::keeps`]).
pub(crate) mod network;

use conntrackd_common::{Policy, KIND_DESTROY, KIND_NEW, KIND_UPDATE};

use crate::event::{Event, EventType, Protocol};
use network::NetworkClass;

/// A coarse filter the kernel can apply before an event reaches userspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prefilter {
    /// L4 protocol numbers to keep.
    pub protocols: Vec<u8>,
    pub kinds: Vec<EventType>,
    pub dst_classes: Vec<NetworkClass>,
    pub src_classes: Vec<NetworkClass>,
}

impl Prefilter {
    /// The fixed policy: TCP, any kind, to PUBLIC destinations.
    pub fn public_tcp() -> Self {
        Self {
            protocols: vec![6],
            kinds: vec![EventType::New, EventType::Update, EventType::Destroy],
            dst_classes: vec![NetworkClass::Public],
            src_classes: NetworkClass::ALL.to_vec(),
        }
    }

    /// The kernel-side policy value; `wakeup_bytes` comes from the source config.
    pub fn policy(&self, wakeup_bytes: u32) -> Policy {
        let kind_bit = |k: &EventType| match k {
            EventType::New => 1 << KIND_NEW,
            EventType::Update => 1 << KIND_UPDATE,
            EventType::Destroy => 1 << KIND_DESTROY,
        };
        Policy {
            kinds: self.kinds.iter().map(kind_bit).fold(0, |a, b| a | b),
            dst_classes: class_bits(&self.dst_classes),
            src_classes: class_bits(&self.src_classes),
            wakeup_bytes,
        }
    }

    /// The same decision in userspace.
    pub fn keeps(&self, ev: &Event) -> bool {
        let proto = match ev.protocol {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        };
        self.protocols.contains(&proto)
            && self.kinds.contains(&ev.kind)
            && self.dst_classes.contains(&NetworkClass::of(ev.orig.dst))
            && self.src_classes.contains(&NetworkClass::of(ev.orig.src))
    }
}

impl std::fmt::Display for Prefilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |names: Vec<&str>| names.join(",");
        write!(
            f,
            "protocols={} kinds={} dst={} src={}",
            join(self.protocols.iter().map(|&p| Protocol::from_number(p).map_or("other", Protocol::as_str)).collect()),
            join(self.kinds.iter().map(|k| k.as_str()).collect()),
            join(self.dst_classes.iter().map(|c| c.as_str()).collect()),
            join(self.src_classes.iter().map(|c| c.as_str()).collect()),
        )
    }
}

fn class_bits(classes: &[NetworkClass]) -> u32 {
    classes.iter().map(|c| 1u32 << c.kernel_value()).fold(0, |a, b| a | b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::tcp_v4_record;

    #[test]
    fn fixed_policy_bits() {
        let p = Prefilter::public_tcp().policy(4096);
        assert_eq!(p.kinds, 0b111);
        assert_eq!(p.dst_classes, 1 << conntrackd_common::CLASS_PUBLIC);
        assert_eq!(p.src_classes, 0b1111);
        assert_eq!(p.wakeup_bytes, 4096);
    }

    #[test]
    fn userspace_decision_matches_policy() {
        let f = Prefilter::public_tcp();
        let mut ev = Event::from_record(&tcp_v4_record(), 0).unwrap();
        assert!(f.keeps(&ev));
        ev.protocol = Protocol::Udp;
        assert!(!f.keeps(&ev));
        ev.protocol = Protocol::Tcp;
        ev.orig.dst = "192.168.1.1".parse().unwrap();
        assert!(!f.keeps(&ev));
    }
}
