//! The owned conntrack [`Event`] every source produces and every sink consumes,
//! and its conversion from the kernel program's [`EventRecord`]. `fields.rs`
//! lists its fields in the contract's order for the sink encoders;
//! `attached.rs` holds what enrichment attaches (GeoIP data, the process);
//! `time.rs` the clocks and RFC 3339 timestamps; `network.rs` the address
//! classes; `prefilter.rs` the kernel table the rules derive and the sources
//! write; `community_id.rs` the flow hash. The bottom layer: this module
//! imports no other module of the daemon.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
mod attached;
pub(crate) mod community_id;
pub(crate) mod fields;
pub(crate) mod network;
pub(crate) mod prefilter;
pub(crate) mod time;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use conntrackd_common::{present, EventRecord, Tuple, KIND_DESTROY, KIND_NEW, KIND_UPDATE};

pub(crate) use self::attached::{GeoInfo, Process, DST, SRC};

/// Conntrack event type (the event field `type`, README "Event fields").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    New,
    Update,
    Destroy,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::New => "NEW",
            EventType::Update => "UPDATE",
            EventType::Destroy => "DESTROY",
        }
    }
}

/// L4 protocol; only TCP and UDP events are ever logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// The IP protocol number (6, 17).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// One direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Endpoints {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Packet and byte counters of both directions (`nf_conntrack_acct=1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counters {
    pub orig_packets: u64,
    pub orig_bytes: u64,
    pub reply_packets: u64,
    pub reply_bytes: u64,
}

/// The task in whose context the kernel emitted the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Task {
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// NUL-padded command name; empty when CAP_PERFMON was not held.
    pub comm: [u8; 16],
}

impl Task {
    /// The command name, if captured and valid UTF-8.
    pub fn comm(&self) -> Option<&str> {
        let name = self.comm.split(|&b| b == 0).next().unwrap_or_default();
        (!name.is_empty()).then(|| std::str::from_utf8(name).ok()).flatten()
    }
}

/// One conntrack event, owned, ready for rules, enrichment and sinks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    /// Wall-clock time the kernel emitted the event, ns since the Unix epoch.
    pub time_ns: i128,
    pub kind: EventType,
    /// Conntrack id (`CTA_ID`), the `flow` field.
    pub flow: Option<u32>,
    pub protocol: Protocol,
    /// Original-direction tuple.
    pub orig: Endpoints,
    /// Reply-direction tuple (shows NAT).
    pub reply: Option<Endpoints>,
    /// Kernel `tcp_conntrack` state number, when the event carries it.
    pub tcp_state: Option<u8>,
    pub mark: Option<u32>,
    pub zone: Option<u16>,
    pub counters: Option<Counters>,
    pub task: Option<Task>,
    /// `CTA_TIMESTAMP_START`/`STOP`, ns since the Unix epoch (`nf_conntrack_timestamp=1`).
    pub start_ns: Option<u64>,
    pub stop_ns: Option<u64>,
    /// The watched network namespace (name, or inode), when more than one may be watched.
    pub netns: Option<std::sync::Arc<str>>,
    /// Netlink port of the process whose ctnetlink request caused the event; 0 = the kernel.
    pub portid: u32,
    /// Whether the original source is one of the namespace's own addresses
    /// (set by the source for NEW events; None = not known).
    pub local_origin: Option<bool>,
    /// The process that made the connection, when known for sure.
    pub process: Option<Arc<Process>>,
    /// GeoIP data of `orig.src` / `orig.dst`, attached after the rules kept the event.
    pub src_geo: Option<Arc<GeoInfo>>,
    pub dst_geo: Option<Arc<GeoInfo>>,
    /// The flow's Community ID of the original tuple, attached after the rules kept the event.
    pub community_id: Option<community_id::CommunityId>,
}

/// Why a record cannot become an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("event kind {0} is not NEW, UPDATE or DESTROY")]
    Kind(u8),
    #[error("L4 protocol {0} is neither TCP nor UDP")]
    Protocol(u8),
    #[error("address family {0} is neither AF_INET nor AF_INET6")]
    Family(u8),
    #[error("the original tuple is incomplete")]
    Tuple,
}

