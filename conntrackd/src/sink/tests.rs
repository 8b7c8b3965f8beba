//! Reload as a diff: unchanged sinks keep their thread and queue, changed
//! ones are replaced off the event path, an abandoned reload stops what it started.
use std::{sync::Arc, time::Duration};

use super::{prepare, RawSinks, Sinks, SinksConfig};

fn config(loki_label: &str, stream: bool) -> SinksConfig {
    let stream = if stream { "[stream]\nenable = true\nwriter = \"discard\"\n" } else { "" };
    // Nothing listens on port 9 of loopback: the Loki sink fails fast and retries.
    toml::from_str::<RawSinks>(&format!(
        "{stream}[loki]\nenable = true\naddress = \"http://127.0.0.1:9\"\nlabels = [\"{loki_label}\"]\n\
         shutdown_timeout = \"200ms\"\nmin_backoff = \"10ms\"\nmax_backoff = \"20ms\"\n"
    ))
    .unwrap()
    .validate()
    .unwrap()
}

fn queue_ptrs(sinks: &Sinks) -> Vec<(&'static str, usize)> {
    sinks.queues().iter().map(|(n, q)| (*n, Arc::as_ptr(q) as usize)).collect()
}

#[test]
fn unchanged_sinks_keep_running_and_changed_ones_are_replaced() {
    let mut sinks = Sinks::start(&config("gen=1", true)).unwrap();
    let before = queue_ptrs(&sinks);

    let same = prepare(&config("gen=1", true), &sinks.specs()).unwrap();
    assert!(same.started().is_empty(), "nothing changed, nothing starts");
    let retiring = sinks.apply(same);
    assert!(retiring.thread.is_none(), "nothing retires");
    assert_eq!(queue_ptrs(&sinks), before, "same queues: the sinks were not touched");

    let changed = prepare(&config("gen=2", true), &sinks.specs()).unwrap();
    assert_eq!(changed.started(), ["loki"]);
    let started = std::time::Instant::now();
    let retiring = sinks.apply(changed);
    assert!(started.elapsed() < Duration::from_millis(100), "the swap waits for nothing: {:?}", started.elapsed());
    let after = queue_ptrs(&sinks);
    assert_eq!(after[0], before[0], "the stream sink is untouched");
    assert_ne!(after[1], before[1], "the Loki sink is new");
    assert_eq!(retiring.finish().iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["loki"]);

    let removed = prepare(&config("gen=2", false), &sinks.specs()).unwrap();
    assert!(removed.started().is_empty());
    let retiring = sinks.apply(removed);
    assert_eq!(sinks.queues().iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["loki"]);
    assert_eq!(retiring.finish().iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["stream"]);
    sinks.shutdown();
}

#[test]
fn a_reload_whose_sink_cannot_start_changes_nothing() {
    let mut sinks = Sinks::start(&config("gen=1", true)).unwrap();
    let before = queue_ptrs(&sinks);
    let mut bad = config("gen=2", true);
    bad.journal = Some(crate::sink::journal::JournalConfig { socket: "/nonexistent/journal.sock".into(), queue_events: 16, optional: false });
    let err = prepare(&bad, &sinks.specs()).err().expect("the journal socket does not exist");
    assert!(err.to_string().contains("cannot start the journal sink"), "{err}");
    assert_eq!(queue_ptrs(&sinks), before);
    let retiring = sinks.apply(prepare(&config("gen=1", true), &sinks.specs()).unwrap());
    assert!(retiring.thread.is_none());
    sinks.shutdown();
}
