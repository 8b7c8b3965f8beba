//! Push request bodies: Loki's `logproto.PushRequest` (protobuf, snappy block
//! format) or the JSON form of `/loki/api/v1/push`, built from a [`Batch`].
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::io::Write;

use super::{
    config::Encoding,
    request::{entry_time, Batch, Stream},
};
use crate::sink::json::write_escaped;

/// `logproto.PushRequest` (pkg/push/push.proto); the sink writes its bytes
/// stream by stream (see `to_proto`), tests decode with it.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StreamAdapter {
    /// Label set in Prometheus text form: `{a="1", b="2"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error("snappy compression failed: {0}")]
    Snappy(#[from] snap::Error),
}

impl Encoding {
    /// The `Content-Type` of a body in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Encodes a batch as a request body.
pub(crate) fn encode(batch: &Batch, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
    match encoding {
        Encoding::Protobuf => Ok(snap::raw::Encoder::new().compress_vec(&to_proto(batch))?),
        Encoding::Json => Ok(to_json(batch)),
    }
}

/// The label set in the text form Loki parses: `{a="x", b="y"}`, keys sorted.
pub(crate) fn label_string(labels: &[(String, String)]) -> String {
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        let _ = write!(out, "{k}=\"");
        write_escaped(&mut out, v);
        out.push(b'"');
    }
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

/// The bytes of a `PushRequest` whose streams are the batch's, encoded in
/// place (field 1, repeated) without copying the entries.
fn to_proto(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.bytes() + batch.events() * 64);
    for (_, stream) in batch.streams() {
        prost::encoding::message::encode(1, &stream.adapter, &mut out);
    }
    out
}

fn to_json(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.bytes() * 2 + 64);
    out.extend_from_slice(b"{\"streams\":[");
    for (i, (_, stream)) in batch.streams().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_stream(&mut out, stream);
    }
    out.extend_from_slice(b"]}");
    out
}

fn write_json_stream(out: &mut Vec<u8>, stream: &Stream) {
    out.extend_from_slice(b"{\"stream\":");
    write_json_object(out, stream.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    out.extend_from_slice(b",\"values\":[");
    for (i, e) in stream.adapter.entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let (seconds, nanos) = entry_time(e);
        let _ = write!(out, "[\"{}\",\"", i128::from(seconds) * 1_000_000_000 + i128::from(nanos));
        write_escaped(out, &e.line);
        out.extend_from_slice(b"\",");
        write_json_object(out, e.structured_metadata.iter().map(|p| (p.name.as_str(), p.value.as_str())));
        out.push(b']');
    }
    out.extend_from_slice(b"]}");
}

fn write_json_object<'a>(out: &mut Vec<u8>, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    out.push(b'{');
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        write_escaped(out, k);
        out.extend_from_slice(b"\":\"");
        write_escaped(out, v);
        out.push(b'"');
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::sink::loki::{config::LineFormat, request::StreamKeys};

    fn batch() -> Batch {
        let keys = StreamKeys::new("sparrow".into(), vec![("env".into(), "prod".into())], false, LineFormat::Text);
        let mut b = Batch::default();
        let mut ev = crate::event::tests::tcp_v4_event(2_000_000_000);
        let later = ev.clone();
        ev.time_ns -= 500;
        b.add(&keys, &later);
        b.add(&keys, &ev);
        ev.kind = EventType::Destroy;
        b.add(&keys, &ev);
        b
    }

    /// The exact request bytes: snappy-decompress, protobuf-decode, check all.
    #[test]
    fn protobuf_body_decodes_to_labels_lines_and_metadata() {
        let body = encode(&batch(), Encoding::Protobuf).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req: PushRequest = prost::Message::decode(raw.as_slice()).unwrap();
        assert_eq!(req.streams.len(), 2);
        let new = &req.streams[1];
        assert_eq!(new.labels, "{env=\"prod\", host=\"sparrow\", level=\"INFO\", service_name=\"conntrackd\", type=\"NEW\"}");
        assert_eq!(req.streams[0].labels, "{env=\"prod\", host=\"sparrow\", level=\"INFO\", service_name=\"conntrackd\", type=\"DESTROY\"}");
        assert_eq!(new.entries.len(), 2);
        let (first, second) = (&new.entries[0], &new.entries[1]);
        let ns = |e: &EntryAdapter| e.timestamp.as_ref().map(|t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos));
        assert!(ns(first) < ns(second), "entries in time order");
        assert_eq!(first.line, "NEW TCP connection from 10.99.0.1:40002 to 8.8.8.8:443");
        let meta: Vec<(&str, &str)> = first.structured_metadata.iter().map(|p| (p.name.as_str(), p.value.as_str())).collect();
        assert_eq!(
            meta,
            [
                ("flow", "305419896"),
                ("prot", "TCP"),
                ("src_addr", "10.99.0.1"),
                ("dst_addr", "8.8.8.8"),
                ("src_port", "40002"),
                ("dst_port", "443"),
                ("tcp_state", "ESTABLISHED"),
                ("pid", "4242"),
                ("uid", "1000"),
                ("comm", "curl"),
                ("mark", "42"),
            ]
        );
    }

    #[test]
    fn json_body_is_valid_loki_json() {
        let body = encode(&batch(), Encoding::Json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let stream = &v["streams"][1];
        assert_eq!(stream["stream"]["service_name"], "conntrackd");
        assert_eq!(stream["stream"]["type"], "NEW");
        assert_eq!(stream["stream"]["level"], "INFO");
        let entry = &stream["values"][0];
        assert!(entry[0].as_str().unwrap().parse::<u128>().is_ok());
        assert_eq!(entry[1], "NEW TCP connection from 10.99.0.1:40002 to 8.8.8.8:443");
        assert_eq!(entry[2]["dst_port"], "443");
    }

    #[test]
    fn label_values_are_escaped() {
        let s = label_string(&[("a".into(), "x\"y\\z\n".into())]);
        assert_eq!(s, "{a=\"x\\\"y\\\\z\\n\"}");
    }
}
