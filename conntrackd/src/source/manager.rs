//! Starts the sources. The namespace worker (`worker.rs`) opens a ctnetlink
//! socket in every watched namespace; the eBPF source loads its program once
//! and attaches it to all of them (one task, one ring buffer), the netlink
//! source reads each socket (one task per namespace). With `netns = ["all"]`
//! the worker hands over namespaces created later and the source releases
//! those that are gone.
use std::sync::Arc;

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::SourceConfig;
use super::{
    ebpf::{EbpfSource, EbpfSourceError},
    netlink::{NetlinkSource, NetlinkSourceError},
    netns::NetnsError,
    socket::SocketError,
    stats::{self, NamespaceStats, Snapshots, StopReport},
    sysctl::SysctlError,
    tasks::{self, NetlinkNs, NetlinkSettings, TaskCtx},
    worker::{self, Opened, Plan, WorkerHandle},
    Kind,
};
use crate::event::{prefilter::Prefilter, Event};

/// Events travel from the source tasks to the pipeline in batches.
pub(crate) type Batch = Vec<Event>;

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

/// The running sources.
pub(crate) struct Sources {
    kind: &'static str,
    namespaces: usize,
    task: JoinHandle<StopReport>,
    stop: watch::Sender<bool>,
    prefilter_tx: watch::Sender<Prefilter>,
    /// Dropping it stops the namespace worker.
    _worker: WorkerHandle,
    pub snapshots: Snapshots,
}

impl Sources {
    /// Opens a socket in every configured namespace and starts reading;
    /// batches arrive on the receiver.
    pub fn start(config: &SourceConfig, prefilter: Prefilter) -> Result<(Self, mpsc::Receiver<Batch>), SourceError> {
        let snapshots = Snapshots::default();
        let plan = Plan {
            all: config.all_namespaces,
            explicit: if config.all_namespaces { Vec::new() } else { config.namespaces()? },
            set_sysctls: config.set_sysctls,
        };
        // The program is loaded before any socket exists: its one verifier
        // pass decides the kind, and every socket is filtered from the start.
        let ebpf = match config.kind {
            Kind::Netlink => None,
            Kind::Ebpf => Some(EbpfSource::load(config, &prefilter)?),
            Kind::Auto => match EbpfSource::load(config, &prefilter) {
                Ok(source) => Some(source),
                Err(err) => {
                    tracing::warn!(error = %chain(&err), "the eBPF source is unavailable; falling back to the netlink source");
                    None
                }
            },
        };
        let (initial, updates, worker) = worker::start(plan, Arc::clone(&snapshots))?;
        let (tx, rx) = mpsc::channel(64);
        let (stop, stop_rx) = watch::channel(false);
        let (prefilter_tx, _) = watch::channel(prefilter);
        let ctx = TaskCtx {
            tx,
            stop: stop_rx,
            prefilter: prefilter_tx.subscribe(),
            snapshots: Arc::clone(&snapshots),
            every: config.drain_interval,
            updates: Some(updates),
            label_events: config.label_events,
        };
        let fatal = !config.all_namespaces;
        let namespaces = initial.len();
        let (kind, task) = match ebpf {
            Some(mut source) => {
                let kinds = prefilter.kinds();
                for opened in initial {
                    let label = opened.label.clone();
                    match source.attach(opened, &kinds) {
                        Ok(()) => tracing::info!(netns = %label, source = "ebpf", "watching network namespace"),
                        Err(err) if fatal => return Err(SourceError::In { netns: label.to_string(), source: Box::new(err.into()) }),
                        Err(err) => tracing::warn!(netns = %label, error = %err, "cannot watch network namespace"),
                    }
                }
                tasks::publish_ebpf(&source, &snapshots);
                ("ebpf", tokio::spawn(tasks::run_ebpf(source, ctx)))
            }
            None => {
                let settings = NetlinkSettings { receive_buffer_bytes: config.receive_buffer_bytes, reliable: config.reliable };
                let mut sources = Vec::new();
                for opened in initial {
                    match open_netlink(&settings, &prefilter, opened) {
                        Ok(pair) => sources.push(pair),
                        Err((label, err)) if fatal => return Err(SourceError::In { netns: label.to_string(), source: Box::new(err.into()) }),
                        Err((label, err)) => tracing::warn!(netns = %label, error = %err, "cannot watch network namespace"),
                    }
                }
                // Attached from now on (each task then publishes its own), so /healthz is right at once.
                stats::with(&snapshots, |s| {
                    for ns in &sources {
                        s.namespaces.insert(ns.ino, NamespaceStats { label: Arc::clone(&ns.label), events: 0 });
                    }
                });
                ("netlink", tokio::spawn(tasks::run_netlink(sources, settings, ctx)))
            }
        };
        Ok((Self { kind, namespaces, task, stop, prefilter_tx, _worker: worker, snapshots }, rx))
    }

    /// The kind in use ("ebpf" or "netlink") after any fallback.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Namespaces watched at start.
    pub fn namespaces(&self) -> usize {
        self.namespaces
    }

    /// Hands a new pre-filter table to the sources (and to namespaces watched later).
    pub fn update_prefilter(&mut self, prefilter: Prefilter) {
        let _ = self.prefilter_tx.send(prefilter);
    }

    /// Stops reading after a last drain, lets the pipeline take the rest
    /// through the receiver, and returns the summed counters.
    pub async fn stop(self, rx: &mut mpsc::Receiver<Batch>, mut handle: impl FnMut(Batch)) -> StopReport {
        let _ = self.stop.send(true);
        let task = self.task;
        drop(self._worker);
        while let Some(batch) = rx.recv().await {
            handle(batch);
        }
        match task.await {
            Ok(report) => report,
            Err(err) => {
                tracing::error!(error = %err, "source task failed");
                StopReport::default()
            }
        }
    }
}

/// A netlink source on a namespace's socket, or the namespace's label and why not.
pub(crate) fn open_netlink(settings: &NetlinkSettings, prefilter: &Prefilter, opened: Opened) -> Result<NetlinkNs, (Arc<str>, NetlinkSourceError)> {
    let Opened { ino, label, socket, local } = opened;
    match NetlinkSource::open(socket, prefilter, settings.receive_buffer_bytes, settings.reliable) {
        Ok(source) => Ok(NetlinkNs { ino, label, local, source }),
        Err(err) => Err((label, err)),
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