impl Event {
    /// An event with only its type, protocol and original tuple (tests,
    /// benchmarks, fuzzing); every optional field is absent.
    pub fn bare(kind: EventType, protocol: Protocol, orig: Endpoints) -> Self {
        Event {
            time_ns: 0,
            kind,
            flow: None,
            protocol,
            orig,
            reply: None,
            tcp_state: None,
            mark: None,
            zone: None,
            counters: None,
            task: None,
            start_ns: None,
            stop_ns: None,
            netns: None,
            portid: 0,
            local_origin: None,
            process: None,
            src_geo: None,
            dst_geo: None,
            community_id: None,
        }
    }

    /// Converts a kernel record; `monotonic_to_realtime_ns` turns its
    /// CLOCK_MONOTONIC stamp into wall-clock time.
    pub fn from_record(rec: &EventRecord, monotonic_to_realtime_ns: i128) -> Result<Self, RecordError> {
        let kind = match rec.kind {
            KIND_NEW => EventType::New,
            KIND_UPDATE => EventType::Update,
            KIND_DESTROY => EventType::Destroy,
            k => return Err(RecordError::Kind(k)),
        };
        let protocol = Protocol::from_number(rec.orig.proto).ok_or(RecordError::Protocol(rec.orig.proto))?;
        let v4 = match rec.family {
            2 => true,
            10 => false,
            f => return Err(RecordError::Family(f)),
        };
        let orig_bits = present::ORIG_SRC | present::ORIG_DST | present::ORIG_PORTS;
        if rec.present & orig_bits != orig_bits {
            return Err(RecordError::Tuple);
        }
        let reply_bits = present::REPLY_SRC | present::REPLY_DST | present::REPLY_PORTS;
        let has = |bit: u32| rec.present & bit != 0;
        Ok(Event {
            time_ns: i128::from(rec.ktime_ns) + monotonic_to_realtime_ns,
            kind,
            flow: has(present::ID).then(|| u32::from_be(rec.id)),
            protocol,
            orig: endpoints(&rec.orig, v4),
            reply: (rec.present & reply_bits == reply_bits).then(|| endpoints(&rec.reply, v4)),
            tcp_state: has(present::TCP_STATE).then_some(rec.tcp_state),
            mark: has(present::MARK).then(|| u32::from_be(rec.mark)),
            zone: has(present::ZONE).then(|| u16::from_be(rec.zone)),
            counters: (has(present::COUNTERS_ORIG) || has(present::COUNTERS_REPLY)).then(|| Counters {
                orig_packets: u64::from_be(rec.orig_packets),
                orig_bytes: u64::from_be(rec.orig_bytes),
                reply_packets: u64::from_be(rec.reply_packets),
                reply_bytes: u64::from_be(rec.reply_bytes),
            }),
            task: has(present::TASK).then(|| {
                let ((pid, tid), (gid, uid)) = (halves(rec.pid_tgid), halves(rec.uid_gid));
                Task { pid, tid, uid, gid, comm: if has(present::COMM) { rec.comm } else { [0; 16] } }
            }),
            start_ns: has(present::TIMESTAMP_START).then(|| u64::from_be(rec.start_ns)),
            stop_ns: has(present::TIMESTAMP_STOP).then(|| u64::from_be(rec.stop_ns)),
            netns: None,
            portid: rec.portid,
            local_origin: None,
            process: None,
            src_geo: None,
            dst_geo: None,
            community_id: None,
        })
    }
}

