//! The stream sink: JSON lines to stdout, stderr, or nowhere.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{
    io::Write,
    sync::Arc,
    thread::{self, JoinHandle},
};

use super::{config::Writer, json, queue::BoundedQueue};

/// Starts the sink thread; it writes each drained batch with one `write_all`.
///
/// stdout and stderr are locked for one batch at a time, never for the
/// thread's life: the daemon's own diagnostics also go to stderr, and a lock
/// held while the thread waits for events would block every log line (and
/// with it the event path and shutdown).
pub(crate) fn spawn(writer: Writer, queue: Arc<BoundedQueue>) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("sink-stream".into()).spawn(move || run(writer, &queue))
}

fn run(writer: Writer, queue: &BoundedQueue) {
    let mut events = Vec::with_capacity(1024);
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut failures = 0u64;
    while queue.pop_all(&mut events) {
        buf.clear();
        for ev in &events {
            json::write_line(&mut buf, ev);
        }
        match write_batch(writer, &buf) {
            Ok(()) => queue.record_written(events.len() as u64),
            Err(err) => {
                queue.record_write_error(events.len() as u64);
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::error!(sink = "stream", error = %err, failures, "cannot write events");
                }
            }
        }
        events.clear();
    }
}

/// Writes one batch under the stream's lock, released right after.
fn write_batch(writer: Writer, buf: &[u8]) -> std::io::Result<()> {
    fn locked(mut out: impl Write, buf: &[u8]) -> std::io::Result<()> {
        out.write_all(buf)?;
        out.flush()
    }
    match writer {
        Writer::Stdout => locked(std::io::stdout().lock(), buf),
        Writer::Stderr => locked(std::io::stderr().lock(), buf),
        Writer::Discard => Ok(()),
    }
}
