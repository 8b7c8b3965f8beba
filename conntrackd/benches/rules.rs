//! Rule-evaluation throughput on one core, for `cargo xtask bench`:
//! `cargo bench -p conntrackd --bench rules -- ROUNDS REPEATS --set NAME RULE... [--set NAME RULE...]`.
//!
//! The sets are measured interleaved, REPEATS times each, on the same thread;
//! every measurement prints one line
//! `rules set=NAME rules=N evaluations=E seconds=S logged=L`.
//! Bad arguments or rules print an error and exit with status 2. Without
//! arguments (as `cargo test --all-targets` runs it) it measures the default
//! rules and `log any` briefly, as a smoke test.
use std::process::ExitCode;

use conntrackd::bench_support::rule_evaluations;

struct Set {
    name: String,
    rules: Vec<String>,
}

struct Args {
    rounds: u32,
    repeats: u32,
    sets: Vec<Set>,
}

fn main() -> ExitCode {
    // cargo bench appends `--bench` to the arguments of every benchmark binary.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let parsed = if args.is_empty() { Ok(smoke()) } else { parse(&args) };
    match parsed.and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rules bench: {err}");
            ExitCode::from(2)
        }
    }
}

fn smoke() -> Args {
    let set = |name: &str, rules: &[&str]| Set { name: name.to_string(), rules: rules.iter().map(ToString::to_string).collect() };
    Args {
        rounds: 1000,
        repeats: 1,
        sets: vec![set("default", &["log protocol tcp and destination network public", "drop any"]), set("baseline", &["log any"])],
    }
}

fn parse(args: &[String]) -> Result<Args, String> {
    let usage = "usage: rules ROUNDS REPEATS --set NAME RULE... [--set NAME RULE...]";
    let number = |i: usize, what: &str| -> Result<u32, String> {
        let text = args.get(i).ok_or_else(|| format!("missing {what}; {usage}"))?;
        text.parse().map_err(|_| format!("{what} must be a positive integer, found {text:?}; {usage}"))
    };
    let (rounds, repeats) = (number(0, "ROUNDS")?, number(1, "REPEATS")?);
    if rounds == 0 || repeats == 0 {
        return Err(format!("ROUNDS and REPEATS must be above 0; {usage}"));
    }
    let mut sets: Vec<Set> = Vec::new();
    let mut rest = args[2..].iter();
    while let Some(arg) = rest.next() {
        if arg == "--set" {
            let name = rest.next().ok_or_else(|| format!("--set needs a NAME; {usage}"))?;
            sets.push(Set { name: name.clone(), rules: Vec::new() });
        } else {
            let set = sets.last_mut().ok_or_else(|| format!("rule {arg:?} comes before any --set; {usage}"))?;
            set.rules.push(arg.clone());
        }
    }
    if sets.is_empty() || sets.iter().any(|s| s.rules.is_empty()) {
        return Err(format!("every --set needs at least one rule; {usage}"));
    }
    Ok(Args { rounds, repeats, sets })
}

fn run(args: &Args) -> Result<(), String> {
    for _ in 0..args.repeats {
        for set in &args.sets {
            let (evaluations, seconds, logged) = rule_evaluations(&set.rules, args.rounds).map_err(|e| format!("set {}: {e}", set.name))?;
            println!("rules set={} rules={} evaluations={evaluations} seconds={seconds:.9} logged={logged}", set.name, set.rules.len());
        }
    }
    Ok(())
}
