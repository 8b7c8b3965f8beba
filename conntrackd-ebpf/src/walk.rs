//! Flat walk over a ctnetlink message's attributes, one attribute (or one
//! container exit) per `bpf_loop` step.
//!
//! Nested attributes are entered by pushing `(container, end)` on a small stack
//! instead of recursing, so the verifier sees one short loop body. Attributes
//! we do not know are skipped by length; attributes we know must have exactly
//! the payload size the UAPI gives them, or the message is malformed. When the
//! original tuple closes, the pre-filter runs and may stop the walk early.
//!
//! The message is read from the per-CPU scratch (see `msg.rs`), where the
//! program copies it with one helper call, not with a helper call per
//! attribute. Known containers in exactly the kernel's layout are read whole,
//! in one step (see `whole.rs`).
use aya_ebpf::{bindings::__sk_buff, maps::lpm_trie::Key};
use conntrackd_common::{present, protocol_index, Counter, EventRecord, Tuple, CLASS_PUBLIC};

use crate::{
    msg::{Msg, BUF_BYTES, BUF_SLACK},
    whole, AF_INET, DST_CLASSES, POLICY, SRC_CLASSES,
};

/// Copies a fixed-size big-endian value whose payload length must match exactly.
macro_rules! copy {
    ($msg:expr, $off:expr, $plen:expr, $field:expr, $present:expr, $bit:expr) => {{
        let size = core::mem::size_of_val(&$field) as u32;
        if $plen != size {
            Err(Counter::ParseError)
        } else {
            $msg.copy($off, (&mut $field as *mut _ as *mut u8), size)?;
            $present |= $bit;
            Ok(())
        }
    }};
}

/// Deepest container nesting we follow (top -> tuple -> ip/proto is 2).
const MAX_DEPTH: usize = 4;

// Walk contexts: which container the current attribute sits in.
pub(crate) const CTX_TOP: u32 = 0;
pub(crate) const CTX_ORIG: u32 = 1;
pub(crate) const CTX_REPLY: u32 = 2;
pub(crate) const CTX_ORIG_IP: u32 = 3;
pub(crate) const CTX_ORIG_PROTO: u32 = 4;
pub(crate) const CTX_REPLY_IP: u32 = 5;
pub(crate) const CTX_REPLY_PROTO: u32 = 6;
pub(crate) const CTX_PROTOINFO: u32 = 7;
pub(crate) const CTX_PROTOINFO_TCP: u32 = 8;
pub(crate) const CTX_COUNTERS_ORIG: u32 = 9;
pub(crate) const CTX_COUNTERS_REPLY: u32 = 10;
pub(crate) const CTX_TIMESTAMP: u32 = 11;

// linux/netfilter/nfnetlink_conntrack.h
const CTA_TUPLE_ORIG: u32 = 1;
const CTA_TUPLE_REPLY: u32 = 2;
const CTA_STATUS: u32 = 3;
const CTA_PROTOINFO: u32 = 4;
const CTA_MARK: u32 = 8;
const CTA_COUNTERS_ORIG: u32 = 9;
const CTA_COUNTERS_REPLY: u32 = 10;
const CTA_ID: u32 = 12;
const CTA_ZONE: u32 = 18;
const CTA_TIMESTAMP: u32 = 20;
const CTA_TUPLE_IP: u32 = 1;
const CTA_TUPLE_PROTO: u32 = 2;
const CTA_IP_V4_SRC: u32 = 1;
const CTA_IP_V4_DST: u32 = 2;
const CTA_IP_V6_SRC: u32 = 3;
const CTA_IP_V6_DST: u32 = 4;
const CTA_PROTO_NUM: u32 = 1;
const CTA_PROTO_SRC_PORT: u32 = 2;
const CTA_PROTO_DST_PORT: u32 = 3;
const CTA_PROTOINFO_TCP: u32 = 1;
const CTA_PROTOINFO_TCP_STATE: u32 = 1;
const CTA_COUNTERS_PACKETS: u32 = 1;
const CTA_COUNTERS_BYTES: u32 = 2;
const CTA_TIMESTAMP_START: u32 = 1;
const CTA_TIMESTAMP_STOP: u32 = 2;

const STATE_RUNNING: u32 = 0;
const STATE_DONE: u32 = 1;
const STATE_FAILED: u32 = 2;

/// The `bpf_loop` callback context, on the caller's stack.
#[repr(C)]
pub(crate) struct WalkCtx {
    pub skb: *mut __sk_buff,
    pub scratch: *mut Scratch,
}

