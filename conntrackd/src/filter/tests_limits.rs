//! The limits of a rule (nesting depth and length): every recursion path of
//! both parsers stops at [`MAX_NESTING`] with an error naming the column, and
//! a tree at the limit is parsed, evaluated, turned into the kernel table,
//! printed, cloned and dropped without exhausting even a small stack.
use super::{Prefilter, Rules, MAX_NESTING, MAX_RULE_BYTES};
use crate::event::{Endpoints, Event, EventType, Protocol};

/// The error `Rules::compile` reports for a single rule.
fn error(rule: &str) -> String {
    Rules::compile(&[rule]).expect_err(&rule[..rule.floor_char_boundary(80)]).to_string()
}

fn too_deep(column: usize) -> String {
    format!("column {column}: nesting deeper than {MAX_NESTING} levels")
}

/// `open` n times, `inner`, `close` n times, after `log `.
fn nest(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("log {}{inner}{}", open.repeat(n), close.repeat(n))
}

#[test]
fn twenty_thousand_parentheses_are_an_error_not_a_stack_overflow() {
    let rule = nest("(", "any", ")", 20_000);
    let quoted = format!("log {}…", "(".repeat(56));
    assert_eq!(error(&rule), format!("rule 1 \"{quoted}\", column 261: nesting deeper than 256 levels"));
}

#[test]
fn fifty_thousand_bangs_are_an_error_not_a_stack_overflow() {
    let quoted = format!("log {}…", "!".repeat(56));
    // CEL (`true` makes it CEL) and the keyword language, which has `!` too.
    for inner in ["true", "any"] {
        let rule = nest("!", inner, "", 50_000);
        assert_eq!(error(&rule), format!("rule 1 \"{quoted}\", column 261: nesting deeper than 256 levels"), "{inner}");
    }
}

/// Every way to open a level, at the limit (must compile) and one past it
/// (must fail at the column of the opening token past the limit).
#[test]
fn every_recursion_path_is_bounded() {
    type Build = fn(usize) -> String;
    // (rule with n levels, column of the (n)th opening token when n = MAX_NESTING + 1)
    let paths: &[(&str, Build, usize)] = &[
        ("keyword (", |n| nest("(", "any", ")", n), 5 + MAX_NESTING),
        ("keyword not", |n| nest("not ", "any", "", n), 5 + 4 * MAX_NESTING),
        ("keyword !", |n| nest("!", "type NEW", "", n), 5 + MAX_NESTING),
        ("keyword not (", |n| nest("not (", "any", ")", n / 2), 5 + 5 * (MAX_NESTING / 2)),
        ("cel (", |n| nest("(", "protocol == \"TCP\"", ")", n), 5 + MAX_NESTING),
        ("cel !", |n| nest("!", "true", "", n), 5 + MAX_NESTING),
        ("cel !(", |n| nest("!(", "true", ")", n / 2), 5 + MAX_NESTING),
        ("cel call argument", |n| format!("log in_range({}source.port{}, 1, 2)", "(".repeat(n - 1), ")".repeat(n - 1)), 14 + MAX_NESTING - 1),
        ("cel comparison operand", |n| format!("log 443 == {}destination.port{}", "(".repeat(n), ")".repeat(n)), 12 + MAX_NESTING),
    ];
    for (name, build, column) in paths {
        let at_limit = build(MAX_NESTING);
        Rules::compile(&[&at_limit]).unwrap_or_else(|e| panic!("{name} at the limit must compile: {e}"));
        let past = build(MAX_NESTING + 2);
        let err = error(&past);
        assert!(err.ends_with(&format!("nesting deeper than {MAX_NESTING} levels")), "{name}: {err}");
        assert!(err.contains(&too_deep(*column)), "{name}: {err}");
    }
    // Nested calls fail on the nesting, before any inner call is checked.
    let calls = format!("log {}source.address{}", "is_network(".repeat(MAX_NESTING + 1), ", \"PUBLIC\")".repeat(MAX_NESTING + 1));
    assert!(error(&calls).contains(&too_deep(4 + 11 * MAX_NESTING + 11)), "{}", error(&calls));
}

/// Rules at exactly the limit whose trees are as deep as the languages allow.
fn deepest_rules() -> Vec<String> {
    let alternating = |n: usize| {
        let mut rule = String::from("any");
        for _ in 0..n {
            rule = format!("(type NEW or protocol TCP and {rule})");
        }
        format!("log {rule}")
    };
    // The call is one level, `!(…)` two, `(…)` one.
    let cel = || {
        let (mut rule, mut levels, mut negate) = (String::from("in_cidr(destination.address, \"10.0.0.0/8\")"), 1, true);
        while levels < MAX_NESTING {
            (rule, levels) = if negate && levels + 2 <= MAX_NESTING {
                (format!("!({rule} || source.port == 1)"), levels + 2)
            } else {
                (format!("(event.type == \"NEW\" && {rule})"), levels + 1)
            };
            negate = !negate;
        }
        format!("log {rule}")
    };
    vec![alternating(MAX_NESTING), nest("not ", "destination network PUBLIC", "", MAX_NESTING), nest("!", "true", "", MAX_NESTING), cel()]
}

