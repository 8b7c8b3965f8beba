//! Which process made the connection. The kernel program records the task in
//! whose context the kernel emitted each event; that task is the connection's
//! owner only for a NEW of a locally originated connection (its original
//! source is one of the namespace's own addresses) or of an entry created
//! through ctnetlink (the message carries the requester's netlink port). Any
//! other task (softirq for forwarded or incoming packets, the gc kworker on
//! DESTROY) is never reported: a missing field is better than a wrong one.
//!
//! A valid NEW's process is kept per flow and carried to that flow's UPDATE
//! and DESTROY events (removed on DESTROY). Details come from /proc, cached
//! per process for a few seconds; a process that already exited keeps what
//! the kernel recorded (pid, comm, uid).
use std::{
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, Instant},
};

use lru::LruCache;

use crate::event::{Event, EventType, Process, Task};

/// Flows whose attribution is remembered until their DESTROY.
const FLOWS: usize = 65_536;
/// Processes whose /proc details are cached.
const PROCESSES: usize = 4096;
/// How long /proc details are trusted.
const TTL: Duration = Duration::from_secs(5);
/// `PF_KTHREAD` in /proc/PID/stat's flags field.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Attributes events to processes.
pub(crate) struct Attributor {
    flows: LruCache<(Option<Arc<str>>, u32), Arc<Process>>,
    /// The last process built per pid, reused while fresh: a busy process's
    /// NEW events share one allocation.
    details: LruCache<u32, (Instant, Option<Arc<Process>>)>,
    users: crate::host::UserNames,
    pub attributed: u64,
    pub refused: u64,
}

/// What /proc tells about a live process.
#[derive(Debug, Clone)]
struct Details {
    exe: Option<String>,
    cgroup: Option<String>,
    kernel_thread: bool,
}

impl Default for Attributor {
    fn default() -> Self {
        Self {
            flows: LruCache::new(NonZeroUsize::new(FLOWS).unwrap_or(NonZeroUsize::MIN)),
            details: LruCache::new(NonZeroUsize::new(PROCESSES).unwrap_or(NonZeroUsize::MIN)),
            users: crate::host::UserNames::default(),
            attributed: 0,
            refused: 0,
        }
    }
}

impl Attributor {
    /// Sets `ev.process` when it can be known for sure.
    pub fn attribute(&mut self, ev: &mut Event) {
        let key = |ev: &Event| ev.flow.map(|f| (ev.netns.clone(), f));
        match ev.kind {
            EventType::New => {
                let Some(task) = ev.task.filter(|t| t.pid != 0) else { return };
                if ev.portid == 0 && ev.local_origin != Some(true) {
                    self.refused += 1;
                    return;
                }
                let Some(process) = self.process(&task) else {
                    self.refused += 1;
                    return;
                };
                self.attributed += 1;
                if let Some(k) = key(ev) {
                    self.flows.put(k, Arc::clone(&process));
                }
                ev.process = Some(process);
            }
            EventType::Update => ev.process = key(ev).and_then(|k| self.flows.get(&k).cloned()),
            EventType::Destroy => ev.process = key(ev).and_then(|k| self.flows.pop(&k)),
        }
    }

    /// The process of a task, or None for a kernel thread.
    fn process(&mut self, task: &Task) -> Option<Arc<Process>> {
        if let Some((at, cached)) = self.details.get(&task.pid) {
            let same = |p: &Arc<Process>| p.uid == task.uid && p.comm.as_deref() == task.comm();
            if at.elapsed() < TTL && cached.as_ref().is_none_or(same) {
                return cached.clone();
            }
        }
        let built = self.build(task);
        self.details.put(task.pid, (Instant::now(), built.clone()));
        built
    }

    /// Reads /proc and the user name for a task; None for a kernel thread.
    fn build(&mut self, task: &Task) -> Option<Arc<Process>> {
        let details = read_details(task.pid);
        if details.as_ref().is_some_and(|d| d.kernel_thread) {
            return None;
        }
        let user = self.users.get(task.uid);
        let cgroup = details.as_ref().and_then(|d| d.cgroup.clone());
        Some(Arc::new(Process {
            pid: task.pid,
            uid: task.uid,
            comm: task.comm().map(str::to_string),
            user,
            exe: details.as_ref().and_then(|d| d.exe.clone()),
            container_id: cgroup.as_deref().and_then(crate::host::container_id),
            unit: cgroup.as_deref().and_then(crate::host::unit),
            cgroup,
        }))
    }
}

/// /proc/PID details; None once the process is gone.
fn read_details(pid: u32) -> Option<Details> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm: state is field 3, flags field 9.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest)?;
    let flags: u64 = after.split_whitespace().nth(6).and_then(|f| f.parse().ok()).unwrap_or(0);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.to_string_lossy().into_owned());
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok().and_then(|text| crate::host::cgroup_path(&text));
    Some(Details { exe, cgroup, kernel_thread: flags & PF_KTHREAD != 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_details() {
        let d = read_details(std::process::id()).expect("our own /proc entry");
        assert!(!d.kernel_thread && d.exe.is_some());
        // pid 2 is kthreadd on Linux.
        assert!(read_details(2).is_some_and(|d| d.kernel_thread));
    }
}
