//! The rule table's two sides (`original_rules.rs`): the original's rule
//! table binary (built by `cargo xtask setup` from its `internal/filter`
//! tests and `xtask/peers/conntrackd-go/ruletable`), what its own tests load
//! and decide, its verdicts on given cases, and ours from `conntrackd filter
//! --explain`. The cases themselves: [`super::rule_cases`].
use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::{json, Value};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// What to install when the Go side is missing.
const SETUP: &str = "run `cargo xtask setup` (it builds the Go original's rule table with Go 1.21 or newer: \
                     `apt-get install golang-go`, or Go from https://go.dev/dl/ on PATH)";

/// One observation of the original's own tests: a rule list loaded, or an
/// event decided (`verdict` is what the original returned then).
#[derive(Debug, Clone)]
pub struct Record {
    pub test: String,
    pub kind: String,
    pub rules: Vec<String>,
    pub event: Option<Value>,
    pub verdict: Option<Verdict>,
}

/// A decision in one spelling for both sides: `log rule 1`, `drop rule 2`,
/// `log no rule`; `error: …` when the rules did not load; `not an event`.
pub type Verdict = String;

/// A rule list and the events to decide with it.
pub type Case = (Vec<String>, Vec<Value>);

/// The rule table binary of `version`, checked against the Go files it was built from.
pub fn table_binary(version: &str) -> PathBuf {
    let bin = PathBuf::from(format!("{ROOT}/target/peers/conntrackd-go-{version}-rules.test"));
    assert!(bin.is_file(), "{} is missing: {SETUP}", bin.display());
    let hooks = if version.starts_with("1.3.") { "hooks_keyword_test.go" } else { "hooks_cel_test.go" };
    let dir = format!("{ROOT}/xtask/peers/conntrackd-go/ruletable");
    let out = Command::new("sha256sum").arg(format!("{dir}/ruletable_test.go")).arg(format!("{dir}/{hooks}")).output().expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {dir}: {}", String::from_utf8_lossy(&out.stderr));
    let digest = String::from_utf8_lossy(&out.stdout).split_whitespace().step_by(2).collect::<Vec<_>>().join(" ");
    let stamp = std::fs::read_to_string(format!("{}.sha256", bin.display())).unwrap_or_default();
    assert_eq!(stamp, digest, "{} was built from other Go files than {dir}: {SETUP}", bin.display());
    bin
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("conntrackd-ruletable-{}-{name}", std::process::id()))
}

/// Runs the original's own `internal/filter` tests (they must pass) and returns what they loaded and decided.
pub fn record(version: &str) -> Vec<Record> {
    let path = temp(&format!("{version}.record"));
    let out = Command::new(table_binary(version))
        .args(["-test.skip", "^TestRuleTableOracle$", "-test.count=1"])
        .env("CONNTRACKD_RULETABLE_RECORD", &path)
        .output()
        .expect("run the original's filter tests");
    assert!(out.status.success(), "the original's own filter tests failed (v{version}):\n{}{}", text(&out.stdout), text(&out.stderr));
    let lines = std::fs::read_to_string(&path).expect("read the record");
    let _ = std::fs::remove_file(&path);
    lines
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("record line {line:?}: {e}"));
            let verdict = v.get("verdict").map(|d| original_verdict(&v["rules"], d));
            Record {
                test: v["test"].as_str().unwrap_or_default().to_string(),
                kind: v["kind"].as_str().unwrap_or_default().to_string(),
                rules: strings(&v["rules"]),
                event: v.get("event").cloned(),
                verdict,
            }
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().map(|s| s.as_str().expect("a string").to_string()).collect()
}

/// Evaluate's (matched, log, index) in the common spelling; a predicate's
/// bare `matched` as the verdict of that one rule in a list.
fn original_verdict(rules: &Value, d: &Value) -> Verdict {
    if d["matched"] != true {
        return "log no rule".into();
    }
    let index = d["index"].as_i64().unwrap_or(-1);
    if index < 0 {
        // A compiled predicate on its own: the rule's action decides.
        let rule = rules[0].as_str().unwrap_or_default().trim_start().to_ascii_lowercase();
        return if rule.starts_with("drop") { "drop rule 1".into() } else { "log rule 1".into() };
    }
    format!("{} rule {}", if d["log"] == true { "log" } else { "drop" }, index + 1)
}

/// What the original's rule table answers for a list that did not load in time.
pub const NEVER_LOADS: &str = "NewFilter did not return within";

