//! JSON encoding of an [`Event`] in the contract's field order (README
//! "Event fields"), written into a reused buffer without allocating.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{io::Write, net::IpAddr};

use crate::event::{fields::FieldValue, time::write_rfc3339, Event};

/// Appends one JSON line (with trailing `\n`) for the stream sink.
pub(crate) fn write_line(out: &mut Vec<u8>, ev: &Event) {
    out.extend_from_slice(b"{\"time\":\"");
    write_rfc3339(out, ev.time_ns);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"msg\":\"");
    write_message(out, ev);
    out.push(b'"');
    write_fields(out, ev);
    out.extend_from_slice(b"}\n");
}

/// `<TYPE> <PROT> connection from <src> to <dst>`; IPv6 endpoints in brackets.
pub(crate) fn write_message(out: &mut Vec<u8>, ev: &Event) {
    let _ = write!(out, "{} {} connection from ", ev.kind.as_str(), ev.protocol.as_str());
    write_endpoint(out, ev.orig.src, ev.orig.src_port);
    out.extend_from_slice(b" to ");
    write_endpoint(out, ev.orig.dst, ev.orig.dst_port);
}

fn write_endpoint(out: &mut Vec<u8>, ip: IpAddr, port: u16) {
    let _ = match ip {
        IpAddr::V4(v4) => write!(out, "{v4}:{port}"),
        IpAddr::V6(v6) => write!(out, "[{v6}]:{port}"),
    };
}

/// The event fields, each preceded by a comma.
pub(crate) fn write_fields(out: &mut Vec<u8>, ev: &Event) {
    ev.for_each_field(|name, value| {
        let _ = write!(out, ",\"{name}\":");
        write_value(out, value);
    });
}

/// One JSON value: strings (and addresses) quoted and escaped, numbers bare.
pub(crate) fn write_value(out: &mut Vec<u8>, value: FieldValue<'_>) {
    match value {
        FieldValue::Str(s) => {
            out.push(b'"');
            write_escaped(out, s);
            out.push(b'"');
        }
        FieldValue::Ip(ip) => {
            let _ = write!(out, "\"{ip}\"");
        }
        FieldValue::U64(n) => {
            let _ = write!(out, "{n}");
        }
        FieldValue::Time(ns) => {
            out.push(b'"');
            write_rfc3339(out, ns);
            out.push(b'"');
        }
        // Display never uses an exponent; a non-finite value has no JSON form.
        FieldValue::F64(x) if x.is_finite() => {
            let _ = write!(out, "{x}");
        }
        FieldValue::F64(_) => out.extend_from_slice(b"null"),
    }
}

/// JSON string escaping (RFC 8259): quotes, backslash and control characters.
pub(crate) fn write_escaped(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn line(ev: &Event) -> String {
        let mut out = Vec::new();
        write_line(&mut out, ev);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn record_to_json_line_in_contract_order() {
        // 2026-11-28T05:03:17.123456Z, minus the record's ktime of 1000 ns.
        let ev = crate::event::tests::tcp_v4_event(1_795_842_197_123_456_000 - 1_000);
        assert_eq!(
            line(&ev),
            "{\"time\":\"2026-11-28T05:03:17.123456Z\",\"level\":\"INFO\",\
             \"msg\":\"NEW TCP connection from 10.99.0.1:40002 to 8.8.8.8:443\",\
             \"type\":\"NEW\",\"flow\":305419896,\"prot\":\"TCP\",\
             \"src_addr\":\"10.99.0.1\",\"dst_addr\":\"8.8.8.8\",\"src_port\":40002,\"dst_port\":443,\
             \"tcp_state\":\"ESTABLISHED\",\"pid\":4242,\"uid\":1000,\"comm\":\"curl\",\"mark\":42}\n"
        );
    }

    #[test]
    fn ipv6_message_brackets_and_no_process_fields_without_attribution() {
        let mut ev = Event::from_record(&crate::event::tests::tcp_v4_record(), 0).unwrap();
        ev.kind = crate::event::EventType::Destroy;
        ev.orig.src = "fd00::1".parse().unwrap();
        ev.orig.dst = "2001:4860:4860::8888".parse().unwrap();
        let text = line(&ev);
        assert!(text.contains("\"msg\":\"DESTROY TCP connection from [fd00::1]:40002 to [2001:4860:4860::8888]:443\""), "{text}");
        assert!(!text.contains("\"pid\""), "{text}");
        // The reply tuple no longer mirrors the (edited) original: it is shown.
        assert!(text.contains("\"reply_src_addr\":\"8.8.8.8\""), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["dst_port"], 443);
    }

    #[test]
    fn escapes_control_characters_in_comm() {
        let mut out = Vec::new();
        write_escaped(&mut out, "a\"b\\c\u{1}");
        assert_eq!(out, b"a\\\"b\\\\c\\u0001");
    }
}
