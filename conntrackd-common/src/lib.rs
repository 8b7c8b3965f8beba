//! Layouts shared by the kernel program (`conntrackd-ebpf`) and the daemon.
//!
//! Everything here is `#[repr(C)]` with explicit padding so the byte layout is
//! the same on both sides; the size of each type is checked at compile time.
//! Multi-byte values copied from ctnetlink attributes stay in network byte order
//! (big-endian) exactly as the kernel sent them: the kernel program only copies
//! bytes, the daemon converts. Fields the program computes itself (`ktime_ns`,
//! `pid_tgid`, `uid_gid`, `present`, `cookie`) are in host order.
#![no_std]
// Nothing here may panic on what the kernel wrote (the daemon decodes records with these types).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]

/// Name of the `BPF_MAP_TYPE_RINGBUF` carrying [`EventRecord`]s to userspace.
pub const MAP_EVENTS: &str = "EVENTS";
/// Name of the per-CPU `u64` array of [`Counter`]s.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Name of the LPM trie classifying destination addresses ([`ClassKey`] -> class).
pub const MAP_DST_CLASSES: &str = "DST_CLASSES";
/// Name of the LPM trie classifying source addresses ([`ClassKey`] -> class).
pub const MAP_SRC_CLASSES: &str = "SRC_CLASSES";
/// Name of the one-element array holding the [`Policy`].
pub const MAP_POLICY: &str = "POLICY";
/// Name of the read-only global that enables `bpf_get_current_comm` (needs CAP_PERFMON).
pub const GLOBAL_CAPTURE_COMM: &str = "CAPTURE_COMM";

/// Default ring buffer size (bytes); must be a power of two and a page multiple.
pub const DEFAULT_RING_BYTES: u32 = 4 << 20;
/// Upper bound of attribute-walk steps per message (one `bpf_loop`).
pub const MAX_WALK_STEPS: u32 = 192;
/// Entries in each class trie.
pub const CLASS_TRIE_ENTRIES: u32 = 64;

/// Event kinds, as stored in [`EventRecord::kind`] and as row index in
/// [`Policy::keep`].
pub const KIND_NEW: u8 = 0;
pub const KIND_UPDATE: u8 = 1;
pub const KIND_DESTROY: u8 = 2;

/// Network classes (docs/rules.md): trie values and class index in
/// [`Policy::keep`]. An address no trie prefix matches is [`CLASS_PUBLIC`].
pub const CLASS_LOCAL: u32 = 0;
pub const CLASS_PRIVATE: u32 = 1;
pub const CLASS_PUBLIC: u32 = 2;
pub const CLASS_MULTICAST: u32 = 3;

/// Bits of [`EventRecord::present`]: which attributes the message carried.
pub mod present {
    pub const ID: u32 = 1 << 0;
    pub const STATUS: u32 = 1 << 1;
    pub const MARK: u32 = 1 << 2;
    pub const ZONE: u32 = 1 << 3;
    pub const TCP_STATE: u32 = 1 << 4;
    pub const COUNTERS_ORIG: u32 = 1 << 5;
    pub const COUNTERS_REPLY: u32 = 1 << 6;
    pub const TIMESTAMP_START: u32 = 1 << 7;
    pub const TIMESTAMP_STOP: u32 = 1 << 8;
    pub const ORIG_SRC: u32 = 1 << 9;
    pub const ORIG_DST: u32 = 1 << 10;
    pub const ORIG_PROTO: u32 = 1 << 11;
    pub const ORIG_PORTS: u32 = 1 << 12;
    pub const REPLY_SRC: u32 = 1 << 13;
    pub const REPLY_DST: u32 = 1 << 14;
    pub const REPLY_PROTO: u32 = 1 << 15;
    pub const REPLY_PORTS: u32 = 1 << 16;
    pub const COMM: u32 = 1 << 17;
    /// `pid_tgid`/`uid_gid` were captured (the kernel program; never the netlink source).
    pub const TASK: u32 = 1 << 18;
}

