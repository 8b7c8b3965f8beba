//! Wiring: sources (every watched namespace) -> process attribution -> rules
//! -> enrichment (GeoIP)
//! -> sinks, plus signals (SIGTERM/SIGINT stop, SIGHUP reloads), GeoIP file
//! watching, metrics, systemd notifications and loss reporting. Namespace
//! discovery runs on the sources' own worker thread.
//!
//! SIGHUP never stalls the event path: the new configuration is loaded and
//! the sinks it adds or changes are started on a blocking thread
//! ([`prepare_reload`]); the event task then swaps rules, kernel table and
//! sinks between two batches ([`apply_reload`]) without waiting for anything.
//! Replaced sinks drain on their own threads. SIGHUPs that arrive while a
//! reload is being prepared are folded into one more reload after it.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use anyhow::Context;
use tokio::{
    signal::unix::{signal, SignalKind},
    time::{interval, MissedTickBehavior},
};

use crate::{
    cli::LevelHandle,
    config::{Config, Overrides},
    enrich::{process::Attributor, Enricher},
    event::{community_id::CommunityId, Event},
    filter::{Prefilter, Rules},
    metrics::Metrics,
    notify,
    sink::{self, Retiring, SinkError, SinkStats, Sinks},
    source::{Sources, StopReport},
};

/// How often sink losses are checked and reported.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What SIGHUP needs to load the configuration again.
pub(crate) struct Reload {
    pub path: Option<PathBuf>,
    pub overrides: Overrides,
    pub level: Option<LevelHandle>,
}

pub(crate) fn prefilter(config: &Config) -> Prefilter {
    if config.source.kernel_prefilter {
        Prefilter::derive(&config.rules)
    } else {
        Prefilter::keep_all()
    }
}

/// Runs until SIGINT or SIGTERM.
pub(crate) async fn run(config: Config, reload: Reload) -> anyhow::Result<()> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let enricher = Enricher::open(&config.geoip)?;
    for line in enricher.iter().flat_map(Enricher::describe) {
        tracing::info!(database = %line, "GeoIP database opened");
    }
    let prefilter = prefilter(&config);
    if !config.source.kernel_prefilter {
        tracing::info!("kernel pre-filter disabled (source.kernel_prefilter = false): the rules decide in userspace");
    }
    tracing::debug!(table = %prefilter, "kernel pre-filter derived from the rules");
    let (mut sources, mut rx) = Sources::start(&config.source, prefilter).context("starting the source")?;
    let mut sinks = Sinks::start(&config.sinks)?;
    let metrics = Arc::new(Metrics { sources: Arc::clone(&sources.snapshots), unhealthy_after: config.metrics.unhealthy_after, ..Metrics::default() });
    *metrics.sinks.lock().unwrap_or_else(|p| p.into_inner()) = sinks.queues();
    *metrics.source_kind.lock().unwrap_or_else(|p| p.into_inner()) = sources.kind();
    *metrics.rule_errors.lock().unwrap_or_else(|p| p.into_inner()) = config.rules.errors();
    if let Some(addr) = config.metrics.listen {
        crate::metrics::serve(addr, Arc::clone(&metrics)).await.with_context(|| format!("metrics.listen {addr}"))?;
    }
    let mut signals = Signals::new()?;
    let mut ticks = Ticks::new(config.geoip.watch_interval);
    let mut pipeline = Pipeline {
        rules: config.rules.clone(),
        attributor: Attributor::default(),
        enricher,
        community_id_seed: config.community_id_seed,
        metrics: Arc::clone(&metrics),
    };
    let mut running = config;
    let mut reporter = SinkLossReporter::default();
    let mut retiring: Vec<Retiring> = Vec::new();
    let mut reloading: Option<tokio::task::JoinHandle<Result<ReloadReady, ReloadError>>> = None;
    let mut reload_again = false;
    tracing::info!(source = sources.kind(), namespaces = sources.namespaces(), prefilter = %prefilter, "conntrackd ready");
    notify::notify("READY=1");
    loop {
        tokio::select! {
            batch = rx.recv() => match batch {
                Some(batch) => pipeline.handle(batch, &sinks),
                None => break,
            },
            _ = ticks.report.tick() => reporter.report(&sinks.stats()),
            _ = ticks.watchdog.tick(), if ticks.watchdog_on => notify::notify("WATCHDOG=1"),
            _ = ticks.geoip.tick(), if ticks.geoip_on => pipeline.check_geoip_files(),
            _ = signals.hup.recv() => match reloading {
                Some(_) => reload_again = true,
                None => reloading = Some(prepare_reload(&reload, &sinks, &running)),
            },
            done = async { match reloading.as_mut() { Some(task) => task.await, None => std::future::pending().await } } => {
                reloading = None;
                match done {
                    Ok(Ok(ready)) => {
                        let mut live = Live { running: &mut running, pipeline: &mut pipeline, sources: &mut sources, sinks: &mut sinks, metrics: &metrics };
                        retiring.push(apply_reload(ready, &mut live, &reload));
                    }
                    Ok(Err(err)) => {
                        metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %err, "reload failed: keeping the running configuration");
                    }
                    Err(err) => {
                        metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %err, "reload failed (the preparing thread ended abnormally): keeping the running configuration");
                    }
                }
                if std::mem::take(&mut reload_again) {
                    reloading = Some(prepare_reload(&reload, &sinks, &running));
                }
            }
            _ = signals.term.recv() => break,
            _ = signals.int.recv() => break,
        }
    }
    notify::notify("STOPPING=1");
    if let Some(task) = reloading {
        // A reload still being prepared: stop what it started.
        if let Ok(Ok(ready)) = task.await {
            ready.sinks.abandon();
        }
    }
    let report = sources.stop(&mut rx, |batch| pipeline.handle(batch, &sinks)).await;
    reporter.report(&sinks.stats());
    let mut sink_stats = sinks.shutdown();
    for (name, old) in retiring.into_iter().flat_map(Retiring::finish) {
        match sink_stats.iter_mut().find(|(n, _)| *n == name) {
            Some((_, s)) => s.add(&old),
            None => sink_stats.push((name, old)),
        }
    }
    log_stopped(&report, &metrics, &sink_stats, &pipeline);
    Ok(())
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())?, hup: signal(SignalKind::hangup())? })
    }
}