/// Per-CPU scratch: the record under construction plus the walk state.
#[repr(C)]
pub(crate) struct Scratch {
    pub rec: EventRecord,
    offset: u32,
    end: u32,
    depth: u32,
    state: u32,
    verdict: u32,
    orig_done: u32,
    /// How many bytes of the message `buf` holds (at most [`BUF_BYTES`]).
    buffered: u32,
    _pad: u32,
    stack_ctx: [u32; MAX_DEPTH],
    stack_end: [u32; MAX_DEPTH],
    /// The message's first `buffered` bytes (8-aligned: see the layout assert).
    pub buf: [u8; BUF_BYTES as usize + BUF_SLACK],
}

const _: () = assert!(core::mem::offset_of!(Scratch, buf) % 8 == 0);

/// How a walk ended.
pub(crate) enum Outcome {
    Keep,
    Drop(Counter),
}

impl Scratch {
    /// Zeroes the record with 8-byte stores (a memset could become byte stores
    /// that the verifier refuses without CAP_PERFMON) and starts a new walk.
    #[inline(always)]
    pub fn reset(&mut self, offset: u32, end: u32) {
        let words = (&mut self.rec as *mut EventRecord).cast::<u64>();
        for i in 0..(core::mem::size_of::<EventRecord>() / 8) {
            // SAFETY: `EventRecord` is 8-aligned and a multiple of 8 bytes.
            unsafe { core::ptr::write_volatile(words.add(i), 0) };
        }
        // Volatile so LLVM does not merge these into a memset call.
        // SAFETY: plain field writes through &mut self.
        unsafe {
            core::ptr::write_volatile(&mut self.offset, offset);
            core::ptr::write_volatile(&mut self.end, end);
            core::ptr::write_volatile(&mut self.depth, 0);
            core::ptr::write_volatile(&mut self.state, STATE_RUNNING);
            core::ptr::write_volatile(&mut self.verdict, 0);
            core::ptr::write_volatile(&mut self.orig_done, 0);
            core::ptr::write_volatile(&mut self.buffered, 0);
        }
    }

    /// Records how many bytes of the message `buf` now holds.
    #[inline(always)]
    pub fn set_buffered(&mut self, len: u32) {
        self.buffered = len;
    }

    /// The verdict once the loop has returned.
    pub fn outcome(&self) -> Outcome {
        match self.state {
            STATE_DONE if self.orig_done != 0 => Outcome::Keep,
            STATE_DONE => Outcome::Drop(Counter::ParseError),
            STATE_FAILED => Outcome::Drop(counter_from(self.verdict)),
            _ => Outcome::Drop(Counter::WalkLimit),
        }
    }

    /// One loop step: leave a finished container, or handle one attribute.
    /// `Ok(true)` continues the walk, `Ok(false)` ends it.
    #[inline(always)]
    fn advance(&mut self, skb: *mut __sk_buff) -> Result<bool, Counter> {
        let depth = self.depth as usize;
        let (parent, parent_end) = if depth == 0 {
            (CTX_TOP, self.end)
        } else {
            let top = depth - 1;
            match (self.stack_ctx.get(top), self.stack_end.get(top)) {
                (Some(&c), Some(&e)) => (c, e),
                _ => return Err(Counter::ParseError),
            }
        };
        if depth > 0 && self.offset >= parent_end {
            self.depth -= 1;
            self.offset = parent_end;
            if parent == CTX_ORIG {
                self.close_orig()?;
            }
            return Ok(true);
        }
        if self.offset >= self.end {
            return Ok(false);
        }
        let msg = Msg { skb, buf: &self.buf, len: self.buffered };
        let hdr = msg.u32(self.offset)?;
        let len = hdr & 0xffff;
        let ty = (hdr >> 16) & 0x3fff;
        if len < 4 || self.offset + len > parent_end {
            return Err(Counter::ParseError);
        }
        let next = core::cmp::min(self.offset + ((len + 3) & !3), parent_end);
        let child = container(parent, ty);
        if child != CTX_TOP && whole::read(&mut self.rec, &msg, child, self.offset, len) {
            self.offset = next;
            if child == CTX_ORIG {
                self.close_orig()?;
            }
            return Ok(true);
        }
        if child != CTX_TOP {
            // The depth again from the map value: the verifier then knows
            // nothing of it on any path (not 0 on one, 1..=3 on another),
            // which it requires of a pointer offset without CAP_PERFMON.
            // SAFETY: reading a field through &mut self.
            let depth = unsafe { core::ptr::read_volatile(&self.depth) } as usize;
            let Some(slot_c) = self.stack_ctx.get_mut(depth) else {
                return Err(Counter::ParseError);
            };
            *slot_c = child;
            if let Some(slot_e) = self.stack_end.get_mut(depth) {
                *slot_e = next;
            }
            self.depth += 1;
            self.offset += 4;
        } else {
            let off = self.offset + 4;
            leaf(&mut self.rec, &msg, parent, ty, off, len - 4)?;
            self.offset = next;
        }
        Ok(true)
    }

