//! `conntrackd filter`: saved event lines through the rules (no root, no
//! kernel). The lines written are the logged ones, byte for byte; `--explain`
//! gives every event's verdict and rule; a line that is not an event is an
//! error naming its line number, the others are still processed, exit 1.
use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

/// Event lines as the stream sink writes them (field order and all).
const LINES: [&str; 4] = [
    r#"{"time":"2026-11-28T05:03:17.123456Z","level":"INFO","msg":"NEW TCP connection from 10.99.0.1:40002 to 203.0.113.7:443","type":"NEW","flow":305419896,"prot":"TCP","src_addr":"10.99.0.1","dst_addr":"203.0.113.7","src_port":40002,"dst_port":443,"tcp_state":"SYN_SENT","pid":4242,"uid":1000,"comm":"curl","exe":"/usr/bin/curl"}"#,
    r#"{"time":"2026-11-28T05:03:17.2Z","level":"INFO","msg":"NEW UDP connection from 10.99.0.1:5353 to 224.0.0.251:5353","type":"NEW","flow":7,"prot":"UDP","src_addr":"10.99.0.1","dst_addr":"224.0.0.251","src_port":5353,"dst_port":5353}"#,
    r#"{"time":"2026-11-28T05:03:18Z","level":"INFO","msg":"DESTROY TCP connection from [fd00::1]:51000 to [2001:db8::7]:22","type":"DESTROY","flow":8,"prot":"TCP","src_addr":"fd00::1","dst_addr":"2001:db8::7","src_port":51000,"dst_port":22,"orig_packets":10,"orig_bytes":900,"reply_packets":9,"reply_bytes":4000}"#,
    r#"{"time":"2026-11-28T05:03:19Z","level":"INFO","msg":"NEW UDP connection from 10.99.0.1:40100 to 198.51.100.53:53","type":"NEW","flow":9,"prot":"UDP","src_addr":"10.99.0.1","dst_addr":"198.51.100.53","src_port":40100,"dst_port":53}"#,
];

/// Runs `conntrackd filter` with a configuration file, extra arguments and `input` on stdin.
fn filter(config: &str, args: &[&str], input: &str) -> Output {
    let path = std::env::temp_dir().join(format!("conntrackd-filter-{}-{}.toml", std::process::id(), fastrand_suffix()));
    std::fs::write(&path, config).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_conntrackd"))
        .args(["filter", "--config"])
        .arg(&path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run conntrackd filter");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("conntrackd filter exits");
    let _ = std::fs::remove_file(&path);
    out
}

fn fastrand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const CONFIG: &str = "filter = [\"drop any\"]\n[sink.stream]\nenable = true\n";

#[test]
fn writes_the_lines_the_rules_log_unchanged() {
    let input = LINES.join("\n") + "\n";
    let out = filter(CONFIG, &["--filter", "drop destination.port in [53, 5353]", "--filter", "log any"], &input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}\n{}\n", LINES[0], LINES[2]));
    // The configuration file's rules apply without --filter: `drop any` logs nothing.
    let out = filter(CONFIG, &[], &input);
    assert!(out.status.success() && out.stdout.is_empty(), "{}", text(&out.stderr));
    // CEL with process fields, string functions and macros, as users write it.
    let cel = "log process.comm.startsWith(\"cu\") || [22, 2222].exists(p, p == destination.port)";
    let out = filter(CONFIG, &["--filter", cel, "--filter", "drop any"], &input);
    assert_eq!(text(&out.stdout), format!("{}\n{}\n", LINES[0], LINES[2]), "{}", text(&out.stderr));
}

#[test]
fn explain_gives_the_verdict_and_the_rule_of_every_line() {
    let input = LINES.join("\n");
    let rules = ["--filter", "drop protocol == \"UDP\" && is_network(destination.address, \"MULTICAST\")", "--filter", "log destination.port == 443"];
    let out = filter(CONFIG, &[&["--explain"], &rules[..]].concat(), &input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = format!("log\trule 2\t{}\ndrop\trule 1\t{}\nlog\tno rule\t{}\nlog\tno rule\t{}\n", LINES[0], LINES[1], LINES[2], LINES[3]);
    assert_eq!(text(&out.stdout), want);
}

#[test]
fn a_line_that_is_not_an_event_is_an_error_with_its_number_and_the_rest_is_processed() {
    let input = format!("{}\nnot an event\n\n{}\n{{\"type\":\"NEW\",\"prot\":\"ICMP\"}}\n{}\n", LINES[0], LINES[1], LINES[3]);
    let out = filter(CONFIG, &["--filter", "log any"], &input);
    assert_eq!(out.status.code(), Some(1), "exit 1 at the end");
    assert_eq!(text(&out.stdout), format!("{}\n{}\n{}\n", LINES[0], LINES[1], LINES[3]), "every event line is still processed");
    let err = text(&out.stderr);
    assert!(err.contains("line 2: not an event: not JSON"), "{err}");
    assert!(err.contains("line 5: not an event: \"prot\" is \"ICMP\", not TCP or UDP"), "{err}");
    assert!(!err.contains("line 3"), "a blank line is skipped: {err}");
    assert!(err.contains("2 lines were not events (3 events read, 3 logged)"), "{err}");
}

#[test]
fn a_rule_failing_at_run_time_does_not_match_and_is_reported() {
    let out = filter(CONFIG, &["--explain", "--filter", "drop 1 / (destination.port - 443) == 0", "--filter", "drop any"], LINES[0]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("drop\trule 2\t{}\n", LINES[0]), "rule 1 fails on port 443: rule 2 decides");
    let err = text(&out.stderr);
    assert!(err.contains("rule 1 failed on 1 events"), "{err}");
}

#[test]
fn a_bad_rule_is_an_error_before_any_line_is_read() {
    let out = filter(CONFIG, &["--filter", "log destination.port == \"443\""], LINES[0]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(err.contains("rule 1 ") && err.contains("column 25") && err.contains("'==' does not apply"), "{err}");
}
