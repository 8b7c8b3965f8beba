//! Builds ctnetlink event messages byte by byte, laid out as the kernel's
//! `ctnetlink_conntrack_event` writes them, for tests of both decoders.
use std::net::IpAddr;

use crate::event::EventType;

const NLA_F_NESTED: u16 = 0x8000;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

/// A netlink message under construction: nlmsghdr, nfgenmsg, attributes.
pub(crate) struct MsgBuilder {
    buf: Vec<u8>,
    open: Vec<usize>,
}

impl MsgBuilder {
    pub fn new(msg_type: u16, flags: u16, family: u8) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by build()
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&1u32.to_ne_bytes()); // seq
        buf.extend_from_slice(&0u32.to_ne_bytes()); // portid
        buf.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, version, res_id
        Self { buf, open: Vec::new() }
    }

    /// A leaf attribute, padded to 4 bytes.
    pub fn attr(&mut self, ty: u16, payload: &[u8]) -> &mut Self {
        let len = 4 + payload.len() as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    /// Opens a nested attribute; close it with [`MsgBuilder::end`].
    pub fn nest(&mut self, ty: u16) -> &mut Self {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub fn end(&mut self) -> &mut Self {
        let start = self.open.pop().expect("end() without nest()");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    pub fn build(&mut self) -> Vec<u8> {
        assert!(self.open.is_empty(), "unclosed nest");
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf.clone()
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

/// What a test event carries.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub kind: EventType,
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub id: u32,
    pub status: u32,
    pub mark: Option<u32>,
    pub zone: Option<u16>,
    pub tcp_state: Option<u8>,
    /// (orig packets, orig bytes, reply packets, reply bytes)
    pub counters: Option<(u64, u64, u64, u64)>,
    pub timestamp: Option<(u64, u64)>,
    /// CTA_COUNTERS_PAD / CTA_TIMESTAMP_PAD before 64-bit values, as kernels
    /// of architectures without efficient unaligned access write them (x86
    /// and arm64 write none).
    pub pad_64bit: bool,
    /// CTA_PROTOINFO_TCP with the state only, as in DESTROY events (else also
    /// window scales and flags, as in NEW and UPDATE).
    pub tcp_state_only: bool,
    /// An unknown attribute at the end of every container, which the kernel
    /// program must skip (and so read every container attribute by attribute).
    pub unknown_in_containers: bool,
}

impl Spec {
    pub fn tcp(kind: EventType, src: &str, dst: &str) -> Self {
        Self {
            kind,
            proto: 6,
            src: src.parse().expect("src"),
            dst: dst.parse().expect("dst"),
            sport: 40002,
            dport: 443,
            id: 0xdead_beef,
            status: 0x18e,
            mark: None,
            zone: None,
            tcp_state: Some(3),
            counters: None,
            timestamp: None,
            pad_64bit: true,
            tcp_state_only: false,
            unknown_in_containers: false,
        }
    }

    /// The message as the kernel would send it.
    pub fn message(&self) -> Vec<u8> {
        let (msg, flags) = match self.kind {
            EventType::New => (0, NLM_F_CREATE | NLM_F_EXCL),
            EventType::Update => (0, 0),
            EventType::Destroy => (2, 0),
        };
        let family = if self.src.is_ipv4() { 2 } else { 10 };
        let mut b = MsgBuilder::new(1 << 8 | msg, flags, family);
        let x = self.unknown_in_containers;
        tuple(&mut b, x, 1, self.src, self.dst, self.proto, self.sport, self.dport);
        tuple(&mut b, x, 2, self.dst, self.src, self.proto, self.dport, self.sport);
        if let Some(zone) = self.zone {
            b.attr(18, &zone.to_be_bytes());
        }
        b.attr(12, &self.id.to_be_bytes()).attr(3, &self.status.to_be_bytes());
        if let Some((op, ob, rp, rb)) = self.counters {
            counters(&mut b, self.pad_64bit, x, 9, op, ob);
            counters(&mut b, self.pad_64bit, x, 10, rp, rb);
        }
        if let Some((start, stop)) = self.timestamp {
            b.nest(20);
            if self.pad_64bit {
                b.attr(3, &[]); // CTA_TIMESTAMP_PAD
            }
            b.attr(1, &start.to_be_bytes()).attr(2, &stop.to_be_bytes());
            unknown(&mut b, x).end();
        }
        b.attr(7, &120u32.to_be_bytes()); // CTA_TIMEOUT: not decoded, skipped
        if let Some(state) = self.tcp_state {
            b.nest(4).nest(1).attr(1, &[state]);
            if !self.tcp_state_only {
                b.attr(2, &[7]).attr(3, &[7]).attr(4, &[0, 0]).attr(5, &[0, 0]);
            }
            unknown(&mut b, x).end();
            unknown(&mut b, x).end();
        }
        if let Some(mark) = self.mark {
            b.attr(8, &mark.to_be_bytes());
        }
        b.attr(11, &1u32.to_be_bytes()); // CTA_USE: skipped
        b.build()
    }
}

/// An attribute no container of an event defines (CTA_TUPLE_*, CTA_PROTOINFO_TCP_*, ...), when `on`.
fn unknown(b: &mut MsgBuilder, on: bool) -> &mut MsgBuilder {
    if on {
        b.attr(30, &[1, 2, 3]);
    }
    b
}

#[allow(clippy::too_many_arguments)]
fn tuple(b: &mut MsgBuilder, x: bool, ty: u16, src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) {
    b.nest(ty).nest(1);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.attr(1, &s.octets()).attr(2, &d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.attr(3, &s.octets()).attr(4, &d.octets()),
        _ => panic!("mixed address families"),
    };
    unknown(b, x).end().nest(2).attr(1, &[proto]).attr(2, &sport.to_be_bytes()).attr(3, &dport.to_be_bytes());
    unknown(b, x).end();
    unknown(b, x).end();
}

fn counters(b: &mut MsgBuilder, pad: bool, x: bool, ty: u16, packets: u64, bytes: u64) {
    b.nest(ty);
    if pad {
        b.attr(5, &[]); // CTA_COUNTERS_PAD, as nla_put_be64 adds for alignment
    }
    b.attr(1, &packets.to_be_bytes()).attr(2, &bytes.to_be_bytes());
    unknown(b, x).end();
}
