//! `netns = ["all"]`: every network namespace on the host. Found in the
//! runtime directories — `/run/netns` (`ip netns`, and CRI runtimes' `cni-*`
//! pod namespaces), `/run/docker/netns` — and in `/proc/*/ns/net`, which
//! covers every namespace that has a process (`unshare --net`, containerd and
//! Kubernetes pods without a bind mount). A namespace held only by an open
//! file descriptor, with neither a process nor a bind mount, is not found.
//!
//! A scan reads directories and `readlink`s one /proc link per process; it
//! never enters a namespace. Names are looked up once per new namespace.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::netns::{inode, link_inode, DOCKER_NETNS_DIR, NETNS_DIRS};
use crate::host::{cgroup_path, container_id};

/// A namespace a scan found, with what is known of its names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Found {
    /// A path that opens it: a bind mount, else `/proc/PID/ns/net`.
    pub path: PathBuf,
    /// Its `ip netns` name (a file under /run/netns).
    pub ip_name: Option<Arc<str>>,
    /// Docker's name for it (a file under /run/docker/netns).
    pub docker_name: Option<Arc<str>>,
    /// The first process found in it (the lowest pid), whose cgroup may name a container.
    pub pid: Option<u32>,
}

/// Every namespace on the host right now, by inode.
pub(crate) fn scan() -> HashMap<u64, Found> {
    let mut found: HashMap<u64, Found> = HashMap::new();
    for dir in NETNS_DIRS {
        for (path, name) in entries(Path::new(dir)) {
            if let Ok(ino) = inode(&path) {
                found.entry(ino).or_insert(Found { path, ip_name: Some(name), ..Found::default() });
            }
        }
    }
    for (path, name) in entries(Path::new(DOCKER_NETNS_DIR)) {
        if let Ok(ino) = inode(&path) {
            let entry = found.entry(ino).or_insert(Found { path, ..Found::default() });
            entry.docker_name.get_or_insert(name);
        }
    }
    processes(&mut found);
    found
}

/// Adds the namespace of every process (thread group leader) under /proc.
fn processes(found: &mut HashMap<u64, Found>) {
    let Ok(dir) = std::fs::read_dir("/proc") else { return };
    let mut pids: Vec<u32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    let mut link = String::new();
    for pid in pids {
        link.clear();
        use std::fmt::Write;
        let _ = write!(link, "/proc/{pid}/ns/net");
        // Fails for processes that exited meanwhile, kernel threads' peers we
        // may not inspect, or (ProtectProc=invisible) other users' processes.
        let Ok(target) = std::fs::read_link(&link) else { continue };
        let Some(ino) = link_inode(target.as_os_str().as_encoded_bytes()) else { continue };
        found.entry(ino).or_insert_with(|| Found { path: PathBuf::from(&link), ..Found::default() }).pid.get_or_insert(pid);
    }
}

/// The files of a directory with their names, sorted; nothing when it does not exist.
fn entries(dir: &Path) -> Vec<(PathBuf, Arc<str>)> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(PathBuf, Arc<str>)> = read.filter_map(|e| e.ok()).map(|e| (e.path(), e.file_name().to_string_lossy().into())).collect();
    out.sort();
    out
}

/// What events carry as `netns`: the `ip netns` name, else the id of the
/// container whose process is in it, else Docker's name, else the inode.
pub(crate) fn label(ino: u64, found: &Found) -> Arc<str> {
    if let Some(name) = &found.ip_name {
        return Arc::clone(name);
    }
    if let Some(id) = found.pid.and_then(container_of) {
        return id.into();
    }
    if let Some(name) = &found.docker_name {
        return Arc::clone(name);
    }
    ino.to_string().into()
}

/// The container id in the cgroup of `pid`, if it has one.
fn container_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    container_id(&cgroup_path(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::netns::Namespace;

    #[test]
    fn a_scan_finds_our_own_namespace_through_our_process() {
        let own = Namespace::own().unwrap();
        let found = scan();
        let ours = found.get(&own.ino).expect("our namespace");
        assert!(ours.pid.is_some(), "{ours:?}");
        assert!(ours.pid <= Some(std::process::id()), "the lowest pid in it: {ours:?}");
    }

    #[test]
    fn labels_prefer_ip_netns_then_container_then_docker_then_inode() {
        let named = Found { ip_name: Some("blue".into()), docker_name: Some("d0c".into()), ..Found::default() };
        assert_eq!(label(7, &named).as_ref(), "blue");
        let docker = Found { docker_name: Some("d0c".into()), pid: Some(u32::MAX), ..Found::default() };
        assert_eq!(label(7, &docker).as_ref(), "d0c", "no such process: no container id");
        assert_eq!(label(7, &Found::default()).as_ref(), "7");
    }
}
