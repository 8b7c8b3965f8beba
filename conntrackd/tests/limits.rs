//! The rule limits with the real binary: `check` and `run` refuse a rule
//! nested past 256 levels (the two reproductions of a stack overflow) with a
//! message naming the rule, the column and the limit; a rule at the limit is
//! checked even on a quarter of the default stack; and SIGHUP with such a
//! file keeps the running rules and says why.
mod common;

use std::process::{Command, Output};

use common::{entry::Entry, require_root_and_tools, tempfile_path::TempPath, Daemon, Netns};

const SINK: &str = "[sink.stream]\nenable = true\n";

/// `log ((((…any…))))`: 20 000 parentheses each way.
fn parens() -> String {
    format!("log {}any{}", "(".repeat(20_000), ")".repeat(20_000))
}

/// `log !!!!…true`: 50 000 `!`.
fn bangs() -> String {
    format!("log {}true", "!".repeat(50_000))
}

fn config_with(rules: &[String]) -> String {
    let list: Vec<String> = rules.iter().map(|r| format!("{r:?}")).collect();
    format!("filter = [{}]\n{SINK}", list.join(", "))
}

/// Runs the binary with `args` and `--config <file with config>` (through `sh -c` when `shell` is given).
fn conntrackd(args: &[&str], config: &str, shell: Option<&str>) -> Output {
    let file = TempPath::with_contents(config);
    let bin = env!("CARGO_BIN_EXE_conntrackd");
    let out = match shell {
        Some(prefix) => Command::new("sh").arg("-c").arg(format!("{prefix}; exec \"$0\" \"$@\"")).arg(bin).args(args).arg("--config").arg(file.path()).output(),
        None => Command::new(bin).args(args).arg("--config").arg(file.path()).output(),
    };
    out.expect("run conntrackd")
}

#[test]
fn check_and_run_refuse_a_rule_nested_too_deep_with_rule_column_and_limit() {
    for (rule, opener) in [(parens(), "("), (bangs(), "!")] {
        let quoted = format!("rule 1 \"log {}…\", column 261: nesting deeper than 256 levels", opener.repeat(56));
        let config = config_with(std::slice::from_ref(&rule));
        let check = conntrackd(&["check"], &config, None);
        let err = String::from_utf8_lossy(&check.stderr);
        assert_eq!(check.status.code(), Some(1), "check must exit 1 (not abort): {err}");
        assert!(err.starts_with("conntrackd: config file ") && err.contains(": filter:\n"), "{err}");
        assert!(err.trim_end().ends_with(&quoted), "{err}");
        let run = conntrackd(&["run"], &config, None);
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "run must exit 1 (not abort): {err}");
        assert!(err.contains(&quoted), "{err}");
        // The same from the command line.
        let flag = Command::new(env!("CARGO_BIN_EXE_conntrackd")).args(["check", "--filter", &rule]).output().expect("run conntrackd");
        assert_eq!(flag.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&flag.stderr).contains(&format!("--filter:\n{quoted}")), "{}", String::from_utf8_lossy(&flag.stderr));
    }
}

#[test]
fn a_rule_at_the_limit_is_checked_on_a_quarter_of_the_default_stack() {
    let deep = |n: usize| {
        let mut rule = String::from("any");
        for _ in 0..n {
            rule = format!("(type NEW or protocol TCP and {rule})");
        }
        format!("log {rule}")
    };
    let rules = [deep(256), format!("log {}true", "!".repeat(256)), format!("drop {}protocol == \"UDP\"{}", "(".repeat(256), ")".repeat(256))];
    // The main thread gets `ulimit -s` (8 MiB by default); 2 MiB is what spawned threads get.
    let out = conntrackd(&["check"], &config_with(&rules), Some("ulimit -s 2048"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("configuration is valid"));
    let past = conntrackd(&["check"], &config_with(&[deep(257)]), Some("ulimit -s 2048"));
    assert_eq!(past.status.code(), Some(1));
    // The 257th '(' is the innermost: after "log " and 256 times "(type NEW or protocol TCP and ".
    let column = 4 + 256 * "(type NEW or protocol TCP and ".len() + 1;
    let err = String::from_utf8_lossy(&past.stderr);
    assert!(err.contains(&format!("column {column}: nesting deeper than 256 levels")), "{err}");
}

#[test]
fn sighup_with_a_rule_nested_too_deep_keeps_the_running_rules_and_says_why() {
    require_root_and_tools();
    let ns = Netns::new("limits");
    let d = Daemon::start(&ns, &format!("filter = [\"log protocol tcp and destination network public\", \"drop any\"]\n{SINK}"));
    Entry::tcp("10.99.0.1", "203.0.113.1", 6001, 443).insert(&ns);
    assert_eq!(d.next_event()["src_port"], 6001);
    for (n, rule) in [parens(), bangs()].into_iter().enumerate() {
        // The new file would log UDP too; it must not take effect.
        std::fs::write(d.config_path(), config_with(&[rule, "log any".into()])).unwrap();
        d.signal(libc::SIGHUP);
        d.wait_log("reload failed: keeping the running configuration");
        let why = d.wait_log("nesting deeper than 256 levels");
        assert!(why.contains("rule 1 \"log ") && why.contains("column 261"), "{why}");
        let port = 6100 + n as u16;
        Entry::udp("10.99.0.1", "198.51.100.9", port, 53).insert(&ns);
        Entry::tcp("10.99.0.1", "198.51.100.1", port, 443).insert(&ns);
        let ev = d.next_event();
        assert_eq!((ev["prot"].as_str(), ev["src_port"].as_u64()), (Some("TCP"), Some(u64::from(port))), "the old rules still decide: {ev}");
    }
    let (stopped, rest) = d.stop();
    assert!(rest.iter().all(|l| !l.contains("\"UDP\"")), "no UDP event was logged: {rest:?}");
    assert_eq!(stopped.get("ring_full"), 0, "{}", stopped.log);
}
