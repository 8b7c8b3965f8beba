//! Prometheus metrics and health on `[metrics] listen` (off by default; bind
//! it to loopback): `GET /metrics` (text format 0.0.4) and `GET /healthz`
//! (200 while a source is attached and no sink has failed for longer than
//! `unhealthy_after_s`, else 503). Nothing else is served.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use conntrackd_common::Counter;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{sink::queue::BoundedQueue, source::Snapshots};

/// Everything the endpoint reports, shared with the pipeline.
#[derive(Default)]
pub(crate) struct Metrics {
    pub sources: Snapshots,
    pub read: AtomicU64,
    pub dropped_by_rules: AtomicU64,
    pub reloads: AtomicU64,
    /// Events the attribution stage gave a process.
    pub attributed: AtomicU64,
    /// GeoIP counters (lookups, found, decode errors, cache), refreshed per batch.
    pub geoip: Mutex<Option<crate::enrich::EnrichStats>>,
    pub reload_failures: AtomicU64,
    pub sinks: Mutex<Vec<(&'static str, Arc<BoundedQueue>)>>,
    pub source_kind: Mutex<&'static str>,
    pub unhealthy_after: Duration,
    /// Evaluation errors per rule of the rules in force.
    pub rule_errors: Mutex<Arc<crate::filter::EvalErrors>>,
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP conntrackd_build_info Build information.\n# TYPE conntrackd_build_info gauge");
        let _ = writeln!(
            out,
            "conntrackd_build_info{{version=\"{}\",commit=\"{}\",aya=\"{}\",source=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            env!("CTD_BUILD_GIT_COMMIT"),
            env!("CTD_BUILD_AYA_VERSION"),
            *self.source_kind.lock().unwrap_or_else(|p| p.into_inner())
        );
        self.render_sources(&mut out);
        counter(&mut out, "conntrackd_events_read_total", "Events the sources delivered to the pipeline.", self.read.load(Ordering::Relaxed));
        counter(&mut out, "conntrackd_events_dropped_by_rules_total", "Events a rule dropped in userspace.", self.dropped_by_rules.load(Ordering::Relaxed));
        self.render_rule_errors(&mut out);
        counter(&mut out, "conntrackd_events_attributed_total", "Events given the process that made the connection.", self.attributed.load(Ordering::Relaxed));
        if let Some(g) = *self.geoip.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = writeln!(
                out,
                "# HELP conntrackd_geoip_lookups_total GeoIP lookups of kept events by database and result.\n# TYPE conntrackd_geoip_lookups_total counter"
            );
            for (db, s) in [("city", g.city), ("asn", g.asn)] {
                for (result, n) in
                    [("found", s.found), ("not_found", s.lookups.saturating_sub(s.found.saturating_add(s.decode_errors))), ("decode_error", s.decode_errors)]
                {
                    let _ = writeln!(out, "conntrackd_geoip_lookups_total{{database=\"{db}\",result=\"{result}\"}} {n}");
                }
            }
            counter(&mut out, "conntrackd_geoip_cache_hits_total", "GeoIP lookups answered by the cache.", g.cache_hits);
        }
        counter(&mut out, "conntrackd_config_reloads_total", "Successful SIGHUP reloads.", self.reloads.load(Ordering::Relaxed));
        counter(
            &mut out,
            "conntrackd_config_reload_failures_total",
            "SIGHUP reloads rejected (the old config stays).",
            self.reload_failures.load(Ordering::Relaxed),
        );
        self.render_sinks(&mut out);
        out
    }

    /// Outcome counters in total (the kernel program keeps one set for every
    /// namespace), and per attached namespace the events it delivered.
    fn render_sources(&self, out: &mut String) {
        let (total, namespaces, rescans, rescan_cpu_ns) = crate::source::stats::with(&self.sources, |s| {
            let namespaces: Vec<(std::sync::Arc<str>, u64)> = s.namespaces.values().map(|n| (std::sync::Arc::clone(&n.label), n.events)).collect();
            (s.total(), namespaces, s.rescans, s.rescan_cpu_ns)
        });
        let _ = writeln!(out, "# HELP conntrackd_kernel_messages_total ctnetlink messages by outcome (kernel program or netlink decoder), all namespaces.");
        let _ = writeln!(out, "# TYPE conntrackd_kernel_messages_total counter");
        for c in Counter::ALL {
            let _ = writeln!(out, "conntrackd_kernel_messages_total{{outcome=\"{}\"}} {}", c.name(), total.counters.get(c));
        }
        counter(out, "conntrackd_source_decode_errors_total", "Ring buffer records that could not be decoded.", total.decode_errors);
        counter(out, "conntrackd_source_unattributed_total", "Ring buffer records from a socket no watched namespace owns.", total.unattributed);
        counter(out, "conntrackd_source_overflows_total", "netlink receive buffer overflows (ENOBUFS).", total.overflow.overflows);
        counter(out, "conntrackd_source_lost_total", "Messages the kernel dropped for the netlink sockets.", total.overflow.lost);
        let _ = writeln!(
            out,
            "# HELP conntrackd_sources_attached Network namespaces currently watched.\n# TYPE conntrackd_sources_attached gauge\nconntrackd_sources_attached {}",
            namespaces.len()
        );
        let _ = writeln!(out, "# HELP conntrackd_namespace_events_total Events each watched namespace delivered to the pipeline.");
        let _ = writeln!(out, "# TYPE conntrackd_namespace_events_total counter");
        for (netns, events) in &namespaces {
            let _ = writeln!(out, "conntrackd_namespace_events_total{{netns=\"{}\"}} {events}", escape_label(netns));
        }
        counter(out, "conntrackd_netns_rescans_total", "Namespace discovery scans (netns = [\"all\"]).", rescans);
        let _ = writeln!(
            out,
            "# HELP conntrackd_netns_rescan_cpu_seconds_total CPU time the discovery scans took.\n# TYPE conntrackd_netns_rescan_cpu_seconds_total counter\nconntrackd_netns_rescan_cpu_seconds_total {:.6}",
            rescan_cpu_ns as f64 / 1e9
        );
    }

    fn render_rule_errors(&self, out: &mut String) {
        let counts = self.rule_errors.lock().unwrap_or_else(|p| p.into_inner()).counts();
        let _ = writeln!(
            out,
            "# HELP conntrackd_rule_evaluation_errors_total Events a CEL rule failed on (it did not match them), per rule since the rules were loaded.\n\
             # TYPE conntrackd_rule_evaluation_errors_total counter"
        );
        for (i, n) in counts.iter().enumerate() {
            let _ = writeln!(out, "conntrackd_rule_evaluation_errors_total{{rule=\"{}\"}} {n}", i + 1);
        }
    }

    fn render_sinks(&self, out: &mut String) {
        let sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let _ = writeln!(out, "# HELP conntrackd_sink_events_total Events per sink by result.\n# TYPE conntrackd_sink_events_total counter");
        for (sink, q) in &sinks {
            let s = q.stats();
            for (result, n) in [("sent", s.written), ("dropped_queue_full", s.dropped_queue_full), ("failed", s.dropped_write_error)] {
                let _ = writeln!(out, "conntrackd_sink_events_total{{sink=\"{sink}\",result=\"{result}\"}} {n}");
            }
        }
        let _ = writeln!(out, "# HELP conntrackd_sink_queued_events Events waiting in a sink's queue.\n# TYPE conntrackd_sink_queued_events gauge");
        for (sink, q) in &sinks {
            let _ = writeln!(out, "conntrackd_sink_queued_events{{sink=\"{sink}\"}} {}", q.queued());
        }
        let _ = writeln!(
            out,
            "# HELP conntrackd_sink_pending_bytes Batches a sink holds for retry (Loki's spool), in bytes.\n# TYPE conntrackd_sink_pending_bytes gauge"
        );
        for (sink, q) in &sinks {
            let _ = writeln!(out, "conntrackd_sink_pending_bytes{{sink=\"{sink}\"}} {}", q.pending_bytes());
        }
    }

    /// Healthy: a source is attached and no sink has failed for longer than the threshold.
    pub fn health(&self) -> Result<(), String> {
        if crate::source::stats::with(&self.sources, |s| s.namespaces.is_empty()) {
            return Err("no source is attached".into());
        }
        let now_ms = crate::event::time::unix_ms();
        let limit_ms = u64::try_from(self.unhealthy_after.as_millis()).unwrap_or(u64::MAX);
        for (sink, q) in self.sinks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if let Some(since) = q.failing_since_ms() {
                let failing_ms = now_ms.saturating_sub(since);
                if failing_ms > limit_ms {
                    return Err(format!("sink {sink} has been failing for {} s", failing_ms / 1000));
                }
            }
        }
        Ok(())
    }
}

