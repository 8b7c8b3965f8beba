//! Known containers read whole, in one walk step, when their layout is
//! exactly the one `ctnetlink_conntrack_event` writes: every header at its
//! offset with its length and type, nothing else inside. The result is the
//! one the attribute-by-attribute walk gives for the same bytes (the fields,
//! the `present` bits); any other layout (other families, extra or unknown
//! attributes, other sizes, bytes past the scratch copy) goes through that
//! walk instead, so this is only a shortcut, never a different reading.
use conntrackd_common::{present, EventRecord, Tuple};

use crate::{
    msg::Msg,
    walk::{CTX_COUNTERS_ORIG, CTX_COUNTERS_REPLY, CTX_ORIG, CTX_PROTOINFO, CTX_REPLY, CTX_TIMESTAMP},
    AF_INET,
};

/// A header without the NLA_F_NESTED / NLA_F_NET_BYTEORDER flags, which the walk ignores too.
const HDR_MASK: u32 = 0x3fff_ffff;

/// A header as `u32` (little-endian host): length, then type.
const fn h(len: u32, ty: u32) -> u32 {
    len | ty << 16
}

/// A layout: (offset from the container's header, header there).
type Layout = [(u32, u32)];

/// CTA_TUPLE_* of IPv4 (52 bytes): IP { V4_SRC, V4_DST }, PROTO { NUM, SRC_PORT, DST_PORT }.
const TUPLE_V4: [(u32, u32); 7] = [(4, h(20, 1)), (8, h(8, 1)), (16, h(8, 2)), (24, h(28, 2)), (28, h(5, 1)), (36, h(6, 2)), (44, h(6, 3))];
/// CTA_TUPLE_* of IPv6 (76 bytes): IP { V6_SRC, V6_DST }, PROTO { NUM, SRC_PORT, DST_PORT }.
const TUPLE_V6: [(u32, u32); 7] = [(4, h(44, 1)), (8, h(20, 3)), (28, h(20, 4)), (48, h(28, 2)), (52, h(5, 1)), (60, h(6, 2)), (68, h(6, 3))];
/// CTA_COUNTERS_* { PACKETS, BYTES } and CTA_TIMESTAMP { START, STOP } (28 bytes).
const TWO_U64: [(u32, u32); 2] = [(4, h(12, 1)), (16, h(12, 2))];
/// CTA_PROTOINFO { TCP { STATE } } (16 bytes; DESTROY events).
const TCP_STATE_ONLY: [(u32, u32); 2] = [(4, h(12, 1)), (8, h(5, 1))];
/// CTA_PROTOINFO { TCP { STATE, WSCALE_ORIGINAL, WSCALE_REPLY, FLAGS_ORIGINAL, FLAGS_REPLY } } (48 bytes).
const TCP_FULL: [(u32, u32); 6] = [(4, h(44, 1)), (8, h(5, 1)), (16, h(5, 2)), (24, h(5, 3)), (32, h(6, 4)), (40, h(6, 5))];

/// Reads the container `ctx` whose header is at `off` (total length `len`)
/// into `rec` if it has its kernel layout; `false` leaves `rec` untouched.
#[inline(always)]
pub(crate) fn read(rec: &mut EventRecord, msg: &Msg, ctx: u32, off: u32, len: u32) -> bool {
    if !msg.buffered(off, len) {
        return false;
    }
    match ctx {
        CTX_ORIG => tuple(msg, off, len, rec.family, &mut rec.orig, &mut rec.present, 0),
        CTX_REPLY => tuple(msg, off, len, rec.family, &mut rec.reply, &mut rec.present, 4),
        CTX_COUNTERS_ORIG => two_u64(msg, off, len, [&mut rec.orig_packets, &mut rec.orig_bytes], &mut rec.present, present::COUNTERS_ORIG),
        CTX_COUNTERS_REPLY => two_u64(msg, off, len, [&mut rec.reply_packets, &mut rec.reply_bytes], &mut rec.present, present::COUNTERS_REPLY),
        CTX_TIMESTAMP => {
            let bits = present::TIMESTAMP_START | present::TIMESTAMP_STOP;
            two_u64(msg, off, len, [&mut rec.start_ns, &mut rec.stop_ns], &mut rec.present, bits)
        }
        CTX_PROTOINFO => {
            let shape = (len == 16 && matches(msg, off, &TCP_STATE_ONLY)) || (len == 48 && matches(msg, off, &TCP_FULL));
            if shape {
                msg.copy_buffered(off + 12, &mut rec.tcp_state, 1);
                rec.present |= present::TCP_STATE;
            }
            shape
        }
        _ => false,
    }
}

/// Whether every header of `layout` is where it says, inside a container at `off`.
#[inline(always)]
fn matches(msg: &Msg, off: u32, layout: &Layout) -> bool {
    layout.iter().all(|&(at, want)| msg.word(off + at) & HDR_MASK == want)
}

/// A tuple of the message's family; IPv4 is stored IPv4-mapped, as the walk does.
#[inline(always)]
fn tuple(msg: &Msg, off: u32, len: u32, family: u8, t: &mut Tuple, bits: &mut u32, shift: u32) -> bool {
    if family == AF_INET {
        if len != 52 || !matches(msg, off, &TUPLE_V4) {
            return false;
        }
        t.src[10] = 0xff;
        t.src[11] = 0xff;
        t.dst[10] = 0xff;
        t.dst[11] = 0xff;
        msg.copy_buffered(off + 12, t.src[12..].as_mut_ptr(), 4);
        msg.copy_buffered(off + 20, t.dst[12..].as_mut_ptr(), 4);
        ports(msg, off + 28, t);
    } else {
        if len != 76 || !matches(msg, off, &TUPLE_V6) {
            return false;
        }
        msg.copy_buffered(off + 12, t.src.as_mut_ptr(), 16);
        msg.copy_buffered(off + 32, t.dst.as_mut_ptr(), 16);
        ports(msg, off + 52, t);
    }
    *bits |= (present::ORIG_SRC | present::ORIG_DST | present::ORIG_PROTO | present::ORIG_PORTS) << shift;
    true
}

/// CTA_PROTO_NUM, SRC_PORT and DST_PORT, the first header at `off`.
#[inline(always)]
fn ports(msg: &Msg, off: u32, t: &mut Tuple) {
    msg.copy_buffered(off + 4, &mut t.proto, 1);
    msg.copy_buffered(off + 12, (&mut t.src_port as *mut u16).cast(), 2);
    msg.copy_buffered(off + 20, (&mut t.dst_port as *mut u16).cast(), 2);
}

/// A container of two 8-byte leaves, types 1 and 2.
#[inline(always)]
fn two_u64(msg: &Msg, off: u32, len: u32, dst: [&mut u64; 2], bits: &mut u32, bit: u32) -> bool {
    if len != 28 || !matches(msg, off, &TWO_U64) {
        return false;
    }
    let [first, second] = dst;
    msg.copy_buffered(off + 8, (first as *mut u64).cast(), 8);
    msg.copy_buffered(off + 20, (second as *mut u64).cast(), 8);
    *bits |= bit;
    true
}
