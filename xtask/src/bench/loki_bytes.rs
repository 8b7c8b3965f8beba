//! Bytes on the wire per event of the Loki sink's real pushes, as the
//! benchmark's proxy ([`super::loki_latency`]) receives them: request body
//! bytes per entry, and what the same body would be without structured
//! metadata (decoded, the metadata cleared, encoded again the same way:
//! protobuf + snappy block format, or compact JSON with `[ts, line]` values).
use prost::Message;
use serde::Serialize;
use serde_json::Value;

/// `logproto.PushRequest` (Loki's pkg/push/push.proto), enough to decode and re-encode.
#[derive(Clone, PartialEq, prost::Message)]
struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StreamAdapter {
    #[prost(string, tag = "1")]
    labels: String,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    line: String,
    #[prost(message, repeated, tag = "3")]
    structured_metadata: Vec<LabelPair>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Timestamp {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LabelPair {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// Sums over the accepted pushes of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct BodyBytes {
    pub requests: u64,
    pub entries: u64,
    pub body: u64,
    /// The same bodies without structured metadata.
    pub body_without_metadata: u64,
    /// Bodies that could not be decoded (counted in `body`, not in `entries`).
    pub undecoded: u64,
}

impl BodyBytes {
    /// Adds one accepted push body of `content_type`.
    pub fn add(&mut self, content_type: &str, body: &[u8]) {
        self.requests += 1;
        self.body += body.len() as u64;
        let decoded = if content_type.contains("protobuf") { protobuf(body) } else { json(body) };
        match decoded {
            Some((entries, without)) => {
                self.entries += entries;
                self.body_without_metadata += without;
            }
            None => self.undecoded += 1,
        }
    }

    pub fn per_event(&self) -> f64 {
        self.body as f64 / self.entries.max(1) as f64
    }

    pub fn per_event_without_metadata(&self) -> f64 {
        self.body_without_metadata as f64 / self.entries.max(1) as f64
    }
}

/// (entries, body length without metadata) of a snappy-compressed PushRequest.
fn protobuf(body: &[u8]) -> Option<(u64, u64)> {
    let raw = snap::raw::Decoder::new().decompress_vec(body).ok()?;
    let mut req = PushRequest::decode(raw.as_slice()).ok()?;
    let mut entries = 0;
    for stream in &mut req.streams {
        entries += stream.entries.len() as u64;
        stream.entries.iter_mut().for_each(|e| e.structured_metadata.clear());
    }
    let stripped = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).ok()?;
    Some((entries, stripped.len() as u64))
}

/// (entries, body length without metadata) of a JSON push.
fn json(body: &[u8]) -> Option<(u64, u64)> {
    let mut push: Value = serde_json::from_slice(body).ok()?;
    let mut entries = 0;
    for stream in push.get_mut("streams")?.as_array_mut()? {
        for value in stream.get_mut("values")?.as_array_mut()? {
            entries += 1;
            value.as_array_mut()?.truncate(2);
        }
    }
    Some((entries, serde_json::to_vec(&push).ok()?.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PushRequest {
        let entry = |line: &str| EntryAdapter {
            timestamp: Some(Timestamp { seconds: 1_795_000_000, nanos: 5 }),
            line: line.into(),
            structured_metadata: vec![LabelPair { name: "dst_port".into(), value: "443".into() }, LabelPair { name: "comm".into(), value: "curl".into() }],
        };
        let stream = StreamAdapter { labels: "{type=\"NEW\"}".into(), entries: vec![entry("a"), entry("b")], hash: 0 };
        PushRequest { streams: vec![stream] }
    }

    #[test]
    fn protobuf_bodies_are_counted_with_and_without_metadata() {
        let body = snap::raw::Encoder::new().compress_vec(&request().encode_to_vec()).unwrap();
        let mut bytes = BodyBytes::default();
        bytes.add("application/x-protobuf", &body);
        assert_eq!((bytes.requests, bytes.entries, bytes.body, bytes.undecoded), (1, 2, body.len() as u64, 0));
        assert!(bytes.body_without_metadata < bytes.body && bytes.body_without_metadata > 0);
        bytes.add("application/x-protobuf", b"not snappy");
        assert_eq!((bytes.requests, bytes.entries, bytes.undecoded), (2, 2, 1));
    }

    #[test]
    fn json_bodies_are_counted_with_and_without_metadata() {
        let body = br#"{"streams":[{"stream":{"type":"NEW"},"values":[["1","a",{"dst_port":"443"}],["2","b",{"dst_port":"80"}]]}]}"#;
        let mut bytes = BodyBytes::default();
        bytes.add("application/json", body);
        assert_eq!((bytes.entries, bytes.body), (2, body.len() as u64));
        let without = br#"{"streams":[{"stream":{"type":"NEW"},"values":[["1","a"],["2","b"]]}]}"#;
        assert_eq!(bytes.body_without_metadata, without.len() as u64);
        assert_eq!(bytes.per_event(), body.len() as f64 / 2.0);
    }
}
