//! Facts about the host the daemon runs on: its name (one function for every
//! sink that labels events with it), its users' login names, looked up
//! with getpwuid_r(3) so NSS sources (LDAP, SSSD, systemd-homed) count as
//! well as /etc/passwd, and what a cgroup path says (container id, systemd
//! unit) for the process attribution and the namespace discovery.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use lru::LruCache;

/// gethostname(2); None when it fails or the name is empty.
pub(crate) fn hostname() -> Option<String> {
    let name = nix::unistd::gethostname().ok()?.to_string_lossy().into_owned();
    (!name.is_empty()).then_some(name)
}

/// The login name of `uid` (getpwuid_r), None when no NSS source knows it.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|user| user.name)
}

/// Users whose names are cached.
const USERS: NonZeroUsize = match NonZeroUsize::new(4096) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};
/// How long a looked-up name (or its absence) is trusted: a directory
/// service can add or rename users while the daemon runs.
const USER_TTL: Duration = Duration::from_secs(600);

/// [`user_name`] with a per-uid cache, so a busy user costs one NSS lookup
/// per [`USER_TTL`] (an LDAP lookup can take milliseconds).
pub(crate) struct UserNames {
    cache: LruCache<u32, (Instant, Option<String>)>,
}

impl Default for UserNames {
    fn default() -> Self {
        Self { cache: LruCache::new(USERS) }
    }
}

impl UserNames {
    pub fn get(&mut self, uid: u32) -> Option<String> {
        if let Some((at, name)) = self.cache.get(&uid) {
            if at.elapsed() < USER_TTL {
                return name.clone();
            }
        }
        let name = user_name(uid);
        self.cache.put(uid, (Instant::now(), name.clone()));
        name
    }
}

/// The process's cgroup from /proc/PID/cgroup: the unified (v2) path, else on
/// hybrid hosts the systemd hierarchy's, else any v1 path that is not the root.
pub(crate) fn cgroup_path(text: &str) -> Option<String> {
    let path_of = |prefix: &str| text.lines().find_map(|l| l.strip_prefix(prefix)).filter(|p| *p != "/");
    path_of("0::")
        .or_else(|| text.lines().find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p)).filter(|p| *p != "/"))
        .or_else(|| text.lines().filter_map(|l| l.splitn(3, ':').nth(2)).find(|p| *p != "/"))
        .or_else(|| path_of("0::").or(Some("/")))
        .map(str::to_string)
}

/// A container id (64 hex digits) from a docker, containerd, cri-o or podman cgroup path.
pub(crate) fn container_id(cgroup: &str) -> Option<String> {
    cgroup.split('/').rev().find_map(|part| {
        let part = part.strip_suffix(".scope").unwrap_or(part);
        let id = ["docker-", "cri-containerd-", "crio-", "libpod-", "containerd-"].iter().find_map(|p| part.strip_prefix(p)).unwrap_or(part);
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
    })
}

/// The systemd unit (the innermost `.service` or `.scope`) of a cgroup path.
pub(crate) fn unit(cgroup: &str) -> Option<String> {
    cgroup.split('/').rev().find(|p| p.ends_with(".service") || (p.ends_with(".scope") && container_id(p).is_none())).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_and_users() {
        let name = hostname().expect("gethostname works here");
        assert_eq!(Some(name.as_str()), std::fs::read_to_string("/proc/sys/kernel/hostname").ok().as_deref().map(str::trim));
        assert_eq!(user_name(0).as_deref(), Some("root"));
        let mut users = UserNames::default();
        assert_eq!(users.get(0).as_deref(), Some("root"));
        assert_eq!(users.get(0).as_deref(), Some("root"), "from the cache");
        // No NSS source knows a uid this high (4294967295 is (uid_t)-1, reserved).
        assert_eq!(users.get(u32::MAX - 1), None);
    }

    #[test]
    fn containers_and_units_from_cgroup_paths() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        for path in [
            format!("/system.slice/docker-{id}.scope"),
            format!("/docker/{id}"),
            format!("/kubepods.slice/kubepods-besteffort.slice/cri-containerd-{id}.scope"),
            format!("/machine.slice/libpod-{id}.scope"),
            format!("/kubepods/besteffort/pod1/crio-{id}.scope"),
        ] {
            assert_eq!(container_id(&path).as_deref(), Some(id), "{path}");
        }
        assert_eq!(container_id("/user.slice/user-1000.slice/session-2.scope"), None);
        assert_eq!(unit("/system.slice/nginx.service").as_deref(), Some("nginx.service"));
        assert_eq!(unit("/user.slice/user-1000.slice/session-2.scope").as_deref(), Some("session-2.scope"));
        assert_eq!(unit(&format!("/system.slice/docker-{id}.scope")), None);
    }

    #[test]
    fn cgroup_paths_on_unified_and_hybrid_hosts() {
        assert_eq!(cgroup_path("0::/system.slice/x.service\n").as_deref(), Some("/system.slice/x.service"));
        let hybrid = "9:name=systemd:/system.slice/docker-abc.scope\n4:memory:/docker/abc\n0::/\n";
        assert_eq!(cgroup_path(hybrid).as_deref(), Some("/system.slice/docker-abc.scope"));
        assert_eq!(cgroup_path("4:memory:/process_api/x\n0::/\n").as_deref(), Some("/process_api/x"));
        assert_eq!(cgroup_path("0::/\n").as_deref(), Some("/"));
    }
}
