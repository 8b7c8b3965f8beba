//! The stream sink: JSON lines to stdout, stderr, or nowhere.
use std::{
    io::Write,
    sync::Arc,
    thread::{self, JoinHandle},
};

use super::{json, queue::BoundedQueue};
use crate::config::Writer;

/// Starts the sink thread; it writes each drained batch with one `write_all`.
pub(crate) fn spawn(writer: Writer, queue: Arc<BoundedQueue>) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("sink-stream".into()).spawn(move || run(writer, &queue))
}

fn run(writer: Writer, queue: &BoundedQueue) {
    let mut out: Box<dyn Write> = match writer {
        Writer::Stdout => Box::new(std::io::stdout().lock()),
        Writer::Stderr => Box::new(std::io::stderr().lock()),
        Writer::Discard => Box::new(std::io::sink()),
    };
    let mut events = Vec::with_capacity(1024);
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut failures = 0u64;
    while queue.pop_all(&mut events) {
        buf.clear();
        for ev in &events {
            json::write_line(&mut buf, ev);
        }
        match out.write_all(&buf).and_then(|()| out.flush()) {
            Ok(()) => queue.record_written(events.len()),
            Err(err) => {
                queue.record_write_error(events.len());
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::error!(sink = "stream", error = %err, failures, "cannot write events");
                }
            }
        }
        events.clear();
    }
}
