//! Wiring: source -> (userspace check of the pre-filter) -> rules ->
//! enrichment -> sinks, plus signals (SIGHUP reloads GeoIP), the timers and
//! loss reporting.
use std::{net::IpAddr, time::Duration};

use anyhow::Context;
use conntrackd_common::Counter;
use tokio::{
    signal::unix::{signal, SignalKind},
    time::{interval, MissedTickBehavior},
};

use crate::{
    config::Config,
    enrich::{Enricher, DST},
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

/// What `conntrackd check` prints for a valid configuration (opening the
/// GeoIP databases is part of the check).
pub(crate) fn check_report(config: &Config) -> anyhow::Result<String> {
    let enricher = Enricher::open(&config.geoip)?;
    let mut out = String::from("configuration is valid\n");
    for line in enricher.iter().flat_map(Enricher::describe) {
        out.push_str(&line);
        out.push('\n');
    }
    if config.rules.rules.is_empty() {
        out.push_str("rules: none (every TCP and UDP event is logged)\n");
    }
    for (i, rule) in config.rules.rules.iter().enumerate() {
        out.push_str(&format!("rule {} ({:?}): {}\n", i + 1, rule.language, rule.text));
    }
    out.push_str(&format!("{}\n", Prefilter::derive(&config.rules)));
    Ok(out)
}

/// `conntrackd geoip lookup IP`: the fields the daemon would attach to a
/// destination `ip`, as a JSON object, and a note on stderr when there are none.
pub(crate) fn geoip_lookup(config: &Config, ip: IpAddr) -> anyhow::Result<String> {
    let mut enricher = Enricher::open(&config.geoip)?.context("no GeoIP database is configured: set [geoip] database or --geoip.database")?;
    let entry = enricher.lookup(ip);
    let stats = enricher.stats();
    if stats.city.decode_errors + stats.asn.decode_errors > 0 {
        anyhow::bail!("the record for {ip} has an unexpected shape (see the warning above)");
    }
    let mut out = Vec::from(&b"{"[..]);
    if let Some(info) = &entry {
        let mut field = |name: &str, value| {
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(format!("\"{name}\":").as_bytes());
            crate::sink::json::write_value(&mut out, value);
        };
        info.contract_fields(&DST, &mut field);
        info.extra_fields(&DST, &mut field);
    } else {
        let class = crate::filter::network::NetworkClass::of(ip.to_canonical());
        match class {
            crate::filter::network::NetworkClass::Public => eprintln!("{ip}: the databases do not know this address"),
            other => eprintln!("{ip} is a {} address: the daemon attaches no GeoIP fields to it", other.as_str()),
        }
    }
    out.extend_from_slice(b"}\n");
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Runs until SIGINT or SIGTERM.
pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    let enricher = Enricher::open(&config.geoip)?;
    for line in enricher.iter().flat_map(Enricher::describe) {
        tracing::info!(database = %line, "GeoIP database opened");
    }
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
    let mut sighup = signal(SignalKind::hangup())?;
    let mut geoip_tick = interval(config.geoip.watch_interval.unwrap_or(Duration::from_secs(3600)));
    geoip_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let watch_files = config.geoip.watch_interval.is_some();
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut drain_tick = interval(config.source.drain_interval);
    drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut report_tick = interval(REPORT_INTERVAL);
    report_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pipeline = Pipeline { rules: config.rules, enricher, batch: Vec::with_capacity(4096), dropped_by_rules: 0 };
    let mut reporter = LossReporter::default();
    tracing::info!(source = "ebpf", "conntrackd ready");
    loop {
        tokio::select! {
            ready = source.readable() => ready?,
            _ = drain_tick.tick() => {}
            _ = report_tick.tick() => reporter.report(&source.counters(), &sinks.stats()),
            _ = sighup.recv() => pipeline.reload_geoip(),
            _ = geoip_tick.tick(), if watch_files => pipeline.check_geoip_files(),
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
        geoip = %pipeline.enricher.as_ref().map(|e| e.stats().describe()).unwrap_or_else(|| "off".into()),
        sinks = %describe_sinks(&sink_stats),
        "conntrackd stopped"
    );
    Ok(())
}

/// Moves events from the source through the rules and the enrichment to
/// the sinks, in batches.
struct Pipeline {
    rules: Rules,
    /// GeoIP, when configured; only kept events are looked up.
    enricher: Option<Enricher>,
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
            if let Some(enricher) = &mut self.enricher {
                self.batch.iter_mut().for_each(|ev| enricher.enrich(ev));
            }
            sinks.send(&self.batch);
        }
    }

    /// SIGHUP: reopen the GeoIP databases between two batches (events wait in the ring).
    fn reload_geoip(&mut self) {
        match &mut self.enricher {
            Some(enricher) => enricher.reload("SIGHUP"),
            None => tracing::info!("SIGHUP: no GeoIP database is configured; nothing to reload"),
        }
    }

    fn check_geoip_files(&mut self) {
        if let Some(enricher) = &mut self.enricher {
            enricher.check_files();
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
