//! Clocks and RFC 3339 timestamps, without allocation.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use ::time::{format_description::BorrowedFormatItem, macros::format_description, OffsetDateTime, PrimitiveDateTime};

/// Nanoseconds to add to a CLOCK_MONOTONIC stamp (what `bpf_ktime_get_ns`
/// returns) to get wall-clock time since the Unix epoch.
pub(crate) fn monotonic_to_realtime_offset_ns() -> i128 {
    clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_MONOTONIC now, in ns (the clock of kernel program records).
pub(crate) fn monotonic_ns() -> u64 {
    // Cannot fail for 584 years of uptime: the monotonic clock starts at boot.
    u64::try_from(clock_ns(libc::CLOCK_MONOTONIC)).unwrap_or(u64::MAX)
}

/// Wall-clock ms since the Unix epoch (0 if the clock is set before 1970).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid clock id and a valid out-pointer; cannot fail for these clocks.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// `2026-11-28T05:03:17.123456Z`: RFC 3339 in UTC, always six fractional digits.
const RFC3339_MICROS: &[BorrowedFormatItem<'_>] = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Writes `ns` (since the Unix epoch) as RFC 3339 UTC with microseconds
/// (truncated), e.g. `2026-11-28T05:03:17.123456Z`. Instants outside years
/// -9999..=9999 (never a kernel stamp: a u64 of ns ends in 2554) are written
/// as the nearest representable one.
pub(crate) fn write_rfc3339(out: &mut Vec<u8>, ns: i128) {
    let limit = if ns < 0 { PrimitiveDateTime::MIN } else { PrimitiveDateTime::MAX };
    let at = OffsetDateTime::from_unix_timestamp_nanos(ns).unwrap_or_else(|_| limit.assume_utc());
    // Cannot fail: every component of the description exists in a UTC date-time
    // and writing into a Vec does not fail.
    let _ = at.format_into(out, RFC3339_MICROS);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(ns: i128) -> String {
        let mut v = Vec::new();
        write_rfc3339(&mut v, ns);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000000Z");
        // date -u -d @1795842197 -> Sat Nov 28 05:03:17 UTC 2026
        assert_eq!(fmt(1_795_842_197_123_456_789), "2026-11-28T05:03:17.123456Z");
        // leap day
        assert_eq!(fmt(951_782_400_000_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(fmt(-1_000), "1969-12-31T23:59:59.999999Z");
        assert_eq!(fmt(i128::from(u64::MAX)), "2554-07-21T23:34:33.709551Z", "the latest kernel stamp");
        assert_eq!(fmt(i128::MAX), "9999-12-31T23:59:59.999999Z");
        assert_eq!(fmt(i128::MIN), "-9999-01-01T00:00:00.000000Z");
    }
}