/// The (high, low) 32-bit halves of `pid_tgid` / `uid_gid`, as the kernel packs them.
#[allow(clippy::cast_possible_truncation)] // keeping the low 32 bits is the point
fn halves(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

fn endpoints(t: &Tuple, v4: bool) -> Endpoints {
    Endpoints { src: address(&t.src, v4), dst: address(&t.dst, v4), src_port: u16::from_be(t.src_port), dst_port: u16::from_be(t.dst_port) }
}

/// IPv4 is stored IPv4-mapped by the kernel program.
fn address(bytes: &[u8; 16], v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

/// Name of a kernel `tcp_conntrack` state, as the original prints it.
pub(crate) fn tcp_state_name(state: u8) -> &'static str {
    match state {
        0 => "NONE",
        1 => "SYN_SENT",
        2 => "SYN_RECV",
        3 => "ESTABLISHED",
        4 => "FIN_WAIT",
        5 => "CLOSE_WAIT",
        6 => "LAST_ACK",
        7 => "TIME_WAIT",
        8 => "CLOSE",
        9 => "SYN_SENT2",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record as the kernel program writes it for TCP 10.99.0.1:40002 -> 8.8.8.8:443.
    pub(crate) fn tcp_v4_record() -> EventRecord {
        let mut rec = EventRecord { kind: KIND_NEW, family: 2, ..Default::default() };
        rec.orig = Tuple { proto: 6, src_port: 40002u16.to_be(), dst_port: 443u16.to_be(), ..Default::default() };
        rec.orig.src[10..].copy_from_slice(&[0xff, 0xff, 10, 99, 0, 1]);
        rec.orig.dst[10..].copy_from_slice(&[0xff, 0xff, 8, 8, 8, 8]);
        rec.reply = Tuple { proto: 6, src_port: 443u16.to_be(), dst_port: 40002u16.to_be(), ..Default::default() };
        rec.reply.src = rec.orig.dst;
        rec.reply.dst = rec.orig.src;
        rec.id = 0x1234_5678u32.to_be();
        rec.tcp_state = 3;
        rec.mark = 42u32.to_be();
        rec.ktime_ns = 1_000;
        rec.pid_tgid = (4242u64 << 32) | 4243;
        rec.uid_gid = (7u64 << 32) | 1000;
        rec.comm[..4].copy_from_slice(b"curl");
        rec.present = present::ID
            | present::TASK
            | present::TCP_STATE
            | present::MARK
            | present::COMM
            | present::ORIG_SRC
            | present::ORIG_DST
            | present::ORIG_PROTO
            | present::ORIG_PORTS
            | present::REPLY_SRC
            | present::REPLY_DST
            | present::REPLY_PROTO
            | present::REPLY_PORTS;
        rec
    }

    /// The record's event with its task attributed, as the pipeline does for
    /// a locally originated NEW.
    pub(crate) fn tcp_v4_event(offset: i128) -> Event {
        let mut ev = Event::from_record(&tcp_v4_record(), offset).unwrap();
        let t = ev.task.unwrap();
        let process = Process { pid: t.pid, uid: t.uid, comm: t.comm().map(Into::into), ..Default::default() };
        ev.process = Some(Arc::new(process));
        ev
    }

    #[test]
    fn record_to_event() {
        let ev = Event::from_record(&tcp_v4_record(), 1_700_000_000_000_000_000).unwrap();
        assert_eq!(ev.kind, EventType::New);
        assert_eq!(ev.time_ns, 1_700_000_000_000_001_000);
        assert_eq!(ev.flow, Some(0x1234_5678));
        assert_eq!(ev.protocol, Protocol::Tcp);
        assert_eq!(ev.orig.src, "10.99.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(ev.orig.dst, "8.8.8.8".parse::<IpAddr>().unwrap());
        assert_eq!((ev.orig.src_port, ev.orig.dst_port), (40002, 443));
        assert_eq!(ev.reply.unwrap().src_port, 443);
        assert_eq!(ev.tcp_state, Some(3));
        assert_eq!(ev.mark, Some(42));
        assert_eq!(ev.zone, None);
        let task = ev.task.unwrap();
        assert_eq!((task.pid, task.tid, task.uid, task.gid), (4242, 4243, 1000, 7));
        assert_eq!(task.comm(), Some("curl"));
    }

    #[test]
    fn ipv6_record() {
        let mut rec = tcp_v4_record();
        rec.family = 10;
        rec.orig.src = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        rec.orig.dst = "2001:4860:4860::8888".parse::<Ipv6Addr>().unwrap().octets();
        let ev = Event::from_record(&rec, 0).unwrap();
        assert_eq!(ev.orig.dst, "2001:4860:4860::8888".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        let mut rec = tcp_v4_record();
        rec.orig.proto = 1;
        assert_eq!(Event::from_record(&rec, 0), Err(RecordError::Protocol(1)));
        let mut rec = tcp_v4_record();
        rec.family = 7;
        assert_eq!(Event::from_record(&rec, 0), Err(RecordError::Family(7)));
        let mut rec = tcp_v4_record();
        rec.kind = 9;
        assert_eq!(Event::from_record(&rec, 0), Err(RecordError::Kind(9)));
        let mut rec = tcp_v4_record();
        rec.present &= !present::ORIG_PORTS;
        assert_eq!(Event::from_record(&rec, 0), Err(RecordError::Tuple));
    }
}
