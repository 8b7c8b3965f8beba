//! Batching: events become Loki entries grouped by stream; a batch is cut when
//! its entries reach `batch_bytes` or its first event has waited `batch_wait`.
//! The clock is passed in, so the batcher is tested without sleeping.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use super::{
    config::LineFormat,
    encoding::{label_string, EntryAdapter, LabelPairAdapter, StreamAdapter, Timestamp},
};
use crate::{
    event::{fields::FieldValue, Event, EventType},
    sink::json,
};

/// A label string (`{a="1", ...}`) and its pairs.
type LabelSet = (String, Vec<(String, String)>);

/// The event fields that `per_flow_labels = true` makes stream labels: the
/// original's set (`tcp_state` only on events that carry it).
pub(crate) const PER_FLOW_LABELS: [&str; 7] = ["flow", "prot", "src_addr", "dst_addr", "src_port", "dst_port", "tcp_state"];

/// How events map to stream labels and lines.
pub(crate) struct StreamKeys {
    /// Labels every stream has (service_name, host, level, user labels), sorted.
    base: Vec<(String, String)>,
    per_flow: bool,
    /// Without per-flow labels a stream depends only on the type: precomputed.
    by_type: Vec<(EventType, LabelSet)>,
    line_format: LineFormat,
}

impl Stream {
    fn new(key: &str, labels: Vec<(String, String)>) -> Self {
        Self { labels, adapter: StreamAdapter { labels: key.to_string(), entries: Vec::new(), hash: 0 } }
    }
}

impl StreamKeys {
    /// The precomputed label string and labels of this event type (without per-flow labels).
    fn cached(&self, kind: EventType) -> Option<&LabelSet> {
        self.by_type.iter().find(|(k, _)| *k == kind).map(|(_, v)| v)
    }

    /// Defaults `service_name="conntrackd"`, `host` and `level="INFO"` (every
    /// event is logged at INFO, as the original's; Grafana colours lines by
    /// it), then the user's labels, which win.
    pub fn new(host: String, user: Vec<(String, String)>, per_flow: bool, line_format: LineFormat) -> Self {
        let mut base = vec![("service_name".to_string(), "conntrackd".to_string()), ("host".to_string(), host), ("level".to_string(), "INFO".to_string())];
        for (k, v) in user {
            base.retain(|(bk, _)| *bk != k);
            base.push((k, v));
        }
        base.sort();
        let mut keys = Self { base, per_flow, line_format, by_type: Vec::new() };
        if !per_flow {
            keys.by_type = [EventType::New, EventType::Update, EventType::Destroy]
                .into_iter()
                .map(|kind| {
                    let labels = keys.labels_of(kind, None);
                    (kind, (label_string(&labels), labels))
                })
                .collect();
        }
        keys
    }

    /// The stream labels of one event: `type` (and with `per_flow_labels` the
    /// original's per-flow set, [`PER_FLOW_LABELS`]) unless the user set them.
    fn labels(&self, ev: &Event) -> Vec<(String, String)> {
        self.labels_of(ev.kind, Some(ev))
    }

    fn labels_of(&self, kind: EventType, flow: Option<&Event>) -> Vec<(String, String)> {
        let mut labels = self.base.clone();
        let mut add = |k: &str, v: String| {
            if !labels.iter().any(|(bk, _)| bk == k) {
                labels.push((k.to_string(), v));
            }
        };
        add("type", kind.as_str().to_string());
        if let Some(ev) = flow.filter(|_| self.per_flow) {
            ev.for_each_field(|name, value| {
                if PER_FLOW_LABELS.contains(&name) {
                    add(name, value_string(value));
                }
            });
        }
        labels.sort();
        labels
    }