struct Ticks {
    report: tokio::time::Interval,
    watchdog: tokio::time::Interval,
    watchdog_on: bool,
    geoip: tokio::time::Interval,
    geoip_on: bool,
}

impl Ticks {
    fn new(geoip_watch: Option<Duration>) -> Self {
        let every = |d| {
            let mut i = interval(d);
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        };
        let watchdog = notify::watchdog_interval();
        Self {
            report: every(REPORT_INTERVAL),
            watchdog: every(watchdog.unwrap_or(Duration::from_secs(3600))),
            watchdog_on: watchdog.is_some(),
            geoip: every(geoip_watch.unwrap_or(Duration::from_secs(3600))),
            geoip_on: geoip_watch.is_some(),
        }
    }
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("a sink does not start: {0}")]
    Sink(#[from] SinkError),
}

/// A reload loaded, validated and started, ready to swap in.
struct ReloadReady {
    config: Config,
    sinks: sink::Prepared,
    /// Opened when the `[geoip]` settings changed (a failure keeps the old databases).
    enricher: Option<Result<Option<Enricher>, crate::enrich::DatabaseError>>,
}

/// SIGHUP: loads the configuration again and starts the sinks it adds or
/// changes, on a blocking thread (file reads, sockets, spool directories).
fn prepare_reload(reload: &Reload, sinks: &Sinks, running: &Config) -> tokio::task::JoinHandle<Result<ReloadReady, ReloadError>> {
    let (path, overrides, specs, geoip) = (reload.path.clone(), reload.overrides.clone(), sinks.specs(), running.geoip.clone());
    tokio::task::spawn_blocking(move || {
        let config = Config::load(path.as_deref(), &overrides)?;
        let sinks = sink::prepare(&config.sinks, &specs)?;
        let enricher = (config.geoip != geoip).then(|| Enricher::open(&config.geoip));
        Ok(ReloadReady { config, sinks, enricher })
    })
}

/// What a reload swaps, on the event task.
struct Live<'a> {
    running: &'a mut Config,
    pipeline: &'a mut Pipeline,
    sources: &'a mut Sources,
    sinks: &'a mut Sinks,
    metrics: &'a Metrics,
}