    /// Runs when the original tuple ends: it must be complete, and the pre-filter runs.
    #[inline(always)]
    fn close_orig(&mut self) -> Result<(), Counter> {
        let need = present::ORIG_SRC | present::ORIG_DST | present::ORIG_PROTO;
        if self.rec.present & need != need {
            return Err(Counter::ParseError);
        }
        self.orig_done = 1;
        prefilter(&self.rec.orig, self.rec.present, self.rec.kind)
    }

    #[inline(always)]
    fn fail(&mut self, counter: Counter) {
        self.state = STATE_FAILED;
        self.verdict = counter as u32;
    }
}

/// Copies one known leaf attribute into the record.
#[inline(always)]
fn leaf(r: &mut EventRecord, msg: &Msg, parent: u32, ty: u32, off: u32, plen: u32) -> Result<(), Counter> {
    match (parent, ty) {
        (CTX_ORIG_IP, _) => tuple_ip(msg, &mut r.orig, &mut r.present, 0, r.family, ty, off, plen),
        (CTX_REPLY_IP, _) => tuple_ip(msg, &mut r.reply, &mut r.present, 4, r.family, ty, off, plen),
        (CTX_ORIG_PROTO, _) => tuple_proto(msg, &mut r.orig, &mut r.present, 0, ty, off, plen),
        (CTX_REPLY_PROTO, _) => tuple_proto(msg, &mut r.reply, &mut r.present, 4, ty, off, plen),
        (CTX_TOP, CTA_STATUS) => copy!(msg, off, plen, r.status, r.present, present::STATUS),
        (CTX_TOP, CTA_MARK) => copy!(msg, off, plen, r.mark, r.present, present::MARK),
        (CTX_TOP, CTA_ID) => copy!(msg, off, plen, r.id, r.present, present::ID),
        (CTX_TOP, CTA_ZONE) => copy!(msg, off, plen, r.zone, r.present, present::ZONE),
        (CTX_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE) => {
            copy!(msg, off, plen, r.tcp_state, r.present, present::TCP_STATE)
        }
        (CTX_COUNTERS_ORIG, CTA_COUNTERS_PACKETS) => {
            copy!(msg, off, plen, r.orig_packets, r.present, present::COUNTERS_ORIG)
        }
        (CTX_COUNTERS_ORIG, CTA_COUNTERS_BYTES) => {
            copy!(msg, off, plen, r.orig_bytes, r.present, present::COUNTERS_ORIG)
        }
        (CTX_COUNTERS_REPLY, CTA_COUNTERS_PACKETS) => {
            copy!(msg, off, plen, r.reply_packets, r.present, present::COUNTERS_REPLY)
        }
        (CTX_COUNTERS_REPLY, CTA_COUNTERS_BYTES) => {
            copy!(msg, off, plen, r.reply_bytes, r.present, present::COUNTERS_REPLY)
        }
        (CTX_TIMESTAMP, CTA_TIMESTAMP_START) => {
            copy!(msg, off, plen, r.start_ns, r.present, present::TIMESTAMP_START)
        }
        (CTX_TIMESTAMP, CTA_TIMESTAMP_STOP) => {
            copy!(msg, off, plen, r.stop_ns, r.present, present::TIMESTAMP_STOP)
        }
        _ => Ok(()),
    }
}

/// `CTA_TUPLE_IP` children. `shift` moves ORIG_* bits to REPLY_* bits;
/// the address attribute must match the message's family.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tuple_ip(msg: &Msg, t: &mut Tuple, bits: &mut u32, shift: u32, family: u8, ty: u32, off: u32, plen: u32) -> Result<(), Counter> {
    let (addr, bit) = match ty {
        CTA_IP_V4_SRC | CTA_IP_V6_SRC => (&mut t.src, present::ORIG_SRC),
        CTA_IP_V4_DST | CTA_IP_V6_DST => (&mut t.dst, present::ORIG_DST),
        _ => return Ok(()),
    };
    let v4 = ty == CTA_IP_V4_SRC || ty == CTA_IP_V4_DST;
    if v4 != (family == AF_INET) {
        return Err(Counter::ParseError);
    }
    if v4 {
        if plen != 4 {
            return Err(Counter::ParseError);
        }
        addr[10] = 0xff;
        addr[11] = 0xff;
        msg.copy(off, addr[12..].as_mut_ptr(), 4)?;
    } else {
        if plen != 16 {
            return Err(Counter::ParseError);
        }
        msg.copy(off, addr.as_mut_ptr(), 16)?;
    }
    *bits |= bit << shift;
    Ok(())
}

