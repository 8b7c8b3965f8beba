//! Encoder throughput for `cargo xtask bench` (hidden command
//! `conntrackd bench-loki-encoder`): synthetic events through the batcher and
//! the encoder, as the sink thread runs them, timed in thread CPU time.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use super::{
    config::{Encoding, LineFormat},
    encoding::encode,
    request::{Batcher, StreamKeys},
};
use crate::event::{Counters, Endpoints, Event, EventType, Protocol, Task};

/// One encoder measurement.
#[derive(Debug)]
pub(crate) struct Throughput {
    pub encoding: Encoding,
    pub events: usize,
    pub batches: usize,
    pub body_bytes: usize,
    /// CPU time of the measuring thread.
    pub elapsed: Duration,
}

impl Throughput {
    /// One JSON object per line, for the benchmark to parse.
    pub fn json(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        format!(
            "{{\"encoding\":\"{:?}\",\"events\":{},\"batches\":{},\"body_bytes\":{},\"cpu_seconds\":{secs:.6},\"events_per_cpu_s\":{:.0},\"bytes_per_event\":{:.1}}}",
            self.encoding,
            self.events,
            self.batches,
            self.body_bytes,
            self.events as f64 / secs.max(1e-9),
            self.body_bytes as f64 / self.events.max(1) as f64
        )
    }
}

/// Batches and encodes `n` events with default settings (1 MiB batches, text lines).
pub(crate) fn measure(n: usize, encoding: Encoding) -> Throughput {
    let events: Vec<Event> = (0..n).map(synthetic).collect();
    let keys = StreamKeys::new("bench-host".into(), Vec::new(), false, LineFormat::Text);
    let mut batcher = Batcher::new(keys, Duration::from_secs(3600), 1 << 20);
    let (mut batches, mut body_bytes) = (0, 0);
    let now = Instant::now();
    let start = thread_cpu();
    let mut flush = |batch: super::request::Batch| {
        let body = encode(&batch, encoding).unwrap_or_default();
        batches += 1;
        body_bytes += body.len();
    };
    for ev in &events {
        if let Some(batch) = batcher.push(ev, now) {
            flush(batch);
        }
    }
    if let Some(batch) = batcher.take() {
        flush(batch);
    }
    Throughput { encoding, events: n, batches, body_bytes, elapsed: thread_cpu().saturating_sub(start) }
}

/// CPU time of the calling thread: steadier than wall time on a busy machine.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid clock id and out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

/// A NEW/UPDATE/DESTROY mix of distinct TCP/UDP flows with all common fields.
// The casts wrap on purpose (addresses and ports cycle); indexes are `i % 3`
// into three-element arrays.
#[allow(clippy::cast_possible_truncation, clippy::indexing_slicing)]
fn synthetic(i: usize) -> Event {
    let kind = [EventType::New, EventType::Update, EventType::Destroy][i % 3];
    let orig = Endpoints {
        src: IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8)),
        dst: IpAddr::V4(Ipv4Addr::new(203, 0, 113, (i % 251) as u8)),
        src_port: 32768 + (i % 28000) as u16,
        dst_port: [443, 80, 53][i % 3],
    };
    let protocol = if i.is_multiple_of(5) { Protocol::Udp } else { Protocol::Tcp };
    Event {
        time_ns: 1_795_842_197_000_000_000 + i as i128 * 1000,
        flow: Some(i as u32),
        reply: Some(Endpoints { src: orig.dst, dst: orig.src, src_port: orig.dst_port, dst_port: orig.src_port }),
        tcp_state: (!i.is_multiple_of(5)).then_some(3),
        mark: None,
        zone: None,
        counters: (kind == EventType::Destroy).then_some(Counters { orig_packets: 10, orig_bytes: 1500, reply_packets: 8, reply_bytes: 9000 }),
        task: Some(Task { pid: 4242, tid: 4242, uid: 1000, gid: 1000, comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0" }),
        ..Event::bare(kind, protocol, orig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_every_event_in_full_batches() {
        let t = measure(20_000, Encoding::Protobuf);
        assert_eq!(t.events, 20_000);
        assert!(t.batches >= 2, "20k events exceed one 1 MiB batch: {t:?}");
        assert!(t.json().contains("\"events_per_cpu_s\":"));
    }
}
