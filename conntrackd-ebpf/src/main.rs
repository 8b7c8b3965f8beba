//! conntrackd's kernel program: a socket filter on the daemon's ctnetlink sockets.
//!
//! The daemon loads it once and attaches it to one ctnetlink socket in every
//! watched network namespace; all of them share the maps and the ring buffer.
//! For every conntrack event message it parses the netlink header, the
//! `nfgenmsg` and the `CTA_*` attributes (stable UAPI, no kernel structs), drops
//! what the policy maps say can never be logged, and writes one fixed-size
//! [`EventRecord`] per kept event into the `EVENTS` ring buffer, stamped with
//! the cookie of the socket it ran for (so the daemon knows the namespace). It
//! always returns 0, so nothing is ever queued on the sockets themselves.
//!
//! The message is copied into a per-CPU map value with one helper call, and
//! the attribute walk is one `bpf_loop` over the attributes in document order
//! (containers are entered, not recursed into) with a small container stack,
//! reading from that copy; the record under construction lives in the same
//! map value, never on the 512-byte stack. See `walk.rs`.
#![no_std]
#![no_main]

mod msg;
mod walk;
mod whole;

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_loop, bpf_skb_load_bytes},
    macros::{map, socket_filter},
    maps::{Array, LpmTrie, PerCpuArray, RingBuf},
    programs::SkBuffContext,
    EbpfContext,
};
use conntrackd_common::{
    present, Counter, EventRecord, Policy, CLASS_TRIE_ENTRIES, COUNTER_COUNT, DEFAULT_RING_BYTES, EVENT_RECORD_SIZE, KIND_DESTROY, KIND_NEW, KIND_UPDATE,
    MAX_WALK_STEPS,
};

use crate::{
    msg::BUF_BYTES,
    walk::{Outcome, Scratch, WalkCtx},
};

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

#[map(name = "DST_CLASSES")]
pub(crate) static DST_CLASSES: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(CLASS_TRIE_ENTRIES, BPF_F_NO_PREALLOC);

#[map(name = "SRC_CLASSES")]
pub(crate) static SRC_CLASSES: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(CLASS_TRIE_ENTRIES, BPF_F_NO_PREALLOC);

#[map(name = "POLICY")]
pub(crate) static POLICY: Array<Policy> = Array::with_max_entries(1, 0);

/// Per-CPU scratch space: the record under construction and the walk state.
#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Set to 1 by the loader when the daemon holds CAP_PERFMON. It lives in
/// `.rodata`, so the verifier sees the constant and never visits the
/// `bpf_get_current_comm` call when it is 0.
#[no_mangle]
static CAPTURE_COMM: u8 = 0;

// netlink / nfnetlink constants (linux/netlink.h, linux/netfilter/nfnetlink*.h).
const NLMSG_HDRLEN: u32 = 16;
const NFGENMSG_LEN: u32 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
pub(crate) const AF_INET: u8 = 2;
pub(crate) const AF_INET6: u8 = 10;

#[socket_filter]
pub fn conntrack_events(ctx: SkBuffContext) -> i64 {
    let outcome = try_conntrack_events(&ctx);
    count(outcome as u32);
    if outcome == Counter::ParseError as u32 {
        // Off the hot path: only malformed messages get here.
        aya_log_ebpf::debug!(&ctx, "ctnetlink message rejected: malformed attributes");
    }
    0
}

/// Parses, filters and emits one message; returns the [`Counter`] of its outcome.
fn try_conntrack_events(ctx: &SkBuffContext) -> u32 {
    count(Counter::Seen as u32);
    let Some(policy) = POLICY.get(0) else {
        return Counter::ParseError as u32;
    };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return Counter::ParseError as u32;
    };
    // SAFETY: per-CPU map value, valid for the whole program run.
    let scratch = unsafe { &mut *scratch };
    let (kind, msg_len, family, portid) = match load_message(ctx, scratch) {
        Ok(h) => h,
        Err(outcome) => return outcome as u32,
    };
    scratch.reset(NLMSG_HDRLEN + NFGENMSG_LEN, msg_len);
    scratch.set_buffered(core::cmp::min(msg_len, BUF_BYTES));
    scratch.rec.kind = kind;
    scratch.rec.family = family;
    scratch.rec.portid = portid;
    // The kind read back from the map value: LLVM keeps the bounds check the
    // verifier needs (it otherwise folds the index into arithmetic on the
    // message type), and the verifier knows nothing of it on any path (a
    // constant on one path and not on another is refused as a pointer
    // offset without CAP_PERFMON).
    // SAFETY: reading a field of the map value.
    let row = unsafe { core::ptr::read_volatile(&scratch.rec.kind) } as usize * 2;
    match (policy.keep.get(row), policy.keep.get(row + 1)) {
        (Some(&tcp), Some(&udp)) if tcp | udp != 0 => {}
        _ => return Counter::DropKind as u32,
    }

    let mut wctx = WalkCtx { skb: ctx.as_ptr().cast(), scratch: scratch as *mut Scratch };
    // SAFETY: the callback and its context follow bpf_loop's contract.
    unsafe {
        bpf_loop(MAX_WALK_STEPS, walk::step as *mut core::ffi::c_void, (&mut wctx as *mut WalkCtx).cast(), 0);
    }
    match scratch.outcome() {
        Outcome::Keep => emit(ctx, &mut scratch.rec, policy),
        Outcome::Drop(counter) => counter as u32,
    }
}