/// Kernel-side counters: indexes into the per-CPU `COUNTERS` array.
///
/// Every message the filter sees ends in exactly one outcome, so
/// `Seen == sum(all other counters)`: nothing vanishes uncounted.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Messages the socket filter ran on.
    Seen = 0,
    /// Malformed messages (bad lengths, missing original tuple, nesting too deep).
    ParseError = 1,
    /// Messages with more attributes than [`MAX_WALK_STEPS`] allows.
    WalkLimit = 2,
    /// Netlink messages that are not conntrack NEW/UPDATE/DESTROY events.
    NotConntrack = 3,
    /// Dropped: no rule can log this event type.
    DropKind = 4,
    /// Dropped: not TCP/UDP, or no rule can log this protocol for this type.
    DropProtocol = 5,
    /// Dropped: no rule can log this destination class (for this source class).
    DropDstClass = 6,
    /// Dropped: no rule can log this source class.
    DropSrcClass = 7,
    /// Kept, but the ring buffer was full: the event is lost (and counted).
    RingFull = 8,
    /// Kept and written to the ring buffer.
    Submitted = 9,
}

/// Number of [`Counter`] slots.
pub const COUNTER_COUNT: u32 = 10;

impl Counter {
    /// All counters in index order.
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::Seen,
        Counter::ParseError,
        Counter::WalkLimit,
        Counter::NotConntrack,
        Counter::DropKind,
        Counter::DropProtocol,
        Counter::DropDstClass,
        Counter::DropSrcClass,
        Counter::RingFull,
        Counter::Submitted,
    ];

    /// Stable snake_case name, used in logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::ParseError => "parse_error",
            Counter::WalkLimit => "walk_limit",
            Counter::NotConntrack => "not_conntrack",
            Counter::DropKind => "dropped_kind",
            Counter::DropProtocol => "dropped_protocol",
            Counter::DropDstClass => "dropped_dst_class",
            Counter::DropSrcClass => "dropped_src_class",
            Counter::RingFull => "ring_full",
            Counter::Submitted => "submitted",
        }
    }
}

/// One direction's tuple (`CTA_TUPLE_ORIG` or `CTA_TUPLE_REPLY`). 40 bytes, align 2.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuple {
    /// Source address. IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`, bytes 10..12
    /// = 0xff) so one LPM trie serves both families.
    pub src: [u8; 16],
    /// Destination address, same encoding.
    pub dst: [u8; 16],
    /// `CTA_PROTO_SRC_PORT`, big-endian.
    pub src_port: u16,
    /// `CTA_PROTO_DST_PORT`, big-endian.
    pub dst_port: u16,
    /// `CTA_PROTO_NUM` (IPPROTO_*).
    pub proto: u8,
    /// Padding to a multiple of 2 with room to spare; always zero.
    pub _pad: [u8; 3],
}

