//! The kernel's own accounting of conntrackd's socket filter: with BPF run
//! time statistics on, every program run adds its duration to the program's
//! `run_time_ns` and one to its `run_cnt`, shown in the fdinfo of a program
//! fd (`/proc/<pid>/fdinfo/<fd>`). [`Enabled`] turns the statistics on for
//! the benchmark with `BPF_ENABLE_STATS` (what `kernel.bpf_stats_enabled`
//! does, but tied to a file descriptor: the kernel turns them off again when
//! it is closed, also when the benchmark is interrupted or killed);
//! [`socket_filters`] reads a consumer's counters before and after a run.
use std::{
    collections::BTreeMap,
    fs, io,
    os::fd::{FromRawFd, OwnedFd},
};

use anyhow::{Context, Result};

/// `BPF_ENABLE_STATS` (include/uapi/linux/bpf.h, `enum bpf_cmd`).
const BPF_ENABLE_STATS: libc::c_long = 32;
/// `BPF_STATS_RUN_TIME` (`enum bpf_stats_type`).
const BPF_STATS_RUN_TIME: u32 = 0;
/// `BPF_PROG_TYPE_SOCKET_FILTER` as fdinfo shows it.
const SOCKET_FILTER: u64 = 1;

/// Statistics are on while this lives.
pub(crate) struct Enabled {
    _fd: OwnedFd,
}

impl Enabled {
    pub fn new() -> Result<Self> {
        // `union bpf_attr`'s `enable_stats` member: `__u32 type`; the rest zero.
        let attr: [u32; 2] = [BPF_STATS_RUN_TIME, 0];
        // SAFETY: the pointer and size describe `attr`, which outlives the call.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, attr.as_ptr(), std::mem::size_of_val(&attr)) };
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("enabling BPF run time statistics (BPF_ENABLE_STATS)");
        }
        let fd = i32::try_from(fd).context("fd out of range")?;
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        Ok(Self { _fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }
}

/// Counters of the socket filters a process holds, summed over distinct programs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProgStats {
    pub programs: usize,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

impl ProgStats {
    /// What ran between `before` and `self`.
    pub fn since(self, before: ProgStats) -> ProgStats {
        ProgStats {
            programs: self.programs,
            run_time_ns: self.run_time_ns.saturating_sub(before.run_time_ns),
            run_cnt: self.run_cnt.saturating_sub(before.run_cnt),
        }
    }
}

/// The socket filter programs among `pid`'s open fds.
pub(crate) fn socket_filters(pid: i32) -> Result<ProgStats> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut by_id = BTreeMap::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        // An fd closed since the listing is not ours to count.
        let Ok(text) = fs::read_to_string(entry?.path()) else { continue };
        if let Some((id, stats)) = parse(&text) {
            by_id.insert(id, stats);
        }
    }
    Ok(by_id.values().fold(ProgStats::default(), |sum, (time, cnt)| ProgStats {
        programs: sum.programs + 1,
        run_time_ns: sum.run_time_ns + time,
        run_cnt: sum.run_cnt + cnt,
    }))
}

/// `(prog_id, (run_time_ns, run_cnt))` of a socket filter's fdinfo.
fn parse(fdinfo: &str) -> Option<(u64, (u64, u64))> {
    let field = |key: &str| fdinfo.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.trim().parse::<u64>().ok());
    if field("prog_type")? != SOCKET_FILTER {
        return None;
    }
    Some((field("prog_id")?, (field("run_time_ns")?, field("run_cnt")?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_socket_filters_fdinfo() {
        let info = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nprog_type:\t1\nprog_jited:\t1\nprog_tag:\t0123456789abcdef\n\
                    memlock:\t8192\nprog_id:\t77\nrun_time_ns:\t123456\nrun_cnt:\t1000\nrecursion_misses:\t0\nverified_insns:\t5000\n";
        assert_eq!(parse(info), Some((77, (123456, 1000))));
        assert_eq!(parse(&info.replace("prog_type:\t1", "prog_type:\t27")), None, "a ring buffer map or another program type");
        assert_eq!(parse("pos:\t0\nflags:\t02\n"), None);
        let after = ProgStats { programs: 1, run_time_ns: 500, run_cnt: 7 };
        assert_eq!(after.since(ProgStats { programs: 1, run_time_ns: 200, run_cnt: 2 }), ProgStats { programs: 1, run_time_ns: 300, run_cnt: 5 });
    }

    #[test]
    fn enabling_statistics_works_here() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!("BPF_ENABLE_STATS needs CAP_SYS_ADMIN: run the tests as root (cargo xtask test)");
        }
        // The sysctl shows only its own setting, not the fd's: that the counters then count is
        // checked end to end by the quick benchmark (every eBPF run has filter runs).
        let on = Enabled::new().expect("BPF_ENABLE_STATS");
        drop(on);
    }
}