/// `CTA_TUPLE_PROTO` children. `shift` moves ORIG_* bits to REPLY_* bits.
#[inline(always)]
fn tuple_proto(msg: &Msg, t: &mut Tuple, bits: &mut u32, shift: u32, ty: u32, off: u32, plen: u32) -> Result<(), Counter> {
    match ty {
        CTA_PROTO_NUM => copy!(msg, off, plen, t.proto, *bits, present::ORIG_PROTO << shift),
        CTA_PROTO_SRC_PORT => copy!(msg, off, plen, t.src_port, *bits, present::ORIG_PORTS << shift),
        CTA_PROTO_DST_PORT => copy!(msg, off, plen, t.dst_port, *bits, present::ORIG_PORTS << shift),
        _ => Ok(()),
    }
}

/// The walk context a container attribute opens, or `CTX_TOP` for a leaf or
/// an unknown attribute (skipped by length).
#[inline(always)]
fn container(parent: u32, ty: u32) -> u32 {
    match (parent, ty) {
        (CTX_TOP, CTA_TUPLE_ORIG) => CTX_ORIG,
        (CTX_TOP, CTA_TUPLE_REPLY) => CTX_REPLY,
        (CTX_TOP, CTA_PROTOINFO) => CTX_PROTOINFO,
        (CTX_TOP, CTA_COUNTERS_ORIG) => CTX_COUNTERS_ORIG,
        (CTX_TOP, CTA_COUNTERS_REPLY) => CTX_COUNTERS_REPLY,
        (CTX_TOP, CTA_TIMESTAMP) => CTX_TIMESTAMP,
        (CTX_ORIG, CTA_TUPLE_IP) => CTX_ORIG_IP,
        (CTX_ORIG, CTA_TUPLE_PROTO) => CTX_ORIG_PROTO,
        (CTX_REPLY, CTA_TUPLE_IP) => CTX_REPLY_IP,
        (CTX_REPLY, CTA_TUPLE_PROTO) => CTX_REPLY_PROTO,
        (CTX_PROTOINFO, CTA_PROTOINFO_TCP) => CTX_PROTOINFO_TCP,
        _ => CTX_TOP,
    }
}

/// Drops the event unless the policy table keeps its (kind, protocol, source
/// class, destination class). Kept protocols (TCP, UDP) must carry ports.
#[inline(always)]
fn prefilter(orig: &Tuple, bits: u32, kind: u8) -> Result<(), Counter> {
    let Some(proto) = protocol_index(orig.proto) else {
        return Err(Counter::DropProtocol);
    };
    let Some(policy) = POLICY.get(0) else {
        return Err(Counter::ParseError);
    };
    // One laundered index: LLVM would otherwise add the kind and the
    // protocol to the pointer separately, with a different constant on each
    // path, which the verifier refuses without CAP_PERFMON.
    // SAFETY: reading a local.
    let index = unsafe { core::ptr::read_volatile(&(kind as u32 * 2 + proto)) } as usize;
    let row = match policy.keep.get(index) {
        Some(&row) if row != 0 => row,
        _ => return Err(Counter::DropProtocol),
    };
    if bits & present::ORIG_PORTS == 0 {
        return Err(Counter::ParseError);
    }
    // A class trie is only asked when its answer can change the verdict
    // (each lookup costs about 50 ns): not when every source class allows
    // the same destination classes, nor when those are all of them.
    let dsts = if row & 0xffff == (row & 0xf) * 0x1111 {
        row & 0xf
    } else {
        let src = SRC_CLASSES.get(Key::new(128, orig.src)).copied().unwrap_or(CLASS_PUBLIC) & 3;
        (row >> (src * 4)) & 0xf
    };
    if dsts == 0 {
        return Err(Counter::DropSrcClass);
    }
    if dsts == 0xf {
        return Ok(());
    }
    let dst = DST_CLASSES.get(Key::new(128, orig.dst)).copied().unwrap_or(CLASS_PUBLIC) & 3;
    if dsts & (1 << dst) == 0 {
        return Err(Counter::DropDstClass);
    }
    Ok(())
}

/// The `bpf_loop` callback: 0 continues, 1 stops.
pub(crate) extern "C" fn step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `ctx` is the `WalkCtx` the caller passed to bpf_loop.
    let w = unsafe { &*(ctx as *const WalkCtx) };
    // SAFETY: per-CPU map value set up by the caller.
    let s = unsafe { &mut *w.scratch };
    match s.advance(w.skb) {
        Ok(true) => 0,
        Ok(false) => {
            s.state = STATE_DONE;
            1
        }
        Err(counter) => {
            s.fail(counter);
            1
        }
    }
}

fn counter_from(v: u32) -> Counter {
    match v {
        2 => Counter::WalkLimit,
        3 => Counter::NotConntrack,
        4 => Counter::DropKind,
        5 => Counter::DropProtocol,
        6 => Counter::DropDstClass,
        7 => Counter::DropSrcClass,
        _ => Counter::ParseError,
    }
}