/// The original's verdicts of each rule list on its events (`cases`: list,
/// events); `Err` with its error when it refused the list (or, starting with
/// [`NEVER_LOADS`], did not finish loading it).
pub fn oracle(version: &str, cases: &[Case]) -> Vec<Result<Vec<Verdict>, String>> {
    let mut answers = Vec::new();
    // A list that never loads ends the run (exit status 3) after its answer: go on after it.
    while answers.len() < cases.len() {
        let (done, finished) = oracle_run(version, &cases[answers.len()..]);
        assert!(!done.is_empty() || finished, "v{version}: the original's rule table answered nothing");
        answers.extend(done);
        if finished {
            break;
        }
    }
    assert_eq!(answers.len(), cases.len(), "the original's rule table answered {} of {} cases", answers.len(), cases.len());
    answers
}

/// One run of the rule table over `cases`: the answers, and whether it went through all of them.
fn oracle_run(version: &str, cases: &[Case]) -> (Vec<Result<Vec<Verdict>, String>>, bool) {
    let (input, output) = (temp(&format!("{version}.cases")), temp(&format!("{version}.verdicts")));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).expect("write the cases"));
    for (rules, events) in cases {
        writeln!(file, "{}", json!({"rules": rules, "events": events})).expect("write the cases");
    }
    file.flush().expect("write the cases");
    drop(file);
    let out = Command::new(table_binary(version))
        .args(["-test.run", "^TestRuleTableOracle$", "-test.count=1"])
        .env("CONNTRACKD_RULETABLE_CASES", &input)
        .env("CONNTRACKD_RULETABLE_VERDICTS", &output)
        .output()
        .expect("run the original's rule table");
    let stopped = out.status.code() == Some(3);
    assert!(
        out.status.success() || stopped,
        "the original's rule table failed (v{version}, {}; its cases are in {}):\n{}{}",
        out.status,
        input.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
    let answers = std::fs::read_to_string(&output).expect("read the verdicts");
    let _ = (std::fs::remove_file(&input), std::fs::remove_file(&output));
    let answers: Vec<Result<Vec<Verdict>, String>> = answers
        .lines()
        .zip(cases)
        .map(|(line, (rules, _))| {
            let v: Value = serde_json::from_str(line).expect("a verdict line");
            match v["error"].as_str() {
                Some(e) if !e.is_empty() => Err(e.to_string()),
                _ => Ok(v["verdicts"].as_array().expect("verdicts").iter().map(|d| original_verdict(&json!(rules), d)).collect()),
            }
        })
        .collect();
    if stopped {
        assert!(matches!(answers.last(), Some(Err(e)) if e.starts_with(NEVER_LOADS)), "v{version}: the rule table stopped without a timed-out answer");
    }
    (answers, !stopped)
}

/// Ours: `conntrackd filter --explain` with the rules as `--filter` flags and
/// the events as lines (each line's `flow` is its index). `Err` when the rules
/// did not load; otherwise one verdict per event (`not an event` for a line
/// it refused).
pub fn ours(rules: &[String], events: &[Value]) -> Result<Vec<Verdict>, String> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let config = temp(&format!("ours-{}.toml", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    std::fs::write(&config, "[sink.stream]\nenable = true\n").expect("write the config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conntrackd"));
    cmd.args(["filter", "--explain", "--config"]).arg(&config);
    for rule in rules {
        cmd.arg(format!("--filter={rule}"));
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run conntrackd filter");
    let mut input = String::new();
    for (i, ev) in events.iter().enumerate() {
        let mut ev = ev.clone();
        ev["flow"] = json!(i);
        input.push_str(&format!("{ev}\n"));
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("conntrackd filter exits");
    // A list it refuses ends it before it reads the events.
    match writer.join().expect("stdin writer") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write the events: {e}"),
        _ => {}
    }
    let _ = std::fs::remove_file(&config);
    let stderr = text(&out.stderr);
    let mut verdicts = vec![Verdict::from("not an event"); events.len()];
    let mut answered = 0;
    for line in text(&out.stdout).lines() {
        let mut parts = line.splitn(3, '\t');
        let (verdict, rule, event) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        let ev: Value = serde_json::from_str(event).unwrap_or_else(|e| panic!("ours printed {line:?}: {e}"));
        let i = ev["flow"].as_u64().expect("flow") as usize;
        verdicts[i] = format!("{verdict} {rule}");
        answered += 1;
    }
    let refused = stderr.lines().filter(|l| l.contains(": not an event: ")).count();
    if answered + refused == events.len() && (out.status.success() || refused > 0) {
        Ok(verdicts)
    } else {
        Err(stderr.trim().to_string())
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