/// Swaps a prepared reload in between two batches: kernel table, rules,
/// sinks (unchanged ones keep running untouched), GeoIP, log level. Never blocks.
fn apply_reload(ready: ReloadReady, live: &mut Live<'_>, reload: &Reload) -> Retiring {
    let ReloadReady { config: new, sinks: prepared, enricher } = ready;
    if new.source != live.running.source || new.metrics != live.running.metrics {
        tracing::warn!("source and metrics settings changed: they apply at the next restart");
    }
    let table = prefilter(&new);
    live.sources.update_prefilter(table);
    live.pipeline.rules = new.rules.clone();
    live.pipeline.community_id_seed = new.community_id_seed;
    *live.metrics.rule_errors.lock().unwrap_or_else(|p| p.into_inner()) = new.rules.errors();
    let started = prepared.started();
    let retiring = live.sinks.apply(prepared);
    *live.metrics.sinks.lock().unwrap_or_else(|p| p.into_inner()) = live.sinks.queues();
    match enricher {
        Some(Ok(enricher)) => live.pipeline.enricher = enricher,
        Some(Err(err)) => tracing::error!(error = %err, "GeoIP settings changed but the databases do not open; keeping the old ones"),
        None => live.pipeline.reload_geoip(),
    }
    if let Some(handle) = &reload.level {
        let _ = handle.modify(|level| *level = new.log.level);
    }
    live.metrics.reloads.fetch_add(1, Ordering::Relaxed);
    tracing::info!(rules = new.rules.rules.len(), prefilter = %table, restarted_sinks = ?started, "configuration reloaded");
    *live.running = new;
    retiring
}

fn log_stopped(report: &StopReport, metrics: &Metrics, sinks: &[(&'static str, SinkStats)], pipeline: &Pipeline) {
    tracing::info!(
        kernel = %report.counters.describe(),
        decode_errors = report.decode_errors,
        overflows = report.overflow.overflows,
        lost = report.overflow.lost,
        namespaces = report.namespaces,
        read = metrics.read.load(Ordering::Relaxed),
        dropped_by_rules = metrics.dropped_by_rules.load(Ordering::Relaxed),
        attributed = pipeline.attributor.attributed,
        not_attributed = pipeline.attributor.refused,
        geoip = %pipeline.enricher.as_ref().map(|e| e.stats().describe()).unwrap_or_else(|| "off".into()),
        sinks = %describe_sinks(sinks),
        "conntrackd stopped"
    );
}

/// Applies the rules to each batch, enriches what is kept (never what is
/// dropped) and hands it to the sinks.
struct Pipeline {
    rules: Rules,
    /// Which process made the connection; before the rules, which may test it.
    attributor: Attributor,
    /// GeoIP, when configured.
    enricher: Option<Enricher>,
    /// `community_id_seed`.
    community_id_seed: u16,
    metrics: Arc<Metrics>,
}

impl Pipeline {
    fn handle(&mut self, mut batch: Vec<Event>, sinks: &Sinks) {
        let before = batch.len();
        batch.iter_mut().for_each(|ev| self.attributor.attribute(ev));
        let rules = &self.rules;
        batch.retain(|ev| rules.logs(ev));
        self.metrics.read.fetch_add(before as u64, Ordering::Relaxed);
        self.metrics.dropped_by_rules.fetch_add((before - batch.len()) as u64, Ordering::Relaxed);
        let seed = self.community_id_seed;
        for ev in &mut batch {
            let (orig, protocol) = (&ev.orig, ev.protocol.number());
            ev.community_id = Some(CommunityId::new(seed, protocol, (orig.src, orig.src_port), (orig.dst, orig.dst_port)));
        }
        if let Some(enricher) = &mut self.enricher {
            batch.iter_mut().for_each(|ev| enricher.enrich(ev));
            *self.metrics.geoip.lock().unwrap_or_else(|p| p.into_inner()) = Some(enricher.stats());
        }
        self.metrics.attributed.store(self.attributor.attributed, Ordering::Relaxed);
        sinks.send(&batch);
    }

    /// SIGHUP with unchanged `[geoip]` settings: reopen the databases
    /// (a replaced file is read anew; a failure keeps the old reader).
    fn reload_geoip(&mut self) {
        match &mut self.enricher {
            Some(enricher) => enricher.reload("SIGHUP"),
            None => tracing::debug!("SIGHUP: no GeoIP database is configured"),
        }
    }

    fn check_geoip_files(&mut self) {
        if let Some(enricher) = &mut self.enricher {
            enricher.check_files();
        }
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
            format!("{name}.written={} {name}.dropped_queue_full={} {name}.dropped_write_error={}", s.written, s.dropped_queue_full, s.dropped_write_error)
        })
        .collect::<Vec<_>>()
        .join(" ")
}
