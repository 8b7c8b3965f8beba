//! Facts about the host the daemon runs on: its name (one function for every
//! sink that labels events with it) and its users' login names, looked up
//! with getpwuid_r(3) so NSS sources (LDAP, SSSD, systemd-homed) count as
//! well as /etc/passwd.
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
}
