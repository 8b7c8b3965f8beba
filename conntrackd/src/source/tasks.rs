//! The source tasks: the eBPF source's one task, and the netlink source's hub
//! with one task per namespace. They take namespaces from the worker's
//! channel, drain on wakeups and on the drain timer, and publish counters.
use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{
    sync::{
        mpsc::{self, UnboundedReceiver},
        watch,
    },
    task::JoinSet,
    time::{interval, Interval, MissedTickBehavior},
};

use super::{
    ebpf::EbpfSource,
    local_addrs::LocalAddrs,
    manager::{open_netlink, Batch},
    netlink::NetlinkSource,
    stats::{self, report_losses, NamespaceStats, Snapshots, StopReport},
    worker::Update,
};
use crate::event::{prefilter::Prefilter, EventType};

/// How often losses are checked and logged.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// How often a source publishes its counters for /metrics.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// The eBPF source's key in [`stats::SourceStats::live`].
const EBPF_KEY: u64 = 0;

/// What a source task needs besides its source.
pub(crate) struct TaskCtx {
    pub tx: mpsc::Sender<Batch>,
    pub stop: watch::Receiver<bool>,
    pub prefilter: watch::Receiver<Prefilter>,
    pub snapshots: Snapshots,
    /// The drain timer.
    pub every: Duration,
    /// From the namespace worker; None once it has stopped.
    pub updates: Option<UnboundedReceiver<Update>>,
    /// Whether events carry `netns`.
    pub label_events: bool,
}

