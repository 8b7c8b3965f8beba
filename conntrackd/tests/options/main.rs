//! The option matrix: every value of every boolean and enumerated key of the
//! key table (the daemon's key declarations, through `conntrackd::testing::keys`), and every URL
//! scheme, runs the real daemon end to end in a fresh network namespace. One
//! entry is injected with ctnetlink; the case checks that it arrives where the
//! value says (stdout, stderr, nowhere, journald, rsyslog, VictoriaLogs, the
//! daemon's own log) and that SIGTERM ends the daemon with status 0 within
//! 5 s. The cases come from the table: a key or value without an entry in
//! `cases.rs` fails the test by name, and so does an entry the table lacks.
//!
//! Needs root, `cargo xtask setup` (rsyslog, systemd-journald, VictoriaLogs).
//! `CTD_MATRIX_JOBS` sets how many cases run at once (default 4);
//! `CTD_MATRIX_ONLY=text` runs only the cases whose name contains it.
#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../logsinks/journald.rs"]
mod journald;
#[path = "../loki_support/mod.rs"]
mod loki_support;
#[allow(dead_code)]
#[path = "../logsinks/rsyslog.rs"]
mod rsyslog;

mod cases;
mod harness;
mod proxy;
mod receivers;

use std::{
    collections::{BTreeSet, VecDeque},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use cases::Entry;
use harness::Cx;
use keys::Kind;

/// The daemon's key table, as its declarations give it.
mod keys {
    pub use conntrackd::testing::{apply_flags, env_name, Kind};

    pub fn all() -> Vec<conntrackd::testing::Key> {
        conntrackd::testing::keys()
    }
}

/// Every (key, value) the table enumerates: booleans both ways, each
/// enumeration value, each URL scheme.
fn table_values() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for key in keys::all() {
        let values: &[&'static str] = match key.kind {
            Kind::Bool => &["true", "false"],
            Kind::Enum(values) | Kind::Url(values) => values,
            Kind::Int | Kind::Str | Kind::List | Kind::Table(_) => &[],
        };
        out.extend(values.iter().map(|v| (key.path, *v)));
    }
    out
}

/// The entries in table order, and what does not match between table and entries.
fn plan() -> (Vec<Entry>, Vec<String>) {
    let mut entries = cases::entries();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for e in &entries {
        if !seen.insert((e.key, e.value)) {
            problems.push(format!("two matrix cases for {}={}", e.key, e.value));
        }
    }
    let table = table_values();
    for (key, value) in &table {
        if !seen.contains(&(*key, *value)) {
            problems.push(format!("no matrix case for {key}={value} (add one to conntrackd/tests/options/cases.rs)"));
        }
    }
    for e in &entries {
        if !table.contains(&(e.key, e.value)) {
            problems.push(format!("matrix case for {}={}, but the key table has no such value", e.key, e.value));
        }
    }
    let order = |e: &Entry| (!e.slow, table.iter().position(|kv| *kv == (e.key, e.value)).unwrap_or(usize::MAX));
    entries.sort_by_key(order);
    (entries, problems)
}

#[test]
fn every_enumerated_value_of_the_key_table_has_a_matrix_case() {
    let (entries, problems) = plan();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(entries.len() >= 60, "only {} cases", entries.len());
}

/// One case's result.
struct Outcome {
    name: String,
    took: Duration,
    result: Result<String, String>,
}

#[test]
fn option_matrix_runs_every_value_end_to_end() {
    common::require_root_and_tools();
    receivers::require_all();
    let (entries, problems) = plan();
    let only = std::env::var("CTD_MATRIX_ONLY").ok();
    let total = entries.len();
    let queue: VecDeque<(usize, Entry)> =
        entries.into_iter().enumerate().filter(|(_, e)| only.as_ref().is_none_or(|o| e.name().contains(o.as_str()))).collect();
    let jobs: usize = std::env::var("CTD_MATRIX_JOBS").ok().and_then(|j| j.parse().ok()).unwrap_or(4).max(1);
    eprintln!("option matrix: {} of {total} cases, {jobs} at a time", queue.len());
    let started = Instant::now();
    let queue = Mutex::new(queue);
    let outcomes = Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let Some((index, entry)) = queue.lock().unwrap().pop_front() else { return };
                let outcome = run_one(index, &entry);
                eprintln!("option matrix: {} {} ({:.1} s)", if outcome.result.is_ok() { "ok  " } else { "FAIL" }, outcome.name, outcome.took.as_secs_f64());
                outcomes.lock().unwrap().push(outcome);
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));
    let wall = started.elapsed();
    let mut report = String::new();
    for o in &outcomes {
        match &o.result {
            Ok(detail) => report += &format!("ok    {:<45} {:>5.1} s  {detail}\n", o.name, o.took.as_secs_f64()),
            Err(message) => report += &format!("FAIL  {:<45} {:>5.1} s  {}\n", o.name, o.took.as_secs_f64(), message.replace('\n', "\n      ")),
        }
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    eprintln!("{report}option matrix: {} cases, {failed} failed, wall time {:.1} s", outcomes.len(), wall.as_secs_f64());
    if let Some(only) = &only {
        eprintln!("option matrix: PARTIAL run, only cases containing {only:?} (CTD_MATRIX_ONLY)");
    }
    assert!(problems.is_empty() && failed == 0, "{}{failed} matrix cases failed:\n{report}", problems.iter().map(|p| format!("{p}\n")).collect::<String>());
}

/// Runs one case on its own thread (it enters its own namespace); a panic is its failure.
fn run_one(index: usize, entry: &Entry) -> Outcome {
    let name = entry.name();
    let started = Instant::now();
    let result = thread::scope(|s| {
        s.spawn(|| {
            let cx = Cx::new(index, &name);
            (entry.run)(&cx)
        })
        .join()
    });
    let result = result.map_err(|panic| {
        panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "panicked".into())
    });
    Outcome { name, took: started.elapsed(), result }
}