/// Shapes of CEL the interpreter runs (not the fast tree), `k` levels deep.
const GENERAL_SHAPES: [fn(usize) -> String; 6] = [
    // Over a list that is not constant: not unrolled into the fast tree.
    |k| format!("log {}x == 443{}", "[destination.port].exists(x, ".repeat(k), ")".repeat(k)),
    |k| format!("log destination.port{} == 443", " + 1".repeat(k)),
    |k| format!("log {}destination.port{} == \"443\"", "string(".repeat(k), ")".repeat(k)),
    |k| format!("log {}destination.port{} != []", "[".repeat(k), "]".repeat(k)),
    |k| format!("log {}false", "destination.port + 0 == 1 ? true : ".repeat(k)),
    |k| format!("log size({}process.comm{}) >= 0", "(".repeat(k), ")".repeat(k)),
];

/// The deepest rule of each shape that compiles (found by bisection).
fn deepest_general_cel() -> Vec<String> {
    GENERAL_SHAPES
        .iter()
        .map(|shape| {
            let (mut ok, mut bad) = (1, 2 * MAX_NESTING);
            while bad - ok > 1 {
                let mid = (ok + bad) / 2;
                if Rules::compile(&[shape(mid)]).is_ok() {
                    ok = mid;
                } else {
                    bad = mid;
                }
            }
            let err = error(&shape(bad));
            assert!(err.contains("nesting deeper than"), "one level more is too deep, not another error: {err}");
            shape(ok)
        })
        .collect()
}

/// The daemon evaluates on its main thread (8 MiB); an optimized build needs
/// a few KiB per interpreted level, an unoptimized one (these tests) tens.
#[test]
fn general_cel_at_the_interpreter_limit_evaluates_in_the_daemons_stack() {
    const STACK: usize = 8 << 20;
    let texts = deepest_general_cel();
    let work = move || {
        let rules = Rules::compile(&texts).unwrap_or_else(|e| panic!("{e}"));
        let ev = Event::bare(
            EventType::New,
            Protocol::Tcp,
            Endpoints { src: "10.0.0.1".parse().unwrap(), dst: "8.8.8.8".parse().unwrap(), src_port: 1, dst_port: 443 },
        );
        for (i, rule) in rules.rules.iter().enumerate() {
            assert!(rule.fallible, "rule {i} is the interpreter's");
            let _ = rule.expr.eval(&ev);
        }
        assert_eq!(rules.eval_each(&ev).len(), texts.len());
        let _ = rules.logs(&ev);
        assert_eq!(rules.errors().counts().len(), texts.len());
        let copy = rules.clone();
        assert_eq!(copy, rules);
        assert!(format!("{rules:?}").len() > 1000);
        drop((copy, rules));
    };
    std::thread::Builder::new().stack_size(STACK).spawn(work).expect("spawn").join().expect("deep CEL evaluates within the daemon's stack");
}

#[test]
fn general_cel_past_the_limit_is_an_error() {
    let n = MAX_NESTING + 1;
    for rule in [
        format!("log {}true{}", "[1].exists(x, ".repeat(n / 2 + 1), ")".repeat(n / 2 + 1)),
        format!("log destination.port{} == 1", " + 1".repeat(n)),
        format!("log {}1{} == \"1\"", "string(".repeat(n), ")".repeat(n)),
        format!("log {}1{} != []", "[".repeat(n), "]".repeat(n)),
        format!("log {}false", "true ? true : ".repeat(n)),
        // Far past the limit, where the crate's parser alone would overflow the stack.
        format!("log 1{} == 1", " + 1".repeat(16_000)),
        format!("log {}1{} == 1", "-(".repeat(10_000), ")".repeat(10_000)),
        format!("log x{} == 1", ".a".repeat(30_000)),
        format!("log {}1{} == 1", "size(".repeat(10_000), ")".repeat(10_000)),
        format!("log {}1{} == 1", "[".repeat(20_000), "]".repeat(20_000)),
    ] {
        assert!(error(&rule).ends_with(&format!("nesting deeper than {MAX_NESTING} levels")), "{}", &rule[..40]);
    }
    // Within the nesting limit but deeper than the interpreter's.
    let deep = format!("log {}destination.port{} == \"443\"", "string(".repeat(150), ")".repeat(150));
    assert!(error(&deep).contains("nesting deeper than 100 levels in a part the CEL interpreter runs"), "{}", error(&deep));
}

