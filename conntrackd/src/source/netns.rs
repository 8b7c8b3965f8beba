//! Network namespaces to watch: `self`, explicit paths (`/run/netns/NAME`,
//! `/proc/PID/ns/net`) or `all` (every entry of /run/netns plus self). Each
//! namespace's socket is opened by a short-lived thread that enters it with
//! setns, so the socket belongs to that namespace.
use std::{
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    sync::Arc,
};

/// Where `ip netns` keeps named namespaces.
pub(crate) const NETNS_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub(crate) enum NetnsError {
    #[error("network namespace {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot enter network namespace {path} (setns needs CAP_SYS_ADMIN): {source}")]
    Enter { path: PathBuf, source: std::io::Error },
    #[error("the thread that entered network namespace {0} panicked")]
    Thread(PathBuf),
}

/// One namespace to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Namespace {
    /// None = the daemon's own namespace.
    pub path: Option<PathBuf>,
    /// What events carry as `netns`: the name under /run/netns, else the inode.
    pub label: Arc<str>,
    /// (device, inode) of the namespace file: its identity.
    pub id: (u64, u64),
}

impl Namespace {
    pub fn own() -> Result<Self, NetnsError> {
        let id = identity(Path::new("/proc/self/ns/net"))?;
        Ok(Self { path: None, label: id.1.to_string().into(), id })
    }

    pub fn at(path: &Path) -> Result<Self, NetnsError> {
        let id = identity(path)?;
        let named = path.parent().is_some_and(|p| p == Path::new(NETNS_DIR) || p == Path::new("/var/run/netns"));
        let label = match path.file_name() {
            Some(name) if named => name.to_string_lossy().into(),
            _ => id.1.to_string().into(),
        };
        Ok(Self { path: Some(path.to_path_buf()), label, id })
    }

    /// Runs `f` inside this namespace (on a dedicated thread unless it is our own).
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, NetnsError> {
        let Some(path) = self.path.clone() else { return Ok(f()) };
        let file = std::fs::File::open(&path).map_err(|source| NetnsError::Open { path: path.clone(), source })?;
        let thread = std::thread::Builder::new()
            .name("netns-open".into())
            .spawn(move || {
                // SAFETY: valid namespace fd; setns affects only this thread, which exits after `f`.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .map_err(|source| NetnsError::Enter { path: path.clone(), source })?;
        match thread.join() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(NetnsError::Enter { path, source }),
            Err(_) => Err(NetnsError::Thread(path)),
        }
    }
}

/// Every namespace `all` means right now: self plus /run/netns, without duplicates.
pub(crate) fn discover() -> Vec<Namespace> {
    let mut found: Vec<Namespace> = Namespace::own().into_iter().collect();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(NETNS_DIR).map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    entries.sort();
    for path in entries {
        match Namespace::at(&path) {
            Ok(ns) if !found.iter().any(|f| f.id == ns.id) => found.push(ns),
            // Our own namespace has a name: use it as the label.
            Ok(ns) => {
                if let Some(own) = found.iter_mut().find(|f| f.id == ns.id && f.path.is_none()) {
                    own.label = ns.label;
                }
            }
            Err(err) => tracing::debug!(error = %err, "skipping network namespace"),
        }
    }
    found
}

fn identity(path: &Path) -> Result<(u64, u64), NetnsError> {
    let meta = std::fs::metadata(path).map_err(|source| NetnsError::Open { path: path.to_path_buf(), source })?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_is_labelled_by_inode_and_run_in_is_direct() {
        let own = Namespace::own().unwrap();
        assert_eq!(own.label.as_ref(), own.id.1.to_string());
        assert_eq!(own.run_in(|| 7).unwrap(), 7);
        assert!(discover().iter().any(|n| n.id == own.id));
    }

    #[test]
    fn missing_path_is_an_error_naming_it() {
        let err = Namespace::at(Path::new("/run/netns/does-not-exist-ctd")).unwrap_err();
        assert!(err.to_string().contains("/run/netns/does-not-exist-ctd"), "{err}");
    }
}
