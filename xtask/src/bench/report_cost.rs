//! The report's cost tables: the kernel side per consumer (its socket
//! filter's own run time from the BPF statistics, and the producer's CPU,
//! where the kernel charges the event's emission and every listener's
//! filter), and conntrackd against the Go original and `conntrack -E`.
use super::{analysis::PeerRatio, median::show, report::RunResult, table::Table};

/// One row per run: what the kernel spent per event for this consumer.
pub(crate) fn kernel_table(runs: &[RunResult]) -> String {
    let mut t = Table::new(&[
        "mode",
        "consumer",
        "rate",
        "kernel filter",
        "filter runs",
        "filter ns/run",
        "filter ns/kernel event",
        "producer CPU s/100k ev",
        "producer CPU ns/kernel event",
    ]);
    for r in runs {
        let counted = r.kernel_filter.starts_with("eBPF");
        let figure = |field: &str, value: f64, decimals: usize| if counted { show(r, field, value, decimals) } else { "-".into() };
        t.row(vec![
            r.mode.into(),
            r.consumer.into(),
            r.rate.clone(),
            r.kernel_filter.into(),
            figure("filter_runs", r.filter_runs as f64, 0),
            figure("filter_ns_per_run", r.filter_ns_per_run, 0),
            figure("filter_ns_per_event", r.filter_ns_per_event, 0),
            show(r, "producer_cpu_s_per_100k", r.producer_cpu_s_per_100k, 4),
            // s per 100k events -> ns per event (the median; its spread is in the column before).
            format!("{:.0}", r.producer_cpu_s_per_100k * 1e4),
        ]);
    }
    format!(
        "{}\nfilter: `run_time_ns` / `run_cnt` of conntrackd's socket filter from the kernel's BPF statistics (on for the whole \
         benchmark; they add two clock reads to every BPF program run), read at readiness and before SIGTERM. \
         Per kernel event: the same run time / all NEW + DESTROY events of the run. Netlink consumers run no filter in the kernel \
         (0 by construction); ulogd's classic BPF filter has no program fd, so the kernel's statistics cannot be read for it. \
         Producer: CPU of the generator thread and of `conntrack -F`, in whose context the kernel emits each event and runs every \
         listener's filter; it includes the table work itself, so compare it between consumers on the same load.\n",
        t.render()
    )
}

/// conntrackd ebpf against each peer, per mode and rate.
pub(crate) fn peers_table(ratios: &[PeerRatio]) -> String {
    let mut t = Table::new(&[
        "mode",
        "rate",
        "peer",
        "conntrackd CPU s/100k delivered",
        "peer CPU s/100k delivered",
        "CPU ratio",
        "conntrackd loss %",
        "peer loss %",
        "conntrackd peak RSS MiB",
        "peer peak RSS MiB",
        "RSS ratio",
        "peer exited",
    ]);
    for p in ratios {
        t.row(vec![
            p.mode.into(),
            p.rate.clone(),
            p.peer.into(),
            format!("{:.4}", p.cpu_s_per_100k_delivered),
            format!("{:.4}", p.peer_cpu_s_per_100k_delivered),
            format!("{:.3}", p.cpu_ratio),
            format!("{:.3}", p.loss_pct),
            format!("{:.3}", p.peer_loss_pct),
            format!("{:.1}", p.peak_rss_mib),
            format!("{:.1}", p.peer_peak_rss_mib),
            format!("{:.2}", p.rss_ratio),
            p.peer_exited.clone().unwrap_or_else(|| "no".into()),
        ]);
    }
    format!(
        "{}\nCPU per 100k delivered events (user + system from readiness to exit): a peer that loses events or exits is not cheaper \
         for it. conntrackd runs its default rules (TCP to public destinations), the peers log every event: on all-public load \
         both deliver the same events. A peer that exited is measured up to its exit (CPU and `ru_maxrss` from wait4).\n",
        t.render()
    )
}
