//! Runs one source task per watched namespace and collects their counters.
//! With `netns = ["all"]`, [`Sources::rescan`] adds namespaces created later
//! and stops the sources of namespaces that were removed.
use std::{sync::Arc, time::Duration};

use conntrackd_common::Counter;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::{interval, MissedTickBehavior},
};

use super::{
    ebpf::{EbpfSource, EbpfSourceError},
    local_addrs::LocalAddrs,
    netlink::{NetlinkSource, NetlinkSourceError, Overflow},
    netns::{self, Namespace, NetnsError},
    socket::{self, SocketError},
    sysctl::{self, SysctlError},
    KernelCounters, Kind,
};
use crate::{config::SourceConfig, event::Event, filter::Prefilter};

/// Events travel from the source tasks to the pipeline in batches.
pub(crate) type Batch = Vec<Event>;

const REPORT_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error("eBPF source: {0}")]
    Ebpf(#[from] EbpfSourceError),
    #[error("netlink source: {0}")]
    Netlink(#[from] NetlinkSourceError),
    #[error("network namespace {netns}: {source}")]
    In { netns: String, source: Box<SourceError> },
}

/// A source of either kind.
enum AnySource {
    /// Boxed: the eBPF source is much larger than the netlink one.
    Ebpf(Box<EbpfSource>),
    Netlink(NetlinkSource),
}

impl AnySource {
    async fn readable(&mut self) -> Result<(), SourceError> {
        match self {
            AnySource::Ebpf(s) => Ok(s.readable().await?),
            AnySource::Netlink(s) => Ok(s.readable().await?),
        }
    }

    fn drain(&mut self, out: &mut Vec<Event>) -> Result<usize, SourceError> {
        match self {
            AnySource::Ebpf(s) => Ok(s.drain(out)),
            AnySource::Netlink(s) => Ok(s.drain(out)?),
        }
    }

    fn update_prefilter(&mut self, prefilter: &Prefilter) -> Result<(), SourceError> {
        match self {
            AnySource::Ebpf(s) => Ok(s.update_prefilter(prefilter)?),
            AnySource::Netlink(s) => Ok(s.update_prefilter(prefilter)?),
        }
    }

    fn report(&self) -> StopReport {
        match self {
            AnySource::Ebpf(s) => StopReport { counters: s.counters(), decode_errors: s.decode_errors, ..StopReport::default() },
            AnySource::Netlink(s) => StopReport { counters: s.counters(), overflow: s.overflow(), ..StopReport::default() },
        }
    }
}

/// Counters of stopped sources, summed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StopReport {
    pub counters: KernelCounters,
    pub decode_errors: u64,
    pub overflow: Overflow,
    pub namespaces: usize,
}

impl StopReport {
    fn add(&mut self, other: &StopReport) {
        self.counters.add(&other.counters);
        self.decode_errors += other.decode_errors;
        self.overflow.overflows += other.overflow.overflows;
        self.overflow.lost += other.overflow.lost;
        self.namespaces += other.namespaces;
    }
}

struct Running {
    ns: Namespace,
    stop: watch::Sender<bool>,
    task: JoinHandle<StopReport>,
}

/// The latest counters of every source, by namespace label, and whether it
/// is still attached, for /metrics and /healthz.
pub(crate) type Snapshots = Arc<std::sync::Mutex<Vec<(Arc<str>, StopReport, bool)>>>;

fn publish(snapshots: &Snapshots, label: &Arc<str>, report: StopReport, attached: bool) {
    let mut all = snapshots.lock().unwrap_or_else(|p| p.into_inner());
    match all.iter_mut().find(|(l, ..)| l == label) {
        Some(entry) => (entry.1, entry.2) = (report, attached),
        None => all.push((Arc::clone(label), report, attached)),
    }
}

/// Every running source.
pub(crate) struct Sources {
    config: SourceConfig,
    prefilter: Prefilter,
    kind: Kind,
    tx: Option<mpsc::Sender<Batch>>,
    running: Vec<Running>,
    stopped: Vec<JoinHandle<StopReport>>,
    prefilter_tx: watch::Sender<Prefilter>,
    pub snapshots: Snapshots,
}

impl Sources {
    /// Opens a source in every configured namespace; batches arrive on the receiver.
    pub fn start(config: &SourceConfig, prefilter: Prefilter) -> Result<(Self, mpsc::Receiver<Batch>), SourceError> {
        let (tx, rx) = mpsc::channel(64);
        let (prefilter_tx, _) = watch::channel(prefilter);
        let mut sources = Self {
            config: config.clone(),
            prefilter,
            kind: config.kind,
            tx: Some(tx),
            running: Vec::new(),
            stopped: Vec::new(),
            prefilter_tx,
            snapshots: Snapshots::default(),
        };
        let namespaces = if config.all_namespaces { netns::discover() } else { config.namespaces()? };
        for ns in namespaces {
            sources.add(ns, !config.all_namespaces)?;
        }
        Ok((sources, rx))
    }