/// Copies the message's first [`BUF_BYTES`] into the scratch with one helper
/// call and reads nlmsghdr + nfgenmsg from there; returns (kind, message
/// length, family, port id).
fn load_message(ctx: &SkBuffContext, scratch: &mut Scratch) -> Result<(u8, u32, u8, u32), Counter> {
    let skb_len = ctx.len();
    let copied = core::cmp::min(skb_len, BUF_BYTES);
    if copied < NLMSG_HDRLEN + NFGENMSG_LEN {
        return Err(Counter::ParseError);
    }
    // The helper needs a length the verifier knows is in 1..=BUF_BYTES: the
    // mask gives it (LLVM would drop it if it knew the check above, hence the
    // volatile read) and leaves the value as it is.
    // SAFETY: reading a local.
    let copied = (unsafe { core::ptr::read_volatile(&copied) }.wrapping_sub(1) & (BUF_BYTES - 1)) + 1;
    // SAFETY: `buf` has room for BUF_BYTES; the skb holds `copied` bytes.
    if unsafe { bpf_skb_load_bytes(ctx.as_ptr() as *const _, 0, scratch.buf.as_mut_ptr().cast(), copied) } < 0 {
        return Err(Counter::ParseError);
    }
    let b = scratch.buf.as_ptr();
    // SAFETY: constant offsets inside the copied header; `buf` is 8-aligned.
    let (nlmsg_len, nlmsg_type, nlmsg_flags, portid, family) =
        unsafe { (*(b as *const u32), *(b.add(4) as *const u16), *(b.add(6) as *const u16), *(b.add(12) as *const u32), *b.add(NLMSG_HDRLEN as usize)) };
    if nlmsg_len < NLMSG_HDRLEN + NFGENMSG_LEN || nlmsg_len > skb_len {
        return Err(Counter::ParseError);
    }
    if nlmsg_type >> 8 != NFNL_SUBSYS_CTNETLINK {
        return Err(Counter::NotConntrack);
    }
    let kind = match nlmsg_type & 0xff {
        IPCTNL_MSG_CT_DELETE => KIND_DESTROY,
        IPCTNL_MSG_CT_NEW if nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL) == NLM_F_CREATE | NLM_F_EXCL => KIND_NEW,
        IPCTNL_MSG_CT_NEW => KIND_UPDATE,
        _ => return Err(Counter::NotConntrack),
    };
    if family != AF_INET && family != AF_INET6 {
        return Err(Counter::ParseError);
    }
    Ok((kind, nlmsg_len, family, portid))
}

/// Adds the socket cookie and task context and writes the record to the ring buffer.
fn emit(ctx: &SkBuffContext, rec: &mut EventRecord, policy: &Policy) -> u32 {
    // SAFETY: helpers without pointer arguments, with a buffer we own, or
    // (the cookie) with the program's own context.
    unsafe {
        rec.cookie = bpf_get_socket_cookie(ctx.as_ptr());
        rec.ktime_ns = bpf_ktime_get_ns();
        rec.pid_tgid = bpf_get_current_pid_tgid();
        rec.uid_gid = bpf_get_current_uid_gid();
        rec.present |= present::TASK;
        if core::ptr::read_volatile(&CAPTURE_COMM) != 0 {
            if let Ok(comm) = bpf_get_current_comm() {
                rec.comm = comm;
                rec.present |= present::COMM;
            }
        }
    }
    // Wake the daemon each time the waiting bytes pass a multiple of
    // `wakeup_bytes`, not for every record past it: a forced wakeup costs
    // about 1 µs (an irq_work), and the daemon drains the whole ring when woken.
    // Each record advances the ring by its size plus the ring's 8-byte header.
    const STRIDE: u64 = EVENT_RECORD_SIZE as u64 + 8;
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let step = core::cmp::max(policy.wakeup_bytes as u64, STRIDE);
    let flags = if waiting / step != (waiting + STRIDE) / step { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };
    match EVENTS.output::<EventRecord>(&*rec, flags as u64) {
        Ok(()) => Counter::Submitted as u32,
        Err(_) => Counter::RingFull as u32,
    }
}

/// Increments one per-CPU counter.
#[inline(always)]
fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot; no other writer on this CPU while we run.
        unsafe { *slot += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
