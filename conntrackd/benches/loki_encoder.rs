//! Loki encoder throughput on one thread, for `cargo xtask bench`:
//! `cargo bench -p conntrackd --bench loki_encoder -- EVENTS`. Batches and
//! encodes EVENTS synthetic events as the sink thread does, protobuf (snappy)
//! then JSON, and prints one JSON object per encoding (`encoding`, `events`,
//! `batches`, `body_bytes`, `cpu_seconds`, `events_per_cpu_s`,
//! `bytes_per_event`). A bad argument prints an error and exits with status
//! 2. Without arguments (as `cargo test --all-targets` runs it) it encodes
//! 20 000 events, as a smoke test.
use std::process::ExitCode;

use conntrackd::bench_support::loki_encoder;

/// Events of the smoke run.
const SMOKE_EVENTS: usize = 20_000;

fn main() -> ExitCode {
    // cargo bench appends `--bench` to the arguments of every benchmark binary.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let events = match args.as_slice() {
        [] => SMOKE_EVENTS,
        [n] => match n.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return usage(&format!("EVENTS must be a positive integer, found {n:?}")),
        },
        _ => return usage(&format!("one argument expected, found {}", args.len())),
    };
    for line in loki_encoder(events) {
        println!("{line}");
    }
    ExitCode::SUCCESS
}

fn usage(error: &str) -> ExitCode {
    eprintln!("loki_encoder bench: {error}; usage: loki_encoder [EVENTS]");
    ExitCode::from(2)
}
