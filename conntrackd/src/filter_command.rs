//! `conntrackd filter`: the rules applied to saved events. Reads event lines
//! in the stream sink's JSON format (one object per line, as
//! `journalctl -o cat -u conntrackd` prints them) and writes the lines the
//! rules would log, unchanged; with `--explain`, every event line as
//! `log|drop<TAB>rule N|no rule<TAB>line`. A line that is not an event is an
//! error on stderr naming its line number; the other lines are still
//! processed and the command exits 1 at the end. Blank lines are skipped.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{
    io::{BufRead, Write},
    net::IpAddr,
    sync::Arc,
};

use serde_json::{Map, Value};

use crate::{
    event::{Endpoints, Event, EventType, Process, Protocol},
    filter::Rules,
};

/// What a run did: lines written, lines that were not events.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub events: u64,
    pub logged: u64,
    pub bad_lines: u64,
}

/// The command: stdin to stdout, errors on stderr; exit 1 if a line was not an event.
pub(crate) fn run(rules: &Rules, explain: bool) -> std::process::ExitCode {
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let result = filter_lines(rules, explain, std::io::stdin().lock(), stdout, std::io::stderr().lock());
    for (i, n) in rules.errors().counts().into_iter().enumerate().filter(|(_, n)| *n > 0) {
        eprintln!("conntrackd filter: rule {} failed on {n} events (it did not match them)", i + 1);
    }
    match result {
        Ok(s) if s.bad_lines == 0 => std::process::ExitCode::SUCCESS,
        Ok(s) => {
            let (lines, were) = if s.bad_lines == 1 { ("line", "was not an event") } else { ("lines", "were not events") };
            eprintln!("conntrackd filter: {} {lines} {were} ({} events read, {} logged)", s.bad_lines, s.events, s.logged);
            std::process::ExitCode::FAILURE
        }
        // `conntrackd filter … | head`: the reader is gone, nothing is wrong.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("conntrackd filter: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Filters `input` into `output`; errors about lines go to `errors`.
pub(crate) fn filter_lines(rules: &Rules, explain: bool, input: impl BufRead, mut output: impl Write, mut errors: impl Write) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    for (i, line) in input.split(b'\n').enumerate() {
        let number = i + 1;
        let bytes = line?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        if text.trim().is_empty() {
            continue;
        }
        let ev = match parse_event(text) {
            Ok(ev) => ev,
            Err(why) => {
                summary.bad_lines += 1;
                writeln!(errors, "line {number}: not an event: {why}")?;
                continue;
            }
        };
        summary.events += 1;
        let (logs, rule) = rules.decide(&ev);
        summary.logged += u64::from(logs);
        if explain {
            let verdict = if logs { "log" } else { "drop" };
            let rule = rule.map_or_else(|| "no rule".to_string(), |r| format!("rule {}", r + 1));
            writeln!(output, "{verdict}\t{rule}\t{text}")?;
        } else if logs {
            writeln!(output, "{text}")?;
        }
    }
    output.flush()?;
    Ok(summary)
}

/// An event line back into the fields the rules read: type, protocol, the
/// original tuple and the process.
pub(crate) fn parse_event(line: &str) -> Result<Event, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(fields) = value else { return Err("not a JSON object".into()) };
    let kind = match string(&fields, "type")? {
        "NEW" => EventType::New,
        "UPDATE" => EventType::Update,
        "DESTROY" => EventType::Destroy,
        other => return Err(format!("\"type\" is {other:?}, not NEW, UPDATE or DESTROY")),
    };
    let protocol = match string(&fields, "prot")? {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        other => return Err(format!("\"prot\" is {other:?}, not TCP or UDP")),
    };
    let orig = Endpoints {
        src: address(&fields, "src_addr")?,
        dst: address(&fields, "dst_addr")?,
        src_port: port(&fields, "src_port")?,
        dst_port: port(&fields, "dst_port")?,
    };
    let mut ev = Event::bare(kind, protocol, orig);
    ev.flow = fields.get("flow").and_then(Value::as_u64).and_then(|f| u32::try_from(f).ok());
    if fields.contains_key("pid") || fields.contains_key("comm") {
        let number = |name: &str| fields.get(name).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()).unwrap_or_default();
        let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_string);
        let process = Process {
            pid: number("pid"),
            uid: number("uid"),
            comm: text("comm"),
            user: text("user"),
            exe: text("exe"),
            cgroup: text("cgroup"),
            container_id: text("container_id"),
            unit: text("unit"),
        };
        ev.process = Some(Arc::new(process));
    }
    Ok(ev)
}

fn string<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match fields.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("\"{name}\" is {other}, not a string")),
        None => Err(format!("no \"{name}\" field")),
    }
}

fn address(fields: &Map<String, Value>, name: &str) -> Result<IpAddr, String> {
    let text = string(fields, name)?;
    text.parse().map_err(|_| format!("\"{name}\" is {text:?}, not an IP address"))
}

fn port(fields: &Map<String, Value>, name: &str) -> Result<u16, String> {
    match fields.get(name) {
        Some(v) => v.as_u64().and_then(|p| u16::try_from(p).ok()).ok_or_else(|| format!("\"{name}\" is {v}, not a port number")),
        None => Err(format!("no \"{name}\" field")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as the stream sink writes it.
    fn line(ev: &Event) -> String {
        let mut out = Vec::new();
        crate::sink::json::write_line(&mut out, ev);
        String::from_utf8(out).unwrap().trim_end().to_string()
    }

    #[test]
    fn the_stream_sinks_lines_read_back_into_the_same_rule_fields() {
        let ev = crate::event::tests::tcp_v4_event(1_700_000_000_000_000_000);
        let back = parse_event(&line(&ev)).unwrap();
        assert_eq!((back.kind, back.protocol, back.orig, back.flow), (ev.kind, ev.protocol, ev.orig, ev.flow));
        assert_eq!(back.process.as_ref().unwrap().comm.as_deref(), Some("curl"));
        let mut v6 = Event::bare(
            EventType::Destroy,
            Protocol::Udp,
            Endpoints { src: "fd00::1".parse().unwrap(), dst: "2001:db8::1".parse().unwrap(), src_port: 1, dst_port: 53 },
        );
        v6.flow = Some(7);
        let back = parse_event(&line(&v6)).unwrap();
        assert_eq!((back.orig, back.process.is_none()), (v6.orig, true));
    }

    #[test]
    fn lines_that_are_not_events_say_why() {
        let table = [
            ("nope", "not JSON"),
            ("[1]", "not a JSON object"),
            ("{\"type\":\"NEW\"}", "no \"prot\" field"),
            ("{\"type\":\"OPEN\",\"prot\":\"TCP\"}", "\"type\" is \"OPEN\""),
            ("{\"type\":\"NEW\",\"prot\":\"ICMP\"}", "not TCP or UDP"),
            (
                "{\"type\":\"NEW\",\"prot\":\"TCP\",\"src_addr\":\"1.2.3\",\"dst_addr\":\"1.1.1.1\",\"src_port\":1,\"dst_port\":2}",
                "\"src_addr\" is \"1.2.3\", not an IP address",
            ),
            (
                "{\"type\":\"NEW\",\"prot\":\"TCP\",\"src_addr\":\"1.2.3.4\",\"dst_addr\":\"1.1.1.1\",\"src_port\":1,\"dst_port\":70000}",
                "\"dst_port\" is 70000, not a port number",
            ),
            ("{\"type\":1}", "\"type\" is 1, not a string"),
        ];
        for (text, want) in table {
            let err = parse_event(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
