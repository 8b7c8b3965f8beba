//! Network namespaces to watch: `self`, explicit paths (`/run/netns/NAME`,
//! `/proc/PID/ns/net`) or `all` (every namespace on the host, see
//! `discover.rs`). A namespace is identified by the inode of its nsfs file
//! and labelled by a name where one is known. Sockets are opened inside a
//! namespace by the namespace worker (`worker.rs`), a thread that enters it
//! with setns and returns to the daemon's own namespace.
use std::{
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    sync::Arc,
};

/// Where `ip netns` keeps named namespaces (and CRI runtimes their pods'
/// `cni-*` namespaces); `/var/run/netns` is usually the same directory.
pub(crate) const NETNS_DIRS: [&str; 2] = ["/run/netns", "/var/run/netns"];
/// Where Docker bind-mounts its containers' namespaces (one file per sandbox).
pub(crate) const DOCKER_NETNS_DIR: &str = "/run/docker/netns";

#[derive(Debug, thiserror::Error)]
pub(crate) enum NetnsError {
    #[error("network namespace {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot enter network namespace {path} (setns needs CAP_SYS_ADMIN): {source}")]
    Enter { path: PathBuf, source: std::io::Error },
    #[error("cannot return to the daemon's own network namespace: {0}")]
    Return(std::io::Error),
    #[error("cannot start the namespace worker thread: {0}")]
    Thread(std::io::Error),
}

/// One namespace to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Namespace {
    /// None = the daemon's own namespace.
    pub path: Option<PathBuf>,
    /// What events carry as `netns`: a name where one is known, else the inode.
    pub label: Arc<str>,
    /// Inode of the namespace's nsfs file: its identity on this host.
    pub ino: u64,
}

impl Namespace {
    pub fn own() -> Result<Self, NetnsError> {
        let ino = inode(Path::new("/proc/self/ns/net"))?;
        Ok(Self { path: None, label: ino.to_string().into(), ino })
    }

    pub fn at(path: &Path) -> Result<Self, NetnsError> {
        let ino = inode(path)?;
        let named = path.parent().is_some_and(|p| NETNS_DIRS.iter().any(|d| p == Path::new(d)));
        let label = match path.file_name() {
            Some(name) if named => name.to_string_lossy().into(),
            _ => ino.to_string().into(),
        };
        Ok(Self { path: Some(path.to_path_buf()), label, ino })
    }
}

/// The inode of a namespace file (following a bind mount or /proc link).
pub(crate) fn inode(path: &Path) -> Result<u64, NetnsError> {
    let meta = std::fs::metadata(path).map_err(|source| NetnsError::Open { path: path.to_path_buf(), source })?;
    Ok(meta.ino())
}

/// Opens a namespace file and returns it with its inode, read from the open
/// file so a namespace replaced between a scan and the open is not mistaken.
pub(crate) fn open(path: &Path) -> Result<(File, u64), NetnsError> {
    let err = |source| NetnsError::Open { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(err)?;
    let ino = file.metadata().map_err(err)?.ino();
    Ok((file, ino))
}

/// Moves the calling thread into the namespace of `file` (setns affects only this thread).
pub(crate) fn enter(file: &File) -> std::io::Result<()> {
    // SAFETY: a valid namespace fd; CLONE_NEWNET checks that it is a network namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The inode in a `/proc/PID/ns/net` link target (`net:[4026531840]`).
pub(crate) fn link_inode(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"net:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_is_labelled_by_inode() {
        let own = Namespace::own().unwrap();
        assert_eq!(own.label.as_ref(), own.ino.to_string());
        let (_, ino) = open(Path::new("/proc/self/ns/net")).unwrap();
        assert_eq!(ino, own.ino);
    }

    #[test]
    fn missing_path_is_an_error_naming_it() {
        let err = Namespace::at(Path::new("/run/netns/does-not-exist-ctd")).unwrap_err();
        assert!(err.to_string().contains("/run/netns/does-not-exist-ctd"), "{err}");
    }

    #[test]
    fn link_targets() {
        assert_eq!(link_inode(b"net:[4026531840]"), Some(4026531840));
        for bad in [&b"net:[]"[..], b"mnt:[4026531840]", b"net:[12", b"net:[x1]", b""] {
            assert_eq!(link_inode(bad), None, "{bad:?}");
        }
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert_eq!(link_inode(own.as_os_str().as_encoded_bytes()), Some(Namespace::own().unwrap().ino));
    }
}
