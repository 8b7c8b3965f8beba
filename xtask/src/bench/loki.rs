//! The Loki sink's part of `cargo xtask bench`: the encoder's throughput
//! (conntrackd's `loki_encoder` bench, [`micro`]: batching + protobuf +
//! snappy, and JSON), and the daemon's CPU per 100k events with the Loki sink
//! pushing to VictoriaLogs (in the client namespace, on 127.0.0.1) next to
//! the stream sink, against the stream-only run at the same rate; and the
//! latency to acceptance by the receiver at 5k/s ([`loki_latency`]); and the
//! bytes on the wire per event ([`loki_bytes`]) for both encodings and both
//! line formats, with and without structured metadata. Every push goes
//! through the recording proxy to VictoriaLogs. Written to
//! `target/bench/loki.{md,json}`.
use std::{fmt::Write as _, fs, path::Path};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{
    consumer::{Daemon, Kind},
    loki_bytes::BodyBytes,
    loki_latency,
    measure::{Bench, Rate},
    micro,
    mode::Mode,
    report::RunResult,
    victorialogs::VictoriaLogs,
};

const VL_PORT: u16 = 19428;
const PROXY_PORT: u16 = 19429;
const ENCODER_EVENTS: &str = "200000";

/// Runs the measurements; `stream_only` are the runs already made.
pub(crate) fn run(root: &Path, bench: &Bench, dir: &Path, rate: Rate, stream_only: &[RunResult]) -> Result<String> {
    let encoder = encoder_throughput(root)?;
    let data = dir.join("victorialogs-data");
    let _ = fs::remove_dir_all(&data);
    let vl = VictoriaLogs::start(&data, VL_PORT)?;
    let recorder = loki_latency::start_proxy(PROXY_PORT, VL_PORT)?;
    eprintln!("bench: conntrackd with the Loki sink at {}", rate.label());
    let run = measure_with(bench, dir, "cpu", &loki_config(PROXY_PORT, ""), rate)?;
    let mut bytes = vec![Bytes::of(&run, "protobuf", "text", recorder.take_bytes())];
    let written = run.counters.get("loki.written").copied().unwrap_or(0);
    let stored = vl.wait_count(written)?;
    eprintln!("bench: Loki sink latency at {}", LATENCY_RATE.label());
    recorder.clear_latencies();
    let latency_run = measure_with(bench, dir, "latency", &loki_config(PROXY_PORT, "encoding = \"json\"\n"), LATENCY_RATE)?;
    let (samples, p50, p99, max) = recorder.summary();
    bytes.push(Bytes::of(&latency_run, "json", "text", recorder.take_bytes()));
    for encoding in ["protobuf", "json"] {
        eprintln!("bench: Loki sink bytes per event, encoding {encoding}, line_format json, at {}", rate.label());
        let extra = format!("encoding = \"{encoding}\"\nline_format = \"json\"\n");
        let r = measure_with(bench, dir, &format!("bytes-{encoding}-json"), &loki_config(PROXY_PORT, &extra), rate)?;
        bytes.push(Bytes::of(&r, encoding, "json", recorder.take_bytes()));
    }
    drop(vl);
    let baseline = stream_only.iter().find(|r| r.consumer == Kind::Conntrackd.name() && r.rate == rate.label());
    let latency = Latency { rate: latency_run.rate.clone(), samples, p50_ms: p50, p99_ms: p99, max_ms: max };
    let report = json!({
        "encoder": encoder,
        "loki_run": { "rate": run.rate, "generated": run.generated, "delivered_stream": run.delivered,
            "loki_written": written, "stored_in_victorialogs": stored, "counters": run.counters,
            "cpu_s": run.cpu_s, "cpu_s_per_100k": run.cpu_s_per_100k },
        "stream_only_cpu_s_per_100k": baseline.map(|b| b.cpu_s_per_100k),
        "bytes_per_event": bytes,
        "latency": { "rate": latency.rate, "new_events": samples, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
            "target_p99_ms": LATENCY_TARGET_MS, "batch_wait_ms": 1000 },
    });
    fs::write(dir.join("loki.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    let markdown = markdown(&encoder, &run, written, stored, baseline, &latency) + &bytes_markdown(&bytes);
    fs::write(dir.join("loki.md"), &markdown)?;
    Ok(markdown)
}

/// Default batch_wait (1 s) + 250 ms, from the issue.
const LATENCY_TARGET_MS: f64 = 1250.0;
const LATENCY_RATE: Rate = Rate(Some(5_000));

struct Latency {
    rate: String,
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// The body bytes of one run's accepted pushes.
#[derive(serde::Serialize)]
struct Bytes {
    encoding: &'static str,
    line_format: &'static str,
    rate: String,
    /// The sink's `loki.written` counter (to compare with the entries in the bodies).
    written: u64,
    #[serde(flatten)]
    bodies: BodyBytes,
    per_event: f64,
    per_event_without_metadata: f64,
}

impl Bytes {
    fn of(run: &RunResult, encoding: &'static str, line_format: &'static str, bodies: BodyBytes) -> Self {
        let written = run.counters.get("loki.written").copied().unwrap_or(0);
        Self {
            encoding,
            line_format,
            rate: run.rate.clone(),
            written,
            per_event: bodies.per_event(),
            per_event_without_metadata: bodies.per_event_without_metadata(),
            bodies,
        }
    }
}

fn bytes_markdown(bytes: &[Bytes]) -> String {
    let mut md = String::from(
        "\nBytes on the wire per event: request bodies of the sink's accepted pushes (batch_wait 1 s, batch_bytes 1 MiB) as the proxy \
         received them; without structured metadata = the same bodies decoded, metadata removed, encoded again the same way.\n\n\
         | encoding | line format | rate | pushes | events in bodies | loki.written | bytes/event | without structured metadata | metadata share |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for b in bytes {
        let share = if b.per_event > 0.0 { 100.0 * (1.0 - b.per_event_without_metadata / b.per_event) } else { 0.0 };
        let undecoded = if b.bodies.undecoded > 0 { format!(" ({} undecoded)", b.bodies.undecoded) } else { String::new() };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {}{undecoded} | {} | {} | {:.1} | {:.1} | {share:.0} % |",
            b.encoding, b.line_format, b.rate, b.bodies.requests, b.bodies.entries, b.written, b.per_event, b.per_event_without_metadata
        );
    }
    md
}

/// One conntrackd run with `config`, its output under `runs-loki-<tag>`.
fn measure_with(bench: &Bench, dir: &Path, tag: &str, config: &str, rate: Rate) -> Result<RunResult> {
    let config_dir = dir.join(format!("config-loki-{tag}"));
    fs::create_dir_all(&config_dir)?;
    let path = config_dir.join(format!("{}.toml", Kind::Conntrackd.slug()));
    fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
    let runs_dir = dir.join(format!("runs-loki-{tag}"));
    fs::create_dir_all(&runs_dir)?;
    let with_loki = Bench {
        lab: bench.lab,
        daemon: Daemon { binary: bench.daemon.binary, original: bench.daemon.original, config_dir: &config_dir },
        runs_dir: &runs_dir,
        connections: bench.connections,
        sources: bench.sources.clone(),
        quiet: bench.quiet,
    };
    with_loki.measure(Kind::Conntrackd, Mode::AllPublic, rate)
}

fn markdown(encoder: &[Value], run: &RunResult, written: u64, stored: u64, baseline: Option<&RunResult>, lat: &Latency) -> String {
    let mut md = String::from("\n## Loki sink\n\n| encoding | events | batches | bytes/event | events per CPU second |\n|---|---|---|---|---|\n");
    for e in encoder {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            e["encoding"].as_str().unwrap_or("?"),
            e["events"],
            e["batches"],
            e["bytes_per_event"],
            e["events_per_cpu_s"]
        );
    }
    let _ = writeln!(
        md,
        "\nconntrackd with stream + Loki sinks at {}: {} events generated, {} pushed to Loki, {} stored in VictoriaLogs; \
         CPU {:.3} s per 100k events (stream sink only: {}).",
        run.rate,
        run.generated,
        written,
        stored,
        run.cpu_s_per_100k,
        baseline.map_or("not measured".to_string(), |b| format!("{:.3} s", b.cpu_s_per_100k))
    );
    let _ = writeln!(
        md,
        "\nLatency from the kernel event to its acceptance by VictoriaLogs, NEW events at {} (batch_wait 1 s): \
         {} events, p50 {:.0} ms, p99 {:.0} ms (target <= {LATENCY_TARGET_MS:.0} ms: {}), max {:.0} ms.",
        lat.rate,
        lat.samples,
        lat.p50_ms,
        lat.p99_ms,
        if lat.samples > 0 && lat.p99_ms <= LATENCY_TARGET_MS { "met" } else { "not met" },
        lat.max_ms
    );
    md
}

/// One JSON object per encoding from conntrackd's `loki_encoder` bench.
fn encoder_throughput(root: &Path) -> Result<Vec<Value>> {
    let stdout = micro::run(root, "loki_encoder", [ENCODER_EVENTS])?;
    let encodings: Vec<Value> =
        stdout.lines().map(|l| serde_json::from_str(l).with_context(|| format!("loki_encoder bench line {l:?}"))).collect::<Result<_>>()?;
    if encodings.len() != 2 {
        bail!("the loki_encoder bench printed {} results, expected protobuf and JSON:\n{stdout}", encodings.len());
    }
    Ok(encodings)
}

fn loki_config(port: u16, extra: &str) -> String {
    format!(
        "filter = [\"log protocol tcp and destination network public\", \"drop any\"]\n\
         [log]\nformat = \"text\"\n\
         [sink.stream]\nenable = true\nwriter = \"stdout\"\n\
         [sink.loki]\nenable = true\naddress = \"http://127.0.0.1:{port}/insert\"\nqueue_events = 1048576\n{extra}"
    )
}
