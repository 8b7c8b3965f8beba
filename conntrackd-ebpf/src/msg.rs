//! Reads of the message being walked: from the copy in the per-CPU scratch
//! when the bytes are there, with `bpf_skb_load_bytes` otherwise (only past
//! [`BUF_BYTES`]).
//!
//! Attribute headers and payloads start at multiples of 4 (netlink aligns
//! them), so masking an offset with `BUF_BYTES - 4` leaves it unchanged and
//! gives the verifier its bounds; 2- and 4-byte reads are then aligned.
use aya_ebpf::{bindings::__sk_buff, helpers::bpf_skb_load_bytes};
use conntrackd_common::Counter;

/// Bytes of the message the program copies into the scratch with one helper
/// call (ctnetlink events are 160 to about 400 bytes). A power of two: read
/// offsets are masked with it. Attributes past it are read with a helper call each.
pub(crate) const BUF_BYTES: u32 = 1024;
/// Room after the buffer so a masked offset plus a read of up to 16 bytes stays
/// inside the map value, whatever the verifier knows of the offset.
pub(crate) const BUF_SLACK: usize = 16;

/// The message: its first `len` bytes in `buf`, the rest in the skb.
pub(crate) struct Msg<'a> {
    pub skb: *mut __sk_buff,
    pub buf: &'a [u8; BUF_BYTES as usize + BUF_SLACK],
    /// Bytes of the message in `buf`.
    pub len: u32,
}

impl Msg<'_> {
    #[inline(always)]
    fn at(&self, off: u32) -> *const u8 {
        // SAFETY: the masked offset is below BUF_BYTES; callers read at most
        // 16 bytes from it, inside the slack.
        unsafe { self.buf.as_ptr().add((off & (BUF_BYTES - 4)) as usize) }
    }

    /// Whether `len` bytes at `off` are in the buffer.
    #[inline(always)]
    pub fn buffered(&self, off: u32, len: u32) -> bool {
        off + len <= self.len
    }

    #[inline(always)]
    pub fn u32(&self, off: u32) -> Result<u32, Counter> {
        if !self.buffered(off, 4) {
            return load_u32(self.skb, off);
        }
        Ok(self.word(off))
    }

    /// The 4 bytes at `off`, which the caller has checked are [`Msg::buffered`].
    #[inline(always)]
    pub fn word(&self, off: u32) -> u32 {
        // SAFETY: inside the buffer (see `at`), 4-aligned (see the module docs).
        unsafe { *(self.at(off) as *const u32) }
    }

    /// Copies `size` (1, 2, 4, 8 or 16) bytes at `off` to `dst`, which is
    /// aligned to `min(size, 4)`: a field of the record.
    #[inline(always)]
    pub fn copy(&self, off: u32, dst: *mut u8, size: u32) -> Result<(), Counter> {
        if !self.buffered(off, size) {
            return load_into(self.skb, off, dst, size);
        }
        self.copy_buffered(off, dst, size);
        Ok(())
    }

    /// [`Msg::copy`] of bytes the caller has checked are [`Msg::buffered`].
    #[inline(always)]
    pub fn copy_buffered(&self, off: u32, dst: *mut u8, size: u32) {
        let src = self.at(off);
        // SAFETY: `size` bytes in the buffer (see `at`) to a record field of
        // that size, both aligned as described above.
        unsafe {
            match size {
                1 => *dst = *src,
                2 => *(dst as *mut u16) = *(src as *const u16),
                _ => {
                    for i in 0..(size / 4) as usize {
                        *(dst as *mut u32).add(i) = *(src as *const u32).add(i);
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn load_u32(skb: *mut __sk_buff, off: u32) -> Result<u32, Counter> {
    let mut v: u32 = 0;
    load_into(skb, off, (&mut v as *mut u32).cast(), 4)?;
    Ok(v)
}

#[inline(always)]
fn load_into(skb: *mut __sk_buff, off: u32, dst: *mut u8, len: u32) -> Result<(), Counter> {
    // SAFETY: `dst` points to at least `len` writable bytes.
    let ret = unsafe { bpf_skb_load_bytes(skb as *const _, off, dst.cast(), len) };
    if ret < 0 {
        Err(Counter::ParseError)
    } else {
        Ok(())
    }
}
