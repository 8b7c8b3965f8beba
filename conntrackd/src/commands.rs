//! Outputs of the one-shot commands: `conntrackd check` and
//! `conntrackd geoip lookup`.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::net::IpAddr;

use anyhow::Context;

use crate::{app::prefilter, config::Config, enrich::Enricher, event::DST};

/// What `conntrackd check` prints for a valid configuration (opening the
/// GeoIP databases is part of the check).
pub(crate) fn check_report(config: &Config) -> anyhow::Result<String> {
    let enricher = Enricher::open(&config.geoip)?;
    let mut out = String::from("configuration is valid\n");
    for warning in &config.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    for line in enricher.iter().flat_map(Enricher::describe) {
        out.push_str(&line);
        out.push('\n');
    }
    if config.rules.rules.is_empty() {
        out.push_str("rules: none (every TCP and UDP event is logged)\n");
    }
    for (i, rule) in config.rules.rules.iter().enumerate() {
        out.push_str(&format!("rule {} ({:?}): {}\n", i + 1, rule.language, rule.text));
    }
    out.push_str(&format!("{}\n", prefilter(config)));
    if let Some(stream) = &config.sinks.stream {
        out.push_str(&format!("sink stream: {:?}\n", stream.writer));
    }
    if let Some(journal) = &config.sinks.journal {
        let state = if journal.socket.exists() { "present" } else { "MISSING: the sink will not start" };
        out.push_str(&format!("sink journal: {} ({state})\n", journal.socket.display()));
    }
    if let Some(syslog) = &config.sinks.syslog {
        out.push_str(&format!("sink syslog: {} ({:?}, {}.{})\n", syslog.address, syslog.format, syslog.facility.name(), syslog.severity.name()));
    }
    if let Some(loki) = &config.sinks.loki {
        // Validation does not open files; the sink reads this one when it starts.
        if let Some(path) = &loki.ca_file {
            if let Err(err) = std::fs::metadata(path) {
                anyhow::bail!("sink.loki.tls.ca_file: {}: {err}", path.display());
            }
        }
        // The endpoint's Debug form has no credentials; the token is never shown.
        out.push_str(&format!("sink loki: {:?}, encoding {:?}, spool {:?}\n", loki.endpoint, loki.encoding, loki.spool_dir));
    }
    Ok(out)
}

/// `conntrackd geoip lookup IP`: the fields the daemon would attach to a
/// destination `ip`, as a JSON object, and a note on stderr when there are none.
pub(crate) fn geoip_lookup(config: &Config, ip: IpAddr) -> anyhow::Result<String> {
    let mut enricher = Enricher::open(&config.geoip)?.context("no GeoIP database is configured: set [geoip] database or --geoip.database")?;
    let entry = enricher.lookup(ip);
    let stats = enricher.stats();
    if stats.city.decode_errors + stats.asn.decode_errors > 0 {
        anyhow::bail!("the record for {ip} has an unexpected shape (see the warning above)");
    }
    let mut out = Vec::from(&b"{"[..]);
    if let Some(info) = &entry {
        let mut field = |name: &str, value| {
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(format!("\"{name}\":").as_bytes());
            crate::sink::json::write_value(&mut out, value);
        };
        info.contract_fields(&DST, &mut field);
        info.extra_fields(&DST, &mut field);
    } else {
        let class = crate::event::network::NetworkClass::of(ip.to_canonical());
        match class {
            crate::event::network::NetworkClass::Public => eprintln!("{ip}: the databases do not know this address"),
            other => eprintln!("{ip} is a {} address: the daemon attaches no GeoIP fields to it", other.as_str()),
        }
    }
    out.extend_from_slice(b"}\n");
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_output_shows_no_secrets() {
        let text = "[sink.loki]\nenable = true\naddress = \"https://ops:hunter2@loki.example/loki\"\nbearer_token = \"tok3n\"\n";
        let report = check_report(&Config::from_toml(text).unwrap()).unwrap();
        assert!(report.contains("https://loki.example/loki (basic auth)"), "{report}");
        assert!(!report.contains("hunter2") && !report.contains("tok3n") && !report.contains("ops"), "{report}");
    }
}
