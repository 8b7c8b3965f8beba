//! Userspace decoding of one ctnetlink event message with
//! `netlink-packet-netfilter`, into the same [`EventRecord`] the kernel program
//! writes, so both sources turn into identical events. Attributes the crate
//! leaves raw (CTA_ID, CTA_ZONE, counters, timestamps) are decoded here.
use std::net::IpAddr;

use conntrackd_common::{present, Counter, EventRecord, Tuple, KIND_DESTROY, KIND_NEW, KIND_UPDATE};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, Nla, NlasIterator, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_netfilter::{
    conntrack::{ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Tuple as CtTuple},
    NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};

use crate::event::{prefilter::Prefilter, EventType};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TIMESTAMP: u16 = 20;

/// Decodes and pre-filters one message. `Err` is the outcome counter of a
/// message that yields no record, exactly as the kernel program counts it.
pub(crate) fn decode(bytes: &[u8], prefilter: &Prefilter) -> Result<EventRecord, Counter> {
    // Only ctnetlink messages reach the crate: its parsers of other
    // subsystems (e.g. nftables) can panic on malformed input.
    let msg_type = bytes.get(4..6).and_then(|b| b.try_into().ok()).map(u16::from_ne_bytes).ok_or(Counter::ParseError)?;
    if msg_type >> 8 != NFNL_SUBSYS_CTNETLINK {
        return Err(Counter::NotConntrack);
    }
    // A panic in the third-party parser is a malformed message, not a dead daemon.
    let parsed = std::panic::catch_unwind(|| NetlinkMessage::<NetfilterMessage>::deserialize(bytes));
    let msg = parsed.map_err(|_| Counter::ParseError)?.map_err(|_| Counter::ParseError)?;
    let flags = msg.header.flags;
    let portid = msg.header.port_number;
    let NetlinkPayload::InnerMessage(nf) = msg.payload else { return Err(Counter::NotConntrack) };
    let (kind, attrs) = match nf.inner {
        NetfilterMessageInner::Conntrack(ConntrackMessage::Delete(attrs)) => (KIND_DESTROY, attrs),
        NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)) if flags & (NLM_F_CREATE | NLM_F_EXCL) == NLM_F_CREATE | NLM_F_EXCL => (KIND_NEW, attrs),
        NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)) => (KIND_UPDATE, attrs),
        _ => return Err(Counter::NotConntrack),
    };
    let family = match nf.header.family {
        NetfilterProtoFamily::IPv4 => 2,
        NetfilterProtoFamily::IPv6 => 10,
        _ => return Err(Counter::ParseError),
    };
    let event_type = event_type(kind);
    if !prefilter.wants_kind(event_type) {
        return Err(Counter::DropKind);
    }
    let mut rec = EventRecord { kind, family, portid, ..EventRecord::default() };
    for attr in &attrs {
        attribute(&mut rec, attr)?;
    }
    let need = present::ORIG_SRC | present::ORIG_DST | present::ORIG_PROTO;
    if rec.present & need != need {
        return Err(Counter::ParseError);
    }
    let (src, dst) = (address(&rec.orig.src, family), address(&rec.orig.dst, family));
    // In the kernel program's order: protocol, ports present, source class, destination class.
    let row = prefilter.row(event_type, rec.orig.proto)?;
    if rec.present & present::ORIG_PORTS == 0 {
        return Err(Counter::ParseError);
    }
    Prefilter::classes(row, src, dst)?;
    Ok(rec)
}

fn event_type(kind: u8) -> EventType {
    match kind {
        KIND_NEW => EventType::New,
        KIND_UPDATE => EventType::Update,
        _ => EventType::Destroy,
    }
}

fn address(bytes: &[u8; 16], family: u8) -> IpAddr {
    if family == 2 {
        IpAddr::from([bytes[12], bytes[13], bytes[14], bytes[15]])
    } else {
        IpAddr::from(*bytes)
    }
}

fn attribute(rec: &mut EventRecord, attr: &ConntrackAttribute) -> Result<(), Counter> {
    match attr {
        ConntrackAttribute::CtaTupleOrig(parts) => tuple(&mut rec.orig, &mut rec.present, 0, rec.family, parts),
        ConntrackAttribute::CtaTupleReply(parts) => tuple(&mut rec.reply, &mut rec.present, 4, rec.family, parts),
        ConntrackAttribute::CtaProtoInfo(infos) => {
            for info in infos {
                if let ProtoInfo::TCP(tcp) = info {
                    for t in tcp {
                        if let ProtoInfoTCP::State(state) = t {
                            rec.tcp_state = *state;
                            rec.present |= present::TCP_STATE;
                        }
                    }
                }
            }
            Ok(())
        }
        ConntrackAttribute::CtaStatus(status) => {
            rec.status = status.bits().to_be();
            rec.present |= present::STATUS;
            Ok(())
        }
        ConntrackAttribute::CtaMark(mark) => {
            rec.mark = mark.to_be();
            rec.present |= present::MARK;
            Ok(())
        }
        ConntrackAttribute::Other(nla) => raw(rec, nla.kind(), nla_value(nla)),
        _ => Ok(()),
    }
}