/// Parse, evaluate, derive the kernel table, print, clone, compare and drop.
fn end_to_end() {
    let texts = deepest_rules();
    let rules = Rules::compile(&texts).unwrap_or_else(|e| panic!("{e}"));
    let event = |src: &str, dst: &str| {
        Event::bare(EventType::New, Protocol::Tcp, Endpoints { src: src.parse().unwrap(), dst: dst.parse().unwrap(), src_port: 1, dst_port: 443 })
    };
    for ev in [event("10.0.0.1", "8.8.8.8"), event("fd00::1", "10.1.1.1")] {
        for rule in &rules.rules {
            let _ = rule.expr.matches(&ev);
        }
        assert_eq!(rules.eval_each(&ev).len(), rules.rules.len());
        assert!(!rules.logs(&ev) || Prefilter::derive(&rules).keeps(&ev));
    }
    let table = Prefilter::derive(&rules);
    assert!(!table.to_string().is_empty());
    assert!(format!("{rules:?}").len() > texts.iter().map(String::len).sum::<usize>());
    let copy = rules.clone();
    assert_eq!(copy, rules);
    drop(copy);
    drop(rules);
}

#[test]
fn a_rule_at_the_limit_works_on_the_main_test_thread() {
    end_to_end();
}

/// The daemon compiles and evaluates rules on its runtime thread; the threads
/// std and tokio start get 2 MiB. An unoptimized build needs about half of
/// that for the deepest trees at the limit (parsing and cloning them), an
/// optimized build far less.
#[test]
fn a_rule_at_the_limit_works_on_a_small_stack() {
    const STACK: usize = 2 << 20;
    std::thread::Builder::new().stack_size(STACK).spawn(end_to_end).expect("spawn").join().expect("a rule at the limit fits in 2 MiB of stack");
}

#[test]
fn long_flat_chains_are_wide_not_deep() {
    // ~64 KiB of `and`/`or`: no nesting at all, one flat operand list each.
    let and = format!("log type NEW{}", " and protocol TCP".repeat((MAX_RULE_BYTES - 20) / 17));
    let or = format!("log {}", ["destination.port == 1"; 2_500].join(" || "));
    for rule in [&and, &or] {
        assert!(rule.len() <= MAX_RULE_BYTES, "{}", rule.len());
        let rules = Rules::compile(&[rule.as_str()]).unwrap_or_else(|e| panic!("{e}"));
        let depth = match &rules.rules[0].expr {
            super::ast::Expr::And(v) | super::ast::Expr::Or(v) => v.len(),
            other => panic!("{other:?}"),
        };
        assert!(depth > 2_000, "{depth} operands in one node");
        std::thread::Builder::new().stack_size(64 << 10).spawn(move || drop(rules)).unwrap().join().expect("a flat tree drops on 64 KiB");
    }
}

#[test]
fn rule_length_is_bounded() {
    let fits = format!("log {}any", " ".repeat(MAX_RULE_BYTES - 7));
    assert_eq!(fits.len(), MAX_RULE_BYTES);
    Rules::compile(&[&fits]).unwrap_or_else(|e| panic!("{e}"));
    let long = format!("log {}any", " ".repeat(MAX_RULE_BYTES - 6));
    let err = error(&long);
    assert!(err.starts_with(&format!("rule 1 \"log {}…\"", " ".repeat(56))), "{err}");
    assert!(
        err.ends_with(&format!("column {}: the rule is {} bytes long, more than the limit of {MAX_RULE_BYTES}", MAX_RULE_BYTES + 1, MAX_RULE_BYTES + 1)),
        "{err}"
    );
    // The column counts characters: a multi-byte character straddling the limit is the one named.
    // "log  " is 5 bytes: the é at bytes 65535-65536 crosses the limit; it is character 5 + 32766.
    let wide = format!("log  {}any", "é".repeat(MAX_RULE_BYTES / 2));
    let column = 5 + (MAX_RULE_BYTES - 5) / 2 + 1;
    assert!(error(&wide).contains(&format!("column {column}: the rule is")), "{}", error(&wide));
}

#[test]
fn errors_quote_short_rules_whole_and_cut_long_ones() {
    let short = "log type NEWW";
    assert!(error(short).starts_with("rule 1 \"log type NEWW\", column 10"));
    let exactly = format!("log type {}", "A".repeat(60 - 9));
    assert!(error(&exactly).starts_with(&format!("rule 1 {exactly:?}, ")), "{}", error(&exactly));
    let longer = format!("{exactly}B");
    assert!(error(&longer).starts_with(&format!("rule 1 \"{exactly}…\", ")), "{}", error(&longer));
}
