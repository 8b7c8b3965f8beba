//! Rule decisions side by side with the Go original, as a table: v1.4.1
//! (CEL) and v1.3.0 (the keyword language), built by `cargo xtask setup`
//! with their own `internal/filter` tests and the hooks of
//! `xtask/peers/conntrackd-go/ruletable`.
//!
//! The cases: every rule list the original's own tests load and every event
//! they decide (recorded while those tests run, and they must pass); every
//! rule list of its documentation (docs/filter.md, README.md,
//! contrib/config.yaml, contrib/install.sh); and a grid: each of those rule
//! lists and each rule in them × events of every type, protocol, address
//! class (IPv4 and IPv6) and port shape. The original decides each through
//! its own `NewFilter` and `Evaluate`; ours through `conntrackd filter
//! --explain` on the same events as stream-format lines. A difference fails
//! the test unless it is a row of the README's migration guide
//! (`<!-- original-differences -->`, keys `rules.cel.…` and
//! `rules.keyword.…`), and every such row must still be found.
//! `-- --nocapture` prints the tables.
mod common;
mod original_support;

use std::collections::{BTreeMap, BTreeSet};

use original_support::{assert_documented, rule_cases::*, rules::*};
use serde_json::Value;

/// One case that came out differently.
struct Difference {
    source: String,
    rules: Vec<String>,
    event: Option<Value>,
    theirs: Verdict,
    ours: Verdict,
}

/// A line of the table: where the cases come from, how many, which differ.
struct Row {
    name: &'static str,
    cases: usize,
    differences: Vec<Difference>,
}

impl Row {
    fn new(name: &'static str) -> Self {
        Self { name, cases: 0, differences: Vec::new() }
    }

    fn compare(&mut self, source: &str, rules: &[String], event: Option<&Value>, theirs: &str, ours: &str) {
        self.cases += 1;
        if theirs != ours {
            self.differences.push(Difference {
                source: source.to_string(),
                rules: rules.to_vec(),
                event: event.cloned(),
                theirs: theirs.into(),
                ours: ours.into(),
            });
        }
    }
}

fn load_verdict(result: &Result<Vec<Verdict>, String>) -> &'static str {
    match result {
        Ok(_) => "loads",
        Err(e) if e.starts_with(NEVER_LOADS) => "never finishes loading",
        Err(_) => "refused",
    }
}

/// The README key of an intended difference, `None` for any other.
/// `unmapped` is the original's verdict on the event with its IPv4-mapped
/// addresses written as IPv4, if it has any.
fn documented_as(prefix: &str, d: &Difference, unmapped: Option<&Verdict>) -> Option<String> {
    let Some(event) = d.event.as_ref() else {
        // v1.3.0 expands a port range into a list with a uint16 loop that never ends at 65535.
        let wraps = d.rules.iter().any(|r| r.contains("-65535"));
        return (wraps && d.theirs == "never finishes loading" && d.ours == "loads").then(|| format!("{prefix}port_range_to_65535"));
    };
    // Only NEW, UPDATE and DESTROY exist; the original's tests also decide an event of none of them.
    if event["type"] == "" && d.ours == "not an event" {
        return Some(format!("{prefix}untyped_event"));
    }
    // Ours reads ::ffff:a.b.c.d as the IPv4 address it is (and writes it so): the original's verdict on that.
    (unmapped == Some(&d.ours)).then(|| format!("{prefix}ipv4_mapped"))
}

/// The event with its IPv4-mapped IPv6 addresses written as IPv4, if it has any.
fn unmap(event: &Value) -> Option<Value> {
    let mut out = event.clone();
    let mut changed = false;
    for side in ["src_addr", "dst_addr"] {
        if let Some(v4) = event[side].as_str().and_then(|a| a.strip_prefix("::ffff:")).filter(|a| a.contains('.')) {
            out[side] = Value::from(v4);
            changed = true;
        }
    }
    changed.then_some(out)
}