/// One conntrack event as the kernel program saw it. 208 bytes, align 8.
///
/// The 8-byte fields come first so no implicit padding is needed; the program
/// zeroes the whole record with 8-byte stores before filling it, so absent
/// fields read as zero and [`EventRecord::present`] says which are real.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventRecord {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the filter ran.
    pub ktime_ns: u64, // offset 0
    /// `bpf_get_current_pid_tgid()`: tgid << 32 | pid of the current task.
    pub pid_tgid: u64, // 8
    /// `bpf_get_current_uid_gid()`: gid << 32 | uid of the current task.
    pub uid_gid: u64, // 16
    /// `CTA_COUNTERS_ORIG`/`CTA_COUNTERS_PACKETS`, big-endian.
    pub orig_packets: u64, // 24
    /// `CTA_COUNTERS_ORIG`/`CTA_COUNTERS_BYTES`, big-endian.
    pub orig_bytes: u64, // 32
    /// `CTA_COUNTERS_REPLY`/`CTA_COUNTERS_PACKETS`, big-endian.
    pub reply_packets: u64, // 40
    /// `CTA_COUNTERS_REPLY`/`CTA_COUNTERS_BYTES`, big-endian.
    pub reply_bytes: u64, // 48
    /// `CTA_TIMESTAMP_START` (CLOCK_REALTIME ns), big-endian.
    pub start_ns: u64, // 56
    /// `CTA_TIMESTAMP_STOP` (CLOCK_REALTIME ns), big-endian.
    pub stop_ns: u64, // 64
    /// `CTA_TUPLE_ORIG`.
    pub orig: Tuple, // 72
    /// `CTA_TUPLE_REPLY`.
    pub reply: Tuple, // 112
    /// `CTA_ID`, big-endian.
    pub id: u32, // 152
    /// `CTA_STATUS`, big-endian.
    pub status: u32, // 156
    /// `CTA_MARK`, big-endian.
    pub mark: u32, // 160
    /// Bit set of [`present`] flags, host order.
    pub present: u32, // 164
    /// `CTA_ZONE`, big-endian.
    pub zone: u16, // 168
    /// One of `KIND_*`.
    pub kind: u8, // 170
    /// `nfgenmsg.nfgen_family` (AF_INET = 2, AF_INET6 = 10).
    pub family: u8, // 171
    /// `CTA_PROTOINFO_TCP_STATE` (kernel `tcp_conntrack` enum).
    pub tcp_state: u8, // 172
    /// Explicit padding up to the 8-byte-aligned `comm`; always zero.
    pub _pad: [u8; 3], // 173
    /// `bpf_get_current_comm()`, NUL-padded; only with CAP_PERFMON.
    pub comm: [u8; 16], // 176
    /// `nlmsghdr.nlmsg_pid`: the netlink port of the process whose ctnetlink
    /// request caused the event (e.g. `conntrack -I`), 0 when the kernel
    /// itself did (host order).
    pub portid: u32, // 192
    /// Explicit padding up to the 8-byte-aligned `cookie`; always zero.
    pub _pad2: u32, // 196
    /// `bpf_get_socket_cookie()` of the socket the filter ran for (host
    /// order): the same value `getsockopt(SO_COOKIE)` gives for that socket,
    /// so one program attached to a socket in every watched namespace says
    /// which namespace each record came from. 0 from the netlink source,
    /// which knows its socket anyway.
    pub cookie: u64, // 200
}

/// Size of [`EventRecord`] in bytes.
pub const EVENT_RECORD_SIZE: usize = 208;
const _: () = assert!(core::mem::size_of::<Tuple>() == 40);
const _: () = assert!(core::mem::size_of::<EventRecord>() == EVENT_RECORD_SIZE);
const _: () = assert!(core::mem::align_of::<EventRecord>() == 8);

/// LPM trie key data: an IPv6 address, IPv4 as `::ffff:a.b.c.d` (prefix + 96).
pub type ClassKey = [u8; 16];

/// What the kernel program keeps, derived from the rules. One element in the
/// `POLICY` array. 32 bytes, no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `keep[kind * 2 + protocol]` (kind = `KIND_*`, protocol 0 = TCP, 1 = UDP)
    /// has bit `src_class * 4 + dst_class` set when events of that combination
    /// may be logged. Other protocols are never kept.
    pub keep: [u32; 6],
    /// Force a userspace wakeup each time the bytes waiting in the ring pass a
    /// multiple of this; other records are written with BPF_RB_NO_WAKEUP and
    /// the daemon's timer (or the next wakeup) drains them.
    pub wakeup_bytes: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}

/// Row index of a protocol in [`Policy::keep`], or `None` when never kept.
pub const fn protocol_index(proto: u8) -> Option<u32> {
    match proto {
        6 => Some(0),
        17 => Some(1),
        _ => None,
    }
}

const _: () = assert!(core::mem::size_of::<Policy>() == 32);

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, `#[repr(C)]`, no implicit padding (asserted above).
    unsafe impl aya::Pod for super::EventRecord {}
    unsafe impl aya::Pod for super::Policy {}
}
