//! Wiring: sources (one task per namespace) -> rules -> sinks, plus signals,
//! namespace rescans and loss reporting.
use std::time::Duration;

use anyhow::Context;
use tokio::{
    signal::unix::{signal, SignalKind},
    time::{interval, MissedTickBehavior},
};

use crate::{
    config::Config,
    event::Event,
    filter::{Prefilter, Rules},
    sink::{SinkStats, Sinks},
    source::{Sources, StopReport},
};

/// How often sink losses are checked and reported.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// How often `netns = ["all"]` looks for new namespaces.
const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

/// What `conntrackd check` prints for a valid configuration.
pub(crate) fn check_report(config: &Config) -> String {
    let mut out = String::from("configuration is valid\n");
    if config.rules.rules.is_empty() {
        out.push_str("rules: none (every TCP and UDP event is logged)\n");
    }
    for (i, rule) in config.rules.rules.iter().enumerate() {
        out.push_str(&format!("rule {} ({:?}): {}\n", i + 1, rule.language, rule.text));
    }
    out.push_str(&format!("{}\n", prefilter(config)));
    out
}

fn prefilter(config: &Config) -> Prefilter {
    if config.source.kernel_prefilter {
        Prefilter::derive(&config.rules)
    } else {
        Prefilter::keep_all()
    }
}

/// Runs until SIGINT or SIGTERM.
pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    let prefilter = prefilter(&config);
    if !config.source.kernel_prefilter {
        tracing::info!("kernel pre-filter disabled (source.kernel_prefilter = false): the rules decide in userspace");
    }
    tracing::debug!(table = %prefilter, "kernel pre-filter derived from the rules");
    let (mut sources, mut rx) = Sources::start(&config.source, prefilter).context("starting the source")?;
    let sinks = Sinks::start(&config)?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut report_tick = interval(REPORT_INTERVAL);
    report_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut rescan_tick = interval(RESCAN_INTERVAL);
    rescan_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pipeline = Pipeline { rules: config.rules, read: 0, dropped_by_rules: 0 };
    let mut reporter = SinkLossReporter::default();
    tracing::info!(source = sources.kind(), namespaces = sources.namespaces(), prefilter = %prefilter, "conntrackd ready");
    loop {
        tokio::select! {
            batch = rx.recv() => match batch {
                Some(batch) => pipeline.handle(batch, &sinks),
                None => break,
            },
            _ = rescan_tick.tick(), if sources.discovers() => sources.rescan(),
            _ = report_tick.tick() => reporter.report(&sinks.stats()),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    let report = sources.stop(&mut rx, |batch| pipeline.handle(batch, &sinks)).await;
    reporter.report(&sinks.stats());
    let sink_stats = sinks.shutdown();
    log_stopped(&report, &pipeline, &sink_stats);
    Ok(())
}

fn log_stopped(report: &StopReport, pipeline: &Pipeline, sinks: &[(&'static str, SinkStats)]) {
    tracing::info!(
        kernel = %report.counters.describe(),
        decode_errors = report.decode_errors,
        overflows = report.overflow.overflows,
        lost = report.overflow.lost,
        namespaces = report.namespaces,
        read = pipeline.read,
        dropped_by_rules = pipeline.dropped_by_rules,
        sinks = %describe_sinks(sinks),
        "conntrackd stopped"
    );
}

/// Applies the rules to each batch and hands what is kept to the sinks.
struct Pipeline {
    rules: Rules,
    /// Events the sources delivered.
    read: u64,
    /// Events the sources passed on that a rule dropped.
    dropped_by_rules: u64,
}

impl Pipeline {
    fn handle(&mut self, mut batch: Vec<Event>, sinks: &Sinks) {
        let before = batch.len();
        self.read += before as u64;
        let rules = &self.rules;
        batch.retain(|ev| rules.logs(ev));
        self.dropped_by_rules += (before - batch.len()) as u64;
        sinks.send(&batch);
    }
}

/// Warns when a sink queue lost events since the last check.
#[derive(Default)]
struct SinkLossReporter {
    sink_drops: Vec<(&'static str, u64)>,
}

impl SinkLossReporter {
    fn report(&mut self, sinks: &[(&'static str, SinkStats)]) {
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