/// Builds and prints the table of `version`; returns the documented keys found.
fn table(version: &str, language: &str, prefix: &str) -> BTreeSet<String> {
    let records = record(version);
    let decided: Vec<&Record> = records.iter().filter(|r| r.event.is_some()).collect();
    let test_lists = distinct(records.iter().map(|r| (r.test.clone(), r.rules.clone())));
    let doc_lists = distinct(doc_rule_lists(version));
    assert!(!decided.is_empty() && !doc_lists.is_empty(), "v{version}: no test decisions or no documented rule lists found");
    let singles = test_lists.iter().chain(&doc_lists).flat_map(|(source, rules)| rules.iter().map(|r| (source.clone(), vec![r.clone()])));
    let lists = distinct(test_lists.iter().cloned().chain(doc_lists.iter().cloned()).chain(singles));
    let grid = grid();

    // Per rule list: the grid's events, then the events the original's tests decided with that list.
    let mut by_list: BTreeMap<&[String], Vec<&Record>> = BTreeMap::new();
    for r in &decided {
        by_list.entry(&r.rules).or_default().push(r);
    }
    let cases: Vec<Case> = lists
        .iter()
        .map(|(_, rules)| {
            let tested = by_list.get(rules.as_slice()).into_iter().flatten().filter_map(|r| r.event.clone());
            (rules.clone(), grid.iter().cloned().chain(tested).collect())
        })
        .collect();
    let theirs = oracle(version, &cases);
    let ours: Vec<Result<Vec<Verdict>, String>> = cases.iter().map(|(rules, events)| ours(rules, events)).collect();

    let mut tests = Row::new("tests: events decided");
    let mut loads = [Row::new("tests: rule lists loaded"), Row::new("docs: rule lists loaded"), Row::new("their single rules loaded")];
    let mut on_grid = Row::new("grid: rule lists × events");
    let (tested, documented): (BTreeSet<&[String]>, BTreeSet<&[String]>) =
        (test_lists.iter().map(|(_, r)| r.as_slice()).collect(), doc_lists.iter().map(|(_, r)| r.as_slice()).collect());
    for (i, (source, rules)) in lists.iter().enumerate() {
        let key = rules.as_slice();
        let (t, o) = (load_verdict(&theirs[i]), load_verdict(&ours[i]));
        if tested.contains(key) {
            loads[0].compare(source, rules, None, t, o);
        }
        if documented.contains(key) {
            loads[1].compare(source, rules, None, t, o);
        }
        if !tested.contains(key) && !documented.contains(key) {
            loads[2].compare(source, rules, None, t, o);
        }
        let recorded = by_list.get(key).map_or(&[][..], Vec::as_slice);
        let t = match &theirs[i] {
            Ok(t) => t,
            Err(e) => {
                assert!(recorded.is_empty(), "v{version}: the original's tests decided events with {rules:?}, which it now refuses: {e}");
                continue;
            }
        };
        for (k, r) in recorded.iter().enumerate() {
            // The original's API on its own must agree with what its tests saw.
            assert_eq!(
                Some(&t[grid.len() + k]),
                r.verdict.as_ref(),
                "v{version} {}: NewFilter/Evaluate disagree with the test's own decision for {rules:?} on {:?}",
                r.test,
                r.event
            );
        }
        let Ok(o) = &ours[i] else {
            for (k, r) in recorded.iter().enumerate() {
                tests.compare(&r.test, rules, r.event.as_ref(), &t[grid.len() + k], "refused");
            }
            continue;
        };
        for (j, event) in grid.iter().enumerate() {
            on_grid.compare(source, rules, Some(event), &t[j], &o[j]);
        }
        for (k, r) in recorded.iter().enumerate() {
            tests.compare(&r.test, rules, r.event.as_ref(), &t[grid.len() + k], &o[grid.len() + k]);
        }
    }
    let unloaded: Vec<&Vec<String>> = lists.iter().enumerate().filter(|(i, _)| theirs[*i].is_err()).map(|(_, (_, r))| r).collect();
    assert_eq!(tests.cases, decided.len(), "v{version}: every decision of the original's tests is compared");

    let [test_loads, doc_loads, single_loads] = loads;
    let rows = [tests, test_loads, doc_loads, single_loads, on_grid];
    let total: usize = rows.iter().map(|r| r.cases).sum();
    let different: usize = rows.iter().map(|r| r.differences.len()).sum();
    println!("\nrule decisions, conntrackd vs the original v{version} ({language} rules)");
    println!("{:<28} {:>8} {:>8} {:>10}", "cases", "total", "same", "different");
    for r in &rows {
        println!("{:<28} {:>8} {:>8} {:>10}", r.name, r.cases, r.cases - r.differences.len(), r.differences.len());
    }
    println!("{:<28} {:>8} {:>8} {:>10}", "all", total, total - different, different);
    println!(
        "({} decisions recorded from {} tests, {} rule lists in the tests, {} in the docs, {} lists on {} grid events; {} lists the original refuses)",
        decided.len(),
        records.iter().map(|r| &r.test).collect::<BTreeSet<_>>().len(),
        test_lists.len(),
        doc_lists.len(),
        lists.len(),
        grid.len(),
        unloaded.len()
    );
    // The original on each differing event that has IPv4-mapped addresses, written as IPv4.
    let all: Vec<(&str, &Difference)> = rows.iter().flat_map(|r| r.differences.iter().map(move |d| (r.name, d))).collect();
    let unmapped: Vec<(usize, Case)> = all.iter().enumerate().filter_map(|(i, (_, d))| Some((i, (d.rules.clone(), vec![unmap(d.event.as_ref()?)?])))).collect();
    let queries: Vec<Case> = unmapped.iter().map(|(_, q)| q.clone()).collect();
    let answers: BTreeMap<usize, Verdict> =
        unmapped.iter().zip(oracle(version, &queries)).filter_map(|((i, _), a)| Some((*i, a.ok()?.into_iter().next()?))).collect();
    let mut measured = BTreeSet::new();
    let mut new = Vec::new();
    for (i, (row, d)) in all.iter().enumerate() {
        let key = documented_as(prefix, d, answers.get(&i));
        let event = d.event.as_ref().map_or_else(String::new, |e| format!(" event {e}"));
        let line = format!("  [{}] {row}: {}: rules {:?}{event}: original {}, ours {}", key.as_deref().unwrap_or("NEW"), d.source, d.rules, d.theirs, d.ours);
        println!("{line}");
        match key {
            Some(key) => {
                measured.insert(key);
            }
            None => new.push(line),
        }
    }
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (_, d)) in all.iter().enumerate() {
        *per_key.entry(documented_as(prefix, d, answers.get(&i)).unwrap_or_else(|| "NEW".into())).or_default() += 1;
    }
    println!("differences by README row: {per_key:?}");
    assert!(new.is_empty(), "v{version}: {} differences from the original that the README does not document:\n{}", new.len(), new.join("\n"));
    measured
}

