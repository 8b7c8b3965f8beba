//! Batching: events become Loki entries grouped by stream; a batch is cut when
//! its entries reach `batch_bytes` or its first event has waited `batch_wait`.
//! The clock is passed in, so the batcher is tested without sleeping.
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use super::{config::LineFormat, encoding::label_string};
use crate::{
    event::{fields::FieldValue, Event},
    sink::json,
};

/// How events map to stream labels and lines.
pub(crate) struct StreamKeys {
    /// Labels every stream has (service_name, host, user labels), sorted.
    base: Vec<(String, String)>,
    per_flow: bool,
    line_format: LineFormat,
}

impl StreamKeys {
    /// Defaults `service_name="conntrackd"` and `host`, then the user's labels, which win.
    pub fn new(host: String, user: Vec<(String, String)>, per_flow: bool, line_format: LineFormat) -> Self {
        let mut base = vec![("service_name".to_string(), "conntrackd".to_string()), ("host".to_string(), host)];
        for (k, v) in user {
            base.retain(|(bk, _)| *bk != k);
            base.push((k, v));
        }
        base.sort();
        Self { base, per_flow, line_format }
    }

    /// The stream labels of one event: `type` (and per-flow values) unless the user set them.
    fn labels(&self, ev: &Event) -> Vec<(String, String)> {
        let mut labels = self.base.clone();
        let mut add = |k: &str, v: String| {
            if !labels.iter().any(|(bk, _)| bk == k) {
                labels.push((k.to_string(), v));
            }
        };
        add("type", ev.kind.as_str().to_string());
        if self.per_flow {
            ev.for_each_field(|name, value| {
                if matches!(name, "flow" | "prot" | "src_addr" | "dst_addr" | "src_port" | "dst_port") {
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
    match value {
        FieldValue::Str(s) => s.to_string(),
        FieldValue::Ip(ip) => ip.to_string(),
        FieldValue::U64(n) => n.to_string(),
    }
}

/// One log entry: time, line and structured metadata (every event field).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub time_ns: i128,
    pub line: String,
    pub metadata: Vec<(&'static str, String)>,
}

/// Entries of one label set.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    pub labels: Vec<(String, String)>,
    pub entries: Vec<Entry>,
}

/// Entries grouped by stream, keyed by the label string.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    streams: BTreeMap<String, Stream>,
    bytes: usize,
    events: usize,
}

impl Batch {
    /// Adds one event; returns the bytes it added (line plus metadata).
    pub fn add(&mut self, keys: &StreamKeys, ev: &Event) -> usize {
        let labels = keys.labels(ev);
        let mut metadata = Vec::with_capacity(16);
        ev.for_each_field(|name, value| metadata.push((name, value_string(value))));
        let entry = Entry { time_ns: ev.time_ns, line: keys.line(ev), metadata };
        let size = entry.line.len() + entry.metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let stream = self.streams.entry(label_string(&labels)).or_insert_with(|| Stream { labels, entries: Vec::new() });
        // Keep each stream in time order (events mostly arrive in order already).
        let at = stream.entries.partition_point(|e| e.time_ns <= entry.time_ns);
        stream.entries.insert(at, entry);
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
        self.started.map(|t| t + self.wait)
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

    #[test]
    fn labels_defaults_user_override_and_per_flow() {
        let k = StreamKeys::new("h".into(), vec![("host".into(), "mine".into()), ("type".into(), "fixed".into())], false, LineFormat::Text);
        let labels = k.labels(&event());
        assert_eq!(label_string(&labels), "{host=\"mine\", service_name=\"conntrackd\", type=\"fixed\"}");
        let k = StreamKeys::new("h".into(), Vec::new(), true, LineFormat::Json);
        let text = label_string(&k.labels(&event()));
        assert_eq!(
            text,
            "{dst_addr=\"8.8.8.8\", dst_port=\"443\", flow=\"305419896\", host=\"h\", prot=\"TCP\", \
             service_name=\"conntrackd\", src_addr=\"10.99.0.1\", src_port=\"40002\", type=\"NEW\"}"
        );
        assert!(k.line(&event()).starts_with("{\"time\":"), "json line format is the whole event");
    }
}