fn ticker(every: Duration) -> Interval {
    let mut tick = interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// The next update; pending forever once the worker is gone.
async fn next_update(updates: &mut Option<UnboundedReceiver<Update>>) -> Option<Update> {
    match updates {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The one eBPF task: every namespace's events come through its ring buffer.
pub(crate) async fn run_ebpf(mut source: EbpfSource, mut ctx: TaskCtx) -> StopReport {
    let (mut tick, mut report_tick, mut publish_tick) = (ticker(ctx.every), ticker(REPORT_INTERVAL), ticker(PUBLISH_INTERVAL));
    let mut reported = StopReport::default();
    loop {
        tokio::select! {
            ready = source.readable() => if let Err(err) = ready {
                tracing::error!(error = %err, "source stopped");
                break;
            },
            _ = tick.tick() => {}
            update = next_update(&mut ctx.updates) => match update {
                Some(update) => {
                    // Records of a namespace being released must find it still there.
                    if !drain_ebpf(&mut source, &ctx.tx).await {
                        break;
                    }
                    apply_ebpf(&mut source, update, &ctx.prefilter.borrow().kinds());
                }
                None => ctx.updates = None,
            },
            _ = report_tick.tick() => report_losses(&source.report(), &mut reported, None),
            _ = publish_tick.tick() => publish_ebpf(&source, &ctx.snapshots),
            changed = ctx.prefilter.changed() => if changed.is_ok() {
                let prefilter = *ctx.prefilter.borrow_and_update();
                if let Err(err) = source.update_prefilter(&prefilter) {
                    tracing::error!(error = %err, "cannot apply the new pre-filter");
                }
            },
            _ = ctx.stop.changed() => break,
        }
        if !drain_ebpf(&mut source, &ctx.tx).await {
            break;
        }
    }
    drain_ebpf(&mut source, &ctx.tx).await;
    let report = source.report();
    report_losses(&report, &mut reported, None);
    stats::with(&ctx.snapshots, |s| {
        s.retire(EBPF_KEY, &report);
        s.namespaces.clear();
    });
    report
}

fn apply_ebpf(source: &mut EbpfSource, update: Update, kinds: &[EventType]) {
    match update {
        Update::Added(opened) => {
            let label = Arc::clone(&opened.label);
            match source.attach(opened, kinds) {
                Ok(()) => tracing::info!(netns = %label, source = "ebpf", namespaces = source.attached(), "watching network namespace"),
                Err(err) => tracing::warn!(netns = %label, error = %err, "cannot watch network namespace"),
            }
        }
        Update::Removed(ino) => {
            if let Some(label) = source.release(ino) {
                tracing::info!(netns = %label, namespaces = source.attached(), "network namespace removed; no longer watched");
            }
        }
        Update::Addrs(ino, local) => source.set_local(ino, local),
    }
}

/// Publishes the eBPF source's counters and namespaces for /metrics.
pub(crate) fn publish_ebpf(source: &EbpfSource, snapshots: &Snapshots) {
    let report = source.report();
    let namespaces = source.namespaces().map(|(ino, label, events)| (ino, NamespaceStats { label: Arc::clone(label), events })).collect();
    stats::with(snapshots, |s| {
        s.live.insert(EBPF_KEY, report);
        s.namespaces = namespaces;
    });
}

/// Drains everything waiting; false when the pipeline is gone.
async fn drain_ebpf(source: &mut EbpfSource, tx: &mpsc::Sender<Batch>) -> bool {
    loop {
        let mut batch = Vec::new();
        if source.drain(&mut batch) == 0 {
            return true;
        }
        if !batch.is_empty() && tx.send(batch).await.is_err() {
            return false;
        }
    }
}

/// How the netlink sources open their sockets.
pub(crate) struct NetlinkSettings {
    pub receive_buffer_bytes: usize,
    pub reliable: bool,
}

/// A netlink source and its namespace.
pub(crate) struct NetlinkNs {
    pub ino: u64,
    pub label: Arc<str>,
    pub local: LocalAddrs,
    pub source: NetlinkSource,
}

/// A running per-namespace netlink task.
struct Child {
    label: Arc<str>,
    stop: watch::Sender<bool>,
    local: watch::Sender<LocalAddrs>,
}

/// The netlink hub: one task per namespace, started and stopped as the worker says.
pub(crate) async fn run_netlink(initial: Vec<NetlinkNs>, settings: NetlinkSettings, mut ctx: TaskCtx) -> StopReport {
    let mut children: HashMap<u64, Child> = HashMap::new();
    let mut tasks: JoinSet<StopReport> = JoinSet::new();
    let mut total = StopReport::default();
    for ns in initial {
        spawn_netlink(ns, &ctx, &mut children, &mut tasks);
    }
    loop {
        tokio::select! {
            update = next_update(&mut ctx.updates) => match update {
                Some(Update::Added(opened)) => match open_netlink(&settings, &ctx.prefilter.borrow(), opened) {
                    Ok(ns) => spawn_netlink(ns, &ctx, &mut children, &mut tasks),
                    Err((label, err)) => tracing::warn!(netns = %label, error = %err, "cannot watch network namespace"),
                },
                Some(Update::Removed(ino)) => if let Some(child) = children.remove(&ino) {
                    let _ = child.stop.send(true);
                    tracing::info!(netns = %child.label, namespaces = children.len(), "network namespace removed; no longer watched");
                },
                Some(Update::Addrs(ino, local)) => if let Some(child) = children.get(&ino) {
                    let _ = child.local.send(local);
                },
                None => ctx.updates = None,
            },
            Some(done) = tasks.join_next() => add_joined(&mut total, done),
            _ = ctx.stop.changed() => break,
        }
    }
    for child in children.values() {
        let _ = child.stop.send(true);
    }
    while let Some(done) = tasks.join_next().await {
        add_joined(&mut total, done);
    }
    total
}

fn add_joined(total: &mut StopReport, done: Result<StopReport, tokio::task::JoinError>) {
    match done {
        Ok(report) => total.add(&report),
        Err(err) => tracing::error!(error = %err, "source task failed"),
    }
}

fn spawn_netlink(ns: NetlinkNs, ctx: &TaskCtx, children: &mut HashMap<u64, Child>, tasks: &mut JoinSet<StopReport>) {
    let (stop, stop_rx) = watch::channel(false);
    let (local, local_rx) = watch::channel(ns.local.clone());
    tracing::info!(netns = %ns.label, source = "netlink", namespaces = children.len() + 1, "watching network namespace");
    let child = NetlinkCtx {
        ino: ns.ino,
        name: Arc::clone(&ns.label),
        label: ctx.label_events.then(|| Arc::clone(&ns.label)),
        tx: ctx.tx.clone(),
        stop: stop_rx,
        prefilter: ctx.prefilter.clone(),
        snapshots: Arc::clone(&ctx.snapshots),
        every: ctx.every,
        local: local_rx,
        events: 0,
    };
    children.insert(ns.ino, Child { label: ns.label, stop, local });
    tasks.spawn(run_one_netlink(ns.source, child));
}

/// What one namespace's netlink task needs besides its source.
struct NetlinkCtx {
    ino: u64,
    /// The namespace's name for logs and metrics.
    name: Arc<str>,
    /// What events carry as `netns` (None when only one namespace is watched).
    label: Option<Arc<str>>,
    tx: mpsc::Sender<Batch>,
    stop: watch::Receiver<bool>,
    prefilter: watch::Receiver<Prefilter>,
    snapshots: Snapshots,
    every: Duration,
    local: watch::Receiver<LocalAddrs>,
    events: u64,
}

impl NetlinkCtx {
    fn report(&self, source: &NetlinkSource) -> StopReport {
        StopReport { counters: source.counters(), overflow: source.overflow(), namespaces: 1, ..StopReport::default() }
    }

    fn publish(&self, source: &NetlinkSource) {
        let report = self.report(source);
        let ns = NamespaceStats { label: Arc::clone(&self.name), events: self.events };
        stats::with(&self.snapshots, |s| {
            s.live.insert(self.ino, report);
            s.namespaces.insert(self.ino, ns);
        });
    }
}

/// One namespace's netlink source: drain on wakeups and on the timer, until stopped.
async fn run_one_netlink(mut source: NetlinkSource, mut ctx: NetlinkCtx) -> StopReport {
    let (mut tick, mut report_tick, mut publish_tick) = (ticker(ctx.every), ticker(REPORT_INTERVAL), ticker(PUBLISH_INTERVAL));
    let mut reported = StopReport::default();
    loop {
        tokio::select! {
            ready = source.readable() => if let Err(err) = ready {
                tracing::error!(netns = %ctx.name, error = %err, "source stopped");
                break;
            },
            _ = tick.tick() => {}
            _ = report_tick.tick() => report_losses(&ctx.report(&source), &mut reported, Some(&ctx.name)),
            _ = publish_tick.tick() => ctx.publish(&source),
            changed = ctx.prefilter.changed() => if changed.is_ok() {
                let prefilter = *ctx.prefilter.borrow_and_update();
                if let Err(err) = source.update_prefilter(&prefilter) {
                    tracing::error!(netns = %ctx.name, error = %err, "cannot apply the new pre-filter");
                }
            },
            _ = ctx.stop.changed() => break,
        }
        if !drain_netlink(&mut source, &mut ctx).await {
            break;
        }
    }
    drain_netlink(&mut source, &mut ctx).await;
    let report = ctx.report(&source);
    report_losses(&report, &mut reported, Some(&ctx.name));
    stats::with(&ctx.snapshots, |s| {
        s.retire(ctx.ino, &report);
        s.namespaces.remove(&ctx.ino);
    });
    report
}

/// Drains everything waiting; false when the pipeline is gone or reading failed.
async fn drain_netlink(source: &mut NetlinkSource, ctx: &mut NetlinkCtx) -> bool {
    loop {
        let mut batch = Vec::new();
        match source.drain(&mut batch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err) => {
                tracing::error!(netns = %ctx.name, error = %err, "reading the source failed");
                return false;
            }
        }
        let local = ctx.local.borrow().clone();
        for ev in &mut batch {
            ev.netns = ctx.label.clone();
            if ev.kind == EventType::New {
                ev.local_origin = Some(local.contains(ev.orig.src));
            }
        }
        ctx.events += batch.len() as u64;
        if !batch.is_empty() && ctx.tx.send(batch).await.is_err() {
            return false;
        }
    }
}