    fn line(&self, ev: &Event) -> String {
        let mut out = Vec::with_capacity(256);
        match self.line_format {
            LineFormat::Text => json::write_message(&mut out, ev),
            LineFormat::Json => {
                json::write_line(&mut out, ev);
                out.pop();
            }
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

fn value_string(value: FieldValue<'_>) -> String {
    let mut out = Vec::new();
    value.write_text(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Entries of one label set, kept as the protobuf message they are sent as.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    pub labels: Vec<(String, String)>,
    pub adapter: StreamAdapter,
}

/// Entries grouped by stream, keyed by the label string.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    streams: BTreeMap<String, Stream>,
    bytes: usize,
    events: usize,
}

/// An entry's time as (seconds, nanoseconds), for ordering.
pub(crate) fn entry_time(e: &EntryAdapter) -> (i64, i32) {
    e.timestamp.as_ref().map_or((0, 0), |t| (t.seconds, t.nanos))
}

impl Batch {
    /// Adds one event; returns the bytes it added (line plus metadata).
    /// Structured metadata carries every event field except those the
    /// entry's stream labels already carry with the same value (`type`, and
    /// with `per_flow_labels` the per-flow set): Loki returns stream labels
    /// with every entry, so repeating them per entry only costs bytes.
    pub fn add(&mut self, keys: &StreamKeys, ev: &Event) -> usize {
        let stream = match keys.cached(ev.kind) {
            Some((key, labels)) => self.streams.entry(key.clone()).or_insert_with(|| Stream::new(key, labels.clone())),
            None => {
                let labels = keys.labels(ev);
                let key = label_string(&labels);
                self.streams.entry(key.clone()).or_insert_with(|| Stream::new(&key, labels))
            }
        };
        let mut metadata = Vec::with_capacity(16);
        let mut size = 0;
        ev.for_each_field(|name, value| {
            let value = value_string(value);
            if stream.labels.iter().any(|(k, v)| k == name && *v == value) {
                return;
            }
            size += name.len() + value.len();
            metadata.push(LabelPairAdapter { name: name.to_string(), value });
        });
        // The seconds of any u64 ns stamp fit an i64; the remainder is below 1e9 and fits an i32.
        let seconds = i64::try_from(ev.time_ns.div_euclid(1_000_000_000)).unwrap_or(i64::MAX);
        let timestamp = Timestamp { seconds, nanos: i32::try_from(ev.time_ns.rem_euclid(1_000_000_000)).unwrap_or(0) };
        let entry = EntryAdapter { timestamp: Some(timestamp), line: keys.line(ev), structured_metadata: metadata };
        size += entry.line.len();
        // Keep each stream in time order (events mostly arrive in order already).
        let at = entry_time(&entry);
        let pos = stream.adapter.entries.partition_point(|e| entry_time(e) <= at);
        stream.adapter.entries.insert(pos, entry);
        self.bytes += size;
        self.events += 1;
        size
    }

    pub fn streams(&self) -> impl Iterator<Item = (&str, &Stream)> {
        self.streams.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn events(&self) -> usize {
        self.events
    }
}

/// Accumulates events into batches by size and age.
pub(crate) struct Batcher {
    keys: StreamKeys,
    wait: Duration,
    max_bytes: usize,
    current: Batch,
    started: Option<Instant>,
}

impl Batcher {
    pub fn new(keys: StreamKeys, wait: Duration, max_bytes: usize) -> Self {
        Self { keys, wait, max_bytes, current: Batch::default(), started: None }
    }

    /// Adds an event at `now`; returns a batch that reached `batch_bytes`.
    /// The event that would overflow a non-empty batch starts the next one.
    pub fn push(&mut self, ev: &Event, now: Instant) -> Option<Batch> {
        let mut full = None;
        if self.current.events > 0 && self.current.bytes >= self.max_bytes {
            full = self.take();
        }
        self.started.get_or_insert(now);
        self.current.add(&self.keys, ev);
        if full.is_none() && self.current.bytes >= self.max_bytes {
            full = self.take();
        }
        full
    }

    /// When the open batch must be sent, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        // batch_wait is at most 24 h (config), so this cannot overflow; were it to, the batch is due now.
        self.started.map(|t| t.checked_add(self.wait).unwrap_or(t))
    }

    /// The open batch if it is due at `now`.
    pub fn due(&mut self, now: Instant) -> Option<Batch> {
        if self.deadline().is_some_and(|d| d <= now) {
            self.take()
        } else {
            None
        }
    }

    /// The open batch, whatever its age (shutdown).
    pub fn take(&mut self) -> Option<Batch> {
        self.started = None;
        (self.current.events > 0).then(|| std::mem::take(&mut self.current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::tcp_v4_record;

    fn event() -> Event {
        Event::from_record(&tcp_v4_record(), 0).unwrap()
    }

    fn keys() -> StreamKeys {
        StreamKeys::new("h".into(), Vec::new(), false, LineFormat::Text)
    }

    #[test]
    fn batch_wait_cuts_by_age_from_the_first_event() {
        let t0 = Instant::now();
        let mut b = Batcher::new(keys(), Duration::from_secs(1), 1 << 20);
        assert!(b.deadline().is_none());
        assert!(b.push(&event(), t0).is_none());
        assert!(b.push(&event(), t0 + Duration::from_millis(900)).is_none());
        assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(b.due(t0 + Duration::from_millis(999)).is_none());
        assert_eq!(b.due(t0 + Duration::from_secs(1)).unwrap().events(), 2);
        assert!(b.deadline().is_none(), "the next event starts a new wait");
        b.push(&event(), t0 + Duration::from_secs(5));
        assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(6)));
    }

    #[test]
    fn batch_bytes_cuts_by_size() {
        let one = Batch::default().add(&keys(), &event());
        let t0 = Instant::now();
        let mut b = Batcher::new(keys(), Duration::from_secs(60), one * 3);
        assert!(b.push(&event(), t0).is_none());
        assert!(b.push(&event(), t0).is_none());
        let full = b.push(&event(), t0).expect("third event reaches batch_bytes");
        assert_eq!((full.events(), full.bytes()), (3, one * 3));
        assert!(b.take().is_none());
        // A single event larger than batch_bytes still goes out, alone.
        let mut tiny = Batcher::new(keys(), Duration::from_secs(60), 1);
        assert_eq!(tiny.push(&event(), t0).unwrap().events(), 1);
    }

    /// Metadata names of the one entry a batch of `ev` holds.
    fn metadata_names(keys: &StreamKeys, ev: &Event) -> Vec<String> {
        let mut b = Batch::default();
        b.add(keys, ev);
        let (_, stream) = b.streams().next().unwrap();
        stream.adapter.entries[0].structured_metadata.iter().map(|p| p.name.clone()).collect()
    }

    #[test]
    fn metadata_leaves_out_what_the_stream_labels_carry() {
        let all: Vec<&str> = {
            let mut v = Vec::new();
            event().for_each_field(|name, _| v.push(name));
            v
        };
        // The default labels carry `type`: every other field stays.
        let names = metadata_names(&keys(), &event());
        assert_eq!(names, all.iter().filter(|n| **n != "type").map(|n| n.to_string()).collect::<Vec<_>>());
        // A user label `type=fixed` does not carry the event's type: it stays in metadata.
        let fixed = StreamKeys::new("h".into(), vec![("type".into(), "fixed".into())], false, LineFormat::Text);
        assert_eq!(metadata_names(&fixed, &event()), all.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        // Per-flow labels carry the original's set; the rest (pid, comm, ...) stays.
        let per_flow = StreamKeys::new("h".into(), Vec::new(), true, LineFormat::Text);
        let names = metadata_names(&per_flow, &event());
        let expected: Vec<String> = all.iter().filter(|n| **n != "type" && !PER_FLOW_LABELS.contains(n)).map(|n| n.to_string()).collect();
        assert_eq!(names, expected);
        assert!(!names.is_empty() && names.len() < all.len() - 1);
    }

    #[test]
    fn labels_defaults_user_override_and_per_flow() {
        let k = StreamKeys::new("h".into(), vec![("host".into(), "mine".into()), ("type".into(), "fixed".into())], false, LineFormat::Text);
        let labels = k.labels(&event());
        assert_eq!(label_string(&labels), "{host=\"mine\", level=\"INFO\", service_name=\"conntrackd\", type=\"fixed\"}");
        let k = StreamKeys::new("h".into(), vec![("level".into(), "info".into())], false, LineFormat::Text);
        assert_eq!(label_string(&k.labels(&event())), "{host=\"h\", level=\"info\", service_name=\"conntrackd\", type=\"NEW\"}");
        let k = StreamKeys::new("h".into(), Vec::new(), true, LineFormat::Json);
        let text = label_string(&k.labels(&event()));
        assert_eq!(
            text,
            "{dst_addr=\"8.8.8.8\", dst_port=\"443\", flow=\"305419896\", host=\"h\", level=\"INFO\", prot=\"TCP\", \
             service_name=\"conntrackd\", src_addr=\"10.99.0.1\", src_port=\"40002\", tcp_state=\"ESTABLISHED\", type=\"NEW\"}"
        );
        assert!(k.line(&event()).starts_with("{\"time\":"), "json line format is the whole event");
    }
}