#[test]
fn cel_rules_decide_as_the_original_v1_4_1_does() {
    let measured = table("1.4.1", "CEL", "rules.cel.");
    assert_documented("rules.cel.", &measured);
}

#[test]
fn keyword_rules_decide_as_the_original_v1_3_0_does() {
    let measured = table("1.3.0", "keyword", "rules.keyword.");
    assert_documented("rules.keyword.", &measured);
}

#[test]
fn rule_lists_are_read_from_code_blocks_yaml_and_backticks() {
    let md = "Use `drop ANY` last.\n```bash\nconntrackd run \\\n  --filter 'log protocol == \"TCP\"' \\\n  --filter \"drop any\"\n\n\
              # next\nlog type NEW\ndrop ANY\nlog <expression>\n```\n";
    let lists = rule_lists(md, true);
    let want: Vec<(usize, Vec<String>)> =
        vec![(1, vec!["drop ANY".into()]), (4, vec!["log protocol == \"TCP\"".into(), "drop any".into()]), (8, vec!["log type NEW".into(), "drop ANY".into()])];
    assert_eq!(lists, want);
    let yaml = "filter:\n  - 'drop destination.address == \"8.8.8.8\"'\n  - \"drop any\"\nsink:\n  - \"stream\"\n";
    let table = "| Old DSL | New CEL |\n|---|---|\n| `on port 53` | `source.port == 53 \\|\\| destination.port == 53` |\n| `and` | `&&` |\n                 | `drop any` | `drop true` alias `drop any` |\n\n```cel\nin_range(source.port, 1024, 65535)\n```\n";
    let rows = migration_table(table);
    assert_eq!(rows[0], (3, "log on port 53".to_string(), "log source.port == 53 || destination.port == 53".to_string()));
    assert_eq!(rows[1], (5, "drop any".to_string(), "drop true".to_string()));
    assert_eq!(rows.len(), 2);
    let lists: Vec<Vec<String>> = rule_lists(table, true).into_iter().map(|(_, l)| l).collect();
    assert!(lists.contains(&vec!["log in_range(source.port, 1024, 65535)".to_string()]) && lists.contains(&vec!["drop true".to_string()]), "{lists:?}");
    assert_eq!(rule_lists(yaml, false), vec![(2, vec!["drop destination.address == \"8.8.8.8\"".to_string(), "drop any".to_string()])]);
}