/// A label value in the text format: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
}

/// Binds the listener (errors name the address) and serves until the runtime stops.
pub(crate) async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(listen = %addr, "metrics endpoint listening");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(respond(stream, Arc::clone(&metrics)));
                }
                Err(err) => tracing::warn!(error = %err, "metrics endpoint: accept failed"),
            }
        }
    });
    Ok(())
}

/// Reads the request head (up to the blank line, 4 KiB at most, 5 s at most).
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 4096 {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(chunk.get(..n).unwrap_or(&chunk)),
        }
    }
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

async fn respond(mut stream: TcpStream, metrics: Arc<Metrics>) {
    let Some(request) = read_head(&mut stream).await else { return };
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match (request.starts_with("GET "), path) {
        (true, "/metrics") => ("200 OK", metrics.render()),
        (true, "/healthz") => match metrics.health() {
            Ok(()) => ("200 OK", "ok\n".to_string()),
            Err(why) => ("503 Service Unavailable", format!("{why}\n")),
        },
        (true, _) => ("404 Not Found", "not found: try /metrics or /healthz\n".to_string()),
        (false, _) => ("405 Method Not Allowed", "only GET\n".to_string()),
    };
    let response = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let _ = stream.write_all(response.as_bytes()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Endpoints, Event, EventType, Protocol};

    #[test]
    fn rule_evaluation_errors_are_one_series_per_rule() {
        // `process.comm` is "" without a process: int("") fails on every event.
        let rules = crate::filter::Rules::compile(&["drop int(process.comm) > 0", "log any"]).unwrap();
        let ev = Event::bare(
            EventType::New,
            Protocol::Tcp,
            Endpoints { src: "10.0.0.1".parse().unwrap(), dst: "10.0.0.2".parse().unwrap(), src_port: 1, dst_port: 2 },
        );
        assert_eq!(rules.decide(&ev), (true, Some(1)));
        assert_eq!(rules.decide(&ev), (true, Some(1)));
        let metrics = Metrics { rule_errors: Mutex::new(rules.errors()), ..Metrics::default() };
        let text = metrics.render();
        assert!(text.contains("# TYPE conntrackd_rule_evaluation_errors_total counter\n"), "{text}");
        assert!(text.contains("conntrackd_rule_evaluation_errors_total{rule=\"1\"} 2\nconntrackd_rule_evaluation_errors_total{rule=\"2\"} 0\n"), "{text}");
    }
}