    /// The kind in use ("ebpf" or "netlink") after any fallback.
    pub fn kind(&self) -> &'static str {
        if self.kind == Kind::Netlink {
            "netlink"
        } else {
            "ebpf"
        }
    }

    pub fn namespaces(&self) -> usize {
        self.running.len()
    }

    /// Hands a new pre-filter table to every source (and to sources opened later).
    pub fn update_prefilter(&mut self, prefilter: Prefilter) {
        self.prefilter = prefilter;
        let _ = self.prefilter_tx.send(prefilter);
    }

    /// Whether [`Sources::rescan`] has anything to do.
    pub fn discovers(&self) -> bool {
        self.config.all_namespaces
    }

    /// Watches namespaces that appeared under /run/netns; stops those that vanished.
    pub fn rescan(&mut self) {
        let current = netns::discover();
        let (gone, keep): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.running).into_iter().partition(|r| !current.iter().any(|c| c.id == r.ns.id));
        self.running = keep;
        for r in gone {
            tracing::info!(netns = %r.ns.label, "network namespace removed; no longer watched");
            let _ = r.stop.send(true);
            self.stopped.push(r.task);
        }
        for ns in current {
            if !self.running.iter().any(|r| r.ns.id == ns.id) {
                let _ = self.add(ns, false);
            }
        }
    }

    /// Stops every source after a last drain, lets the pipeline take the rest
    /// through the receiver, and returns the summed counters.
    pub async fn stop(mut self, rx: &mut mpsc::Receiver<Batch>, mut handle: impl FnMut(Batch)) -> StopReport {
        for r in &self.running {
            let _ = r.stop.send(true);
        }
        self.tx = None;
        let mut tasks: Vec<JoinHandle<StopReport>> = self.running.drain(..).map(|r| r.task).collect();
        tasks.append(&mut self.stopped);
        drop(self);
        while let Some(batch) = rx.recv().await {
            handle(batch);
        }
        let mut total = StopReport::default();
        for task in tasks {
            match task.await {
                Ok(report) => total.add(&report),
                Err(err) => tracing::error!(error = %err, "source task failed"),
            }
        }
        total
    }

    fn add(&mut self, ns: Namespace, fatal: bool) -> Result<(), SourceError> {
        let source = match self.open(&ns) {
            Ok(source) => source,
            Err(err) if fatal => return Err(SourceError::In { netns: ns.label.to_string(), source: Box::new(err) }),
            Err(err) => {
                tracing::warn!(netns = %ns.label, error = %err, "cannot watch network namespace");
                return Ok(());
            }
        };
        let Some(tx) = self.tx.clone() else { return Ok(()) };
        let label = self.config.label_events.then(|| Arc::clone(&ns.label));
        let (stop, stop_rx) = watch::channel(false);
        let ctx = TaskCtx {
            label,
            name: Arc::clone(&ns.label),
            tx,
            stop: stop_rx,
            prefilter: self.prefilter_tx.subscribe(),
            snapshots: Arc::clone(&self.snapshots),
            every: self.config.drain_interval,
            local: LocalAddrs::new(ns.clone()),
        };
        publish(&self.snapshots, &ns.label, StopReport { namespaces: 1, ..source.report() }, true);
        let task = tokio::spawn(run(source, ctx));
        tracing::info!(netns = %ns.label, source = self.kind(), "watching network namespace");
        self.running.push(Running { ns, stop, task });
        Ok(())
    }

    fn open(&mut self, ns: &Namespace) -> Result<AnySource, SourceError> {
        let socket = self.socket_in(ns, true)?;
        match self.kind {
            Kind::Netlink => Ok(self.netlink(socket)?),
            Kind::Ebpf => Ok(AnySource::Ebpf(Box::new(EbpfSource::open(&self.config, &self.prefilter, socket)?))),
            Kind::Auto => match EbpfSource::open(&self.config, &self.prefilter, socket) {
                Ok(source) => {
                    self.kind = Kind::Ebpf;
                    Ok(AnySource::Ebpf(Box::new(source)))
                }
                Err(err) => {
                    tracing::warn!(error = %chain(&err), "the eBPF source is unavailable; falling back to the netlink source");
                    self.kind = Kind::Netlink;
                    let socket = self.socket_in(ns, false)?;
                    Ok(self.netlink(socket)?)
                }
            },
        }
    }

    fn netlink(&self, socket: std::os::fd::OwnedFd) -> Result<AnySource, NetlinkSourceError> {
        let c = &self.config;
        Ok(AnySource::Netlink(NetlinkSource::open(socket, &self.prefilter, c.receive_buffer_bytes, c.reliable)?))
    }

    /// Opens the socket inside `ns`, applies and reads the sysctls there
    /// (and says what they mean when `report`).
    fn socket_in(&self, ns: &Namespace, report: bool) -> Result<std::os::fd::OwnedFd, SourceError> {
        let set = self.config.set_sysctls;
        let (socket, settings) = ns.run_in(move || -> Result<_, SourceError> {
            let socket = socket::open()?;
            if set {
                sysctl::enable_all()?;
            }
            Ok((socket, sysctl::read()?))
        })??;
        if report {
            sysctl::report(&settings, &ns.label);
        }
        Ok(socket)
    }
}