fn nla_value(nla: &netlink_packet_core::DefaultNla) -> Vec<u8> {
    let mut buf = vec![0u8; nla.value_len()];
    nla.emit_value(&mut buf);
    buf
}

/// Attributes the crate leaves raw; sizes are checked like the kernel program does.
fn raw(rec: &mut EventRecord, kind: u16, value: Vec<u8>) -> Result<(), Counter> {
    match kind & 0x3fff {
        CTA_ID => {
            rec.id = u32::from_ne_bytes(exact(&value)?);
            rec.present |= present::ID;
        }
        CTA_ZONE => {
            rec.zone = u16::from_ne_bytes(exact(&value)?);
            rec.present |= present::ZONE;
        }
        CTA_COUNTERS_ORIG | CTA_COUNTERS_REPLY => {
            let orig = kind & 0x3fff == CTA_COUNTERS_ORIG;
            for (ty, v) in nested(&value)? {
                let field = match (orig, ty) {
                    (true, 1) => &mut rec.orig_packets,
                    (true, 2) => &mut rec.orig_bytes,
                    (false, 1) => &mut rec.reply_packets,
                    (false, 2) => &mut rec.reply_bytes,
                    _ => continue,
                };
                *field = u64::from_ne_bytes(exact(&v)?);
                rec.present |= if orig { present::COUNTERS_ORIG } else { present::COUNTERS_REPLY };
            }
        }
        CTA_TIMESTAMP => {
            for (ty, v) in nested(&value)? {
                match ty {
                    1 => {
                        rec.start_ns = u64::from_ne_bytes(exact(&v)?);
                        rec.present |= present::TIMESTAMP_START;
                    }
                    2 => {
                        rec.stop_ns = u64::from_ne_bytes(exact(&v)?);
                        rec.present |= present::TIMESTAMP_STOP;
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The children of a nested attribute as (type, value).
fn nested(value: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, Counter> {
    NlasIterator::new(value).map(|nla| nla.map(|n| (n.kind() & 0x3fff, n.value().to_vec())).map_err(|_| Counter::ParseError)).collect()
}

/// The raw (network-order) bytes of a fixed-size value.
fn exact<const N: usize>(v: &[u8]) -> Result<[u8; N], Counter> {
    v.try_into().map_err(|_| Counter::ParseError)
}

/// `shift` moves ORIG_* presence bits to REPLY_* bits.
fn tuple(t: &mut Tuple, bits: &mut u32, shift: u32, family: u8, parts: &[CtTuple]) -> Result<(), Counter> {
    for part in parts {
        match part {
            CtTuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => set_addr(&mut t.src, *a, family, bits, present::ORIG_SRC << shift)?,
                        IPTuple::DestinationAddress(a) => set_addr(&mut t.dst, *a, family, bits, present::ORIG_DST << shift)?,
                        _ => {}
                    }
                }
            }
            CtTuple::Proto(protos) => {
                for p in protos {
                    match p {
                        ProtoTuple::Protocol(proto) => {
                            t.proto = u8::from(*proto);
                            *bits |= present::ORIG_PROTO << shift;
                        }
                        ProtoTuple::SourcePort(port) => {
                            t.src_port = port.to_be();
                            *bits |= present::ORIG_PORTS << shift;
                        }
                        ProtoTuple::DestinationPort(port) => {
                            t.dst_port = port.to_be();
                            *bits |= present::ORIG_PORTS << shift;
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Stores an address IPv4-mapped like the kernel program; it must match the family.
fn set_addr(slot: &mut [u8; 16], addr: IpAddr, family: u8, bits: &mut u32, bit: u32) -> Result<(), Counter> {
    match (addr, family) {
        (IpAddr::V4(v4), 2) => *slot = v4.to_ipv6_mapped().octets(),
        (IpAddr::V6(v6), 10) => *slot = v6.octets(),
        _ => return Err(Counter::ParseError),
    }
    *bits |= bit;
    Ok(())
}
