//! Wiring: source -> (userspace check of the pre-filter) -> sinks, plus
//! signals, the drain timer and loss reporting.
use std::time::Duration;

use anyhow::Context;
use conntrackd_common::Counter;
use tokio::{
    signal::unix::{signal, SignalKind},
    time::{interval, MissedTickBehavior},
};

use crate::{
    config::Config,
    event::Event,
    filter::{Prefilter, Rules},
    sink::{SinkStats, Sinks},
    source::{
        ebpf::EbpfSource,
        sysctl::{self, EventsSetting},
        KernelCounters,
    },
};

/// How often losses are checked and reported.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What `conntrackd check` prints for a valid configuration.
pub(crate) fn check_report(config: &Config) -> String {
    let mut out = String::from("configuration is valid\n");
    if config.rules.rules.is_empty() {
        out.push_str("rules: none (every TCP and UDP event is logged)\n");
    }
    for (i, rule) in config.rules.rules.iter().enumerate() {
        out.push_str(&format!("rule {} ({:?}): {}\n", i + 1, rule.language, rule.text));
    }
    out.push_str(&format!("{}\n", Prefilter::derive(&config.rules)));
    if let Some(loki) = &config.loki {
        // The endpoint's Debug form has no credentials; the token is never shown.
        out.push_str(&format!("sink loki: {:?}, encoding {:?}, spool {:?}\n", loki.endpoint, loki.encoding, loki.spool_dir));
    }
    out
}

/// Runs until SIGINT or SIGTERM.
pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    let prefilter = if config.source.kernel_prefilter {
        Prefilter::derive(&config.rules)
    } else {
        tracing::info!("kernel pre-filter disabled (source.kernel_prefilter = false): the rules decide in userspace");
        Prefilter::keep_all()
    };
    tracing::debug!(table = %prefilter, "kernel pre-filter derived from the rules");
    let mut source = EbpfSource::open(&config.source, &prefilter).context("starting the eBPF source")?;
    if sysctl::check_events()? == EventsSetting::Auto {
        tracing::warn!(
            "net.netfilter.nf_conntrack_events is 2: connections created before conntrackd started \
             produce no DESTROY event; set it to 1 to see them all"
        );
    }
    let sinks = Sinks::start(&config)?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut drain_tick = interval(config.source.drain_interval);
    drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut report_tick = interval(REPORT_INTERVAL);
    report_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pipeline = Pipeline { rules: config.rules, batch: Vec::with_capacity(4096), dropped_by_rules: 0 };
    let mut reporter = LossReporter::default();
    tracing::info!(source = "ebpf", "conntrackd ready");
    loop {
        tokio::select! {
            ready = source.readable() => ready?,
            _ = drain_tick.tick() => {}
            _ = report_tick.tick() => reporter.report(&source.counters(), &sinks.stats()),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
        pipeline.drain(&mut source, &sinks);
    }
    pipeline.drain(&mut source, &sinks);
    let counters = source.counters();
    reporter.report(&counters, &sinks.stats());
    let sink_stats = sinks.shutdown();
    tracing::info!(
        kernel = %counters.describe(),
        decode_errors = source.decode_errors,
        dropped_by_rules = pipeline.dropped_by_rules,
        sinks = %describe_sinks(&sink_stats),
        "conntrackd stopped"
    );
    Ok(())
}

/// Moves events from the source through the rules to the sinks, in batches.
struct Pipeline {
    rules: Rules,
    batch: Vec<Event>,
    /// Events the kernel passed on that a rule dropped.
    dropped_by_rules: u64,
}

impl Pipeline {
    fn drain(&mut self, source: &mut EbpfSource, sinks: &Sinks) {
        loop {
            self.batch.clear();
            if source.drain(&mut self.batch) == 0 {
                return;
            }
            let before = self.batch.len();
            let rules = &self.rules;
            self.batch.retain(|ev| rules.logs(ev));
            self.dropped_by_rules += (before - self.batch.len()) as u64;
            sinks.send(&self.batch);
        }
    }
}

/// Warns when the kernel ring or a sink queue lost events since the last check.
#[derive(Default)]
struct LossReporter {
    ring_full: u64,
    parse_errors: u64,
    sink_drops: Vec<(&'static str, u64)>,
}

impl LossReporter {
    fn report(&mut self, counters: &KernelCounters, sinks: &[(&'static str, SinkStats)]) {
        let ring_full = counters.get(Counter::RingFull);
        if ring_full > self.ring_full {
            tracing::warn!(
                lost = ring_full - self.ring_full,
                total = ring_full,
                "kernel ring buffer was full: events lost; raise source.ring_buffer_bytes"
            );
            self.ring_full = ring_full;
        }
        let parse_errors = counters.get(Counter::ParseError) + counters.get(Counter::WalkLimit);
        if parse_errors > self.parse_errors {
            tracing::warn!(new = parse_errors - self.parse_errors, total = parse_errors, "malformed ctnetlink messages");
            self.parse_errors = parse_errors;
        }
        for &(name, stats) in sinks {
            let dropped = stats.dropped_queue_full + stats.dropped_write_error;
            let last = self.sink_drops.iter_mut().find(|(n, _)| *n == name);
            let previous = last.as_ref().map_or(0, |(_, d)| *d);
            if dropped > previous {
                tracing::warn!(sink = name, lost = dropped - previous, total = dropped, "sink dropped events");
            }
            match last {
                Some(entry) => entry.1 = dropped,
                None => self.sink_drops.push((name, dropped)),
            }
        }
    }
}

fn describe_sinks(stats: &[(&'static str, SinkStats)]) -> String {
    stats
        .iter()
        .map(|(name, s)| {
            format!(
                "{name}.written={} {name}.dropped_queue_full={} {name}.dropped_write_error={}",
                s.written, s.dropped_queue_full, s.dropped_write_error
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}