/// An error and its sources, so the kernel's own error (e.g. EPERM) is quoted.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// What a source task needs besides its source.
struct TaskCtx {
    /// What events carry as `netns` (None when only our own namespace is watched).
    label: Option<Arc<str>>,
    /// The namespace's name for logs and metrics.
    name: Arc<str>,
    tx: mpsc::Sender<Batch>,
    stop: watch::Receiver<bool>,
    prefilter: watch::Receiver<Prefilter>,
    snapshots: Snapshots,
    every: Duration,
    /// The namespace's own addresses: a NEW from one of them is locally originated.
    local: LocalAddrs,
}

/// How often a source publishes its counters for /metrics.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// One namespace's source: drain on wakeups and on the timer, until stopped.
async fn run(mut source: AnySource, mut ctx: TaskCtx) -> StopReport {
    let mut tick = interval(ctx.every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut report_tick = interval(REPORT_INTERVAL);
    let mut publish_tick = interval(PUBLISH_INTERVAL);
    let mut reported = StopReport::default();
    let label = ctx.label.clone();
    loop {
        tokio::select! {
            ready = source.readable() => if let Err(err) = ready {
                tracing::error!(netns = %ctx.name, error = %err, "source stopped");
                break;
            },
            _ = tick.tick() => {}
            _ = report_tick.tick() => report_losses(&source.report(), &mut reported, Some(&ctx.name)),
            _ = publish_tick.tick() => publish(&ctx.snapshots, &ctx.name, StopReport { namespaces: 1, ..source.report() }, true),
            changed = ctx.prefilter.changed() => if changed.is_ok() {
                let prefilter = *ctx.prefilter.borrow_and_update();
                if let Err(err) = source.update_prefilter(&prefilter) {
                    tracing::error!(netns = %ctx.name, error = %err, "cannot apply the new pre-filter");
                }
            },
            _ = ctx.stop.changed() => break,
        }
        if !drain(&mut source, label.as_ref(), &ctx.tx, &mut ctx.local).await {
            break;
        }
    }
    drain(&mut source, label.as_ref(), &ctx.tx, &mut ctx.local).await;
    let report = StopReport { namespaces: 1, ..source.report() };
    report_losses(&report, &mut reported, Some(&ctx.name));
    publish(&ctx.snapshots, &ctx.name, report, false);
    report
}

/// Drains everything waiting; false when the pipeline is gone or reading failed.
async fn drain(source: &mut AnySource, label: Option<&Arc<str>>, tx: &mpsc::Sender<Batch>, local: &mut LocalAddrs) -> bool {
    loop {
        let mut batch = Vec::new();
        match source.drain(&mut batch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err) => {
                tracing::error!(error = %err, "reading the source failed");
                return false;
            }
        }
        for ev in &mut batch {
            if let Some(label) = label {
                ev.netns = Some(Arc::clone(label));
            }
            if ev.kind == crate::event::EventType::New {
                ev.local_origin = Some(local.contains(ev.orig.src));
            }
        }
        if !batch.is_empty() && tx.send(batch).await.is_err() {
            return false;
        }
    }
}

/// Warns about losses since the last report.
fn report_losses(now: &StopReport, last: &mut StopReport, netns: Option<&str>) {
    let netns = netns.unwrap_or("self");
    let ring_full = now.counters.get(Counter::RingFull);
    if ring_full > last.counters.get(Counter::RingFull) {
        let lost = ring_full - last.counters.get(Counter::RingFull);
        tracing::warn!(netns, lost, total = ring_full, "kernel ring buffer was full: events lost; raise source.ring_buffer_bytes");
    }
    if now.overflow.lost > last.overflow.lost {
        let lost = now.overflow.lost - last.overflow.lost;
        tracing::warn!(netns, lost, total = now.overflow.lost, "netlink receive buffer overflowed: events lost; raise source.receive_buffer_bytes");
    }
    let bad = |c: &KernelCounters| c.get(Counter::ParseError) + c.get(Counter::WalkLimit);
    if bad(&now.counters) > bad(&last.counters) {
        tracing::warn!(netns, new = bad(&now.counters) - bad(&last.counters), total = bad(&now.counters), "malformed ctnetlink messages");
    }
    *last = *now;
}
