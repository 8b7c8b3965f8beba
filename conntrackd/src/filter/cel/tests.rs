//! Full CEL in rules: what the issue found refused now works, the common
//! shapes become fast-tree nodes (with the kernel tables of their keyword
//! twins), the fast tree and the interpreter agree on every event, load-time
//! errors name their column, and run-time errors make a rule not match and
//! are counted.
use std::sync::Arc;

use proptest::prelude::*;

use super::runtime::evaluate;
use crate::{
    event::{Endpoints, Event, EventType, Process, Protocol},
    filter::{Language, Prefilter, Rules},
};

fn ev(kind: EventType, proto: Protocol, src: &str, sport: u16, dst: &str, dport: u16) -> Event {
    Event::bare(kind, proto, Endpoints { src: src.parse().unwrap(), dst: dst.parse().unwrap(), src_port: sport, dst_port: dport })
}

fn with_process(mut e: Event, comm: &str, exe: &str) -> Event {
    e.process = Some(Arc::new(Process { pid: 1, uid: 0, comm: Some(comm.into()), exe: Some(exe.into()), user: Some("root".into()), ..Default::default() }));
    e
}

fn events() -> Vec<Event> {
    vec![
        with_process(ev(EventType::New, Protocol::Tcp, "10.0.0.5", 40000, "203.0.113.7", 443), "curl", "/usr/bin/curl"),
        ev(EventType::Destroy, Protocol::Udp, "192.168.1.2", 5353, "224.0.0.251", 53),
        ev(EventType::Update, Protocol::Tcp, "fd00::1", 22, "2001:db8::7", 80),
        ev(EventType::New, Protocol::Udp, "::ffff:10.1.1.1", 1024, "127.0.0.1", 65535),
        with_process(ev(EventType::New, Protocol::Tcp, "127.0.0.1", 0, "198.51.100.1", 8080), "ssh", "/usr/bin/ssh"),
    ]
}

fn compile(expr: &str) -> Rules {
    Rules::compile(&[format!("log {expr}"), "drop any".into()]).unwrap_or_else(|e| panic!("{e}"))
}

/// What the issue listed as refused, each with an event it matches and one it does not.
#[test]
fn common_cel_is_accepted_and_evaluated() {
    let all = events();
    let table: &[(&str, usize, usize)] = &[
        ("destination.port in [80, 443]", 0, 1),
        ("process.comm.startsWith(\"cu\")", 0, 4),
        ("process.exe.endsWith(\"/ssh\")", 4, 0),
        ("process.exe.contains(\"bin\")", 0, 1),
        ("process.comm.matches(\"^s.h$\")", 4, 0),
        ("source.address.startsWith(\"10.\")", 3, 2),
        ("size(process.comm) == 4", 0, 1),
        ("string(destination.port) == \"443\"", 0, 1),
        ("int(\"443\") == destination.port", 0, 1),
        ("destination.port + 1 == 444", 0, 1),
        ("destination.port % 2 == 1 && destination.port * 2 > 100", 0, 2),
        ("protocol == \"TCP\" ? destination.port == 443 : destination.port == 53", 1, 2),
        ("[80, 443].exists(p, p == destination.port)", 2, 1),
        ("[\"10.0.0.0/8\", \"192.168.0.0/16\"].exists(c, in_cidr(source.address, c))", 1, 2),
        ("[source.port, destination.port].all(p, p >= 1024)", 3, 0),
        ("[1, 2, 3].map(x, x * 2).filter(x, x > 2).size() == 2 && event.type == \"NEW\"", 0, 1),
        ("[destination.port].exists_one(p, p == 65535)", 3, 0),
        ("source.port < destination.port", 2, 0),
        ("// web traffic\ndestination.port == 443 // https", 0, 1),
        ("{\"TCP\": 1, \"UDP\": 2}[protocol] == 2", 1, 0),
        ("has({\"a\": 1}.a) && protocol in [\"UDP\"]", 1, 0),
        ("destination.domain == \"\"", 0, 0),
        ("double(destination.port) / 2.0 == 221.5", 0, 1),
        ("uint(destination.port) == 443u", 0, 1),
        ("type(destination.port) == int && source.address == \"10.1.1.1\"", 3, 0),
        ("destination.address in [\"2001:db8::7\", \"127.0.0.1\"]", 2, 0),
        ("process.user == \"root\" && process.comm != \"ssh\"", 0, 4),
        ("b\"\\x01\" + bytes(\"a\") == b\"\\x01a\" && destination.port == 53", 1, 0),
    ];
    for &(expr, hit, miss) in table {
        let rules = compile(expr);
        assert_eq!(rules.rules[0].language, Language::Cel, "{expr}");
        if hit == miss {
            assert!(rules.logs(&all[hit]), "{expr} on {:?}", all[hit]);
            continue;
        }
        assert!(rules.logs(&all[hit]), "{expr} must match {:?}", all[hit]);
        assert!(!rules.logs(&all[miss]), "{expr} must not match {:?}", all[miss]);
        assert_eq!(rules.errors().counts(), [0, 0], "{expr}: no evaluation errors");
    }
}

/// Shapes the fast tree expresses: no interpreter, and the kernel table of the keyword twin.
#[test]
fn common_shapes_compile_to_the_fast_tree() {
    let twins: &[(&str, &str)] = &[
        ("destination port 80,443", "destination.port in [80, 443]"),
        ("destination port 80,443", "destination.port in [80, 400 + 43]"),
        ("type NEW,DESTROY", "event.type in [\"NEW\", \"DESTROY\"]"),
        ("protocol TCP and destination network PUBLIC", "protocol == \"TCP\" ? is_network(destination.address, \"public\") : false"),
        ("protocol TCP and destination network PUBLIC", "protocol in [\"TCP\"] && !!is_network(destination.address, \"PUBLIC\")"),
        ("destination address 8.8.8.8,1.1.1.1", "destination.address in [\"8.8.8.8\", \"1.1.1.1\"]"),
        ("source port 1024-65535", "in_range(source.port, 1024, 65535)"),
        ("any", "1 + 1 == 2"),
        ("process comm curl,ssh", "process.comm in [\"curl\", \"ssh\"]"),
        ("destination port 443", "destination.port == int(\"443\")"),
    ];
    for (dsl, cel) in twins {
        let (a, b) = (compile(dsl), compile(cel));
        assert!(!b.rules[0].fallible, "{cel} needs no interpreter: {:?}", b.rules[0].expr);
        for e in events() {
            assert_eq!(a.logs(&e), b.logs(&e), "{dsl:?} vs {cel:?} on {e:?}");
        }
        assert_eq!(Prefilter::derive(&a), Prefilter::derive(&b), "{dsl:?} vs {cel:?}");
    }
    for cel in ["process.comm.startsWith(\"c\")", "destination.address.matches(\"^10\\\\.\")", "process.exe.endsWith(\"x\") || protocol == \"UDP\""] {
        assert!(!compile(cel).rules[0].fallible, "{cel}");
    }
    // `all` and `exists` over a constant list are unrolled.
    let unrolled: &[(&str, &str)] = &[
        ("source address 10.0.0.0/8,192.168.0.0/16", "[\"10.0.0.0/8\", \"192.168.0.0/16\"].exists(n, in_cidr(source.address, n))"),
        ("not destination port 22,80", "[22, 80].all(p, destination.port != p)"),
        (
            "destination network PUBLIC and destination port 443",
            "[443].all(p, [\"PUBLIC\"].exists(c, is_network(destination.address, c) && destination.port == p))",
        ),
        ("any", "[].all(x, x == destination.port)"),
    ];
    for (dsl, cel) in unrolled {
        let (a, b) = (compile(dsl), compile(cel));
        assert!(!b.rules[0].fallible, "{cel}: {:?}", b.rules[0].expr);
        assert_eq!(Prefilter::derive(&a), Prefilter::derive(&b), "{dsl:?} vs {cel:?}");
        for e in events() {
            assert_eq!(a.logs(&e), b.logs(&e), "{dsl:?} vs {cel:?} on {e:?}");
        }
    }
    for cel in
        ["size(process.comm) > 1", "source.port < destination.port", "[1].exists(x, x + destination.port == 444)", "[[1]].exists(x, destination.port in x)"]
    {
        assert!(compile(cel).rules[0].fallible, "{cel} is for the interpreter");
    }
    // The pre-filter reasons around an opaque part: a UDP-only rule still lets the kernel drop TCP.
    let udp = Rules::compile(&["log protocol == \"UDP\" && size(process.comm) > 1", "drop any"]).unwrap();
    assert_eq!(Prefilter::derive(&udp).to_string(), "kernel keeps: NEW,UPDATE,DESTROY × UDP × src any × dst any");
}

#[test]
fn load_time_errors_name_the_column() {
    let table: &[(&str, &str)] = &[
        ("destination.port == \"443\"", "column 25: '==' does not apply to 'destination.port' (an int) and the string \"443\""),
        ("source.address + 1", "column 22: '+' does not apply to 'source.address' (a string) and the int 1"),
        ("sourceport == 1", "column 5: unknown variable 'sourceport': expected event.type"),
        ("source == 1", "column 5: 'source' is not a variable: use source.address or source.port"),
        ("frob(1) == 1", "column 5: unknown function 'frob'"),
        ("size(\"a\", \"b\") == 1", "column 5: size() takes 1 argument, found 2"),
        ("process.comm.frob()", "column 22: unknown method 'frob' on string"),
        ("process.comm.matches(\"(\")", "column 26: bad regular expression:"),
        ("is_network(destination.address, \"INTERNET\")", "column 37: unknown network class \"INTERNET\""),
        ("in_cidr(source.address, \"10.0.0.0/33\")", "column 29: expected a CIDR such as \"10.0.0.0/8\", found \"10.0.0.0/33\""),
        ("in_range(destination.port, 90, 80)", "column 32: in_range(90, 80) is empty"),
        ("protocol == \"tcp\"", "column 17: expected \"TCP\" or \"UDP\", found \"tcp\""),
        ("event.type in [\"NEW\", \"CREATED\"]", "column 19: expected \"NEW\", \"UPDATE\" or \"DESTROY\", found \"CREATED\""),
        ("source.address == \"10.0.0.0/8\"", "column 23: expected an IP address, found \"10.0.0.0/8\" (use in_cidr() for networks)"),
        ("destination.address == \"2001:DB8::1\"", "never equals an address: conntrackd writes this address \"2001:db8::1\""),
        ("destination.port", "column 5: expected a condition, found 'destination.port' (an int)"),
        ("destination.port + 1", "column 5: expected a condition, found a value of type int"),
        ("[1, 2].all(x) ", "column 15: unknown method 'all' on list(int)"),
        ("Msg{a: 1} == 1", "message"),
        ("destination.port ==", "column 24: syntax error: expected a value, a variable, '(' or '!', found end of rule"),
        ("destination.port == 1 ]", "column 27: syntax error"),
        ("destination.port in 443", "column 25: 'in' does not apply to 'destination.port' (an int) and the int 443"),
        ("[1].exists(x, x + \"a\" == 1)", "column 23: '+' does not apply to 'x' (an int) and the string \"a\""),
        ("destination.port ==\n  \"a\" ", "column 27: '==' does not apply"),
        // Columns count characters, not bytes.
        ("process.comm == 'é€' && destination.port == 'x'", "column 49: '==' does not apply"),
        ("process.comm == 'é€' && frob(1)", "column 29: unknown function 'frob'"),
        ("process.comm == 'é€' &&", "column 28: syntax error"),
    ];
    for (expr, want) in table {
        let err = Rules::compile(&[format!("log {expr}")]).expect_err(expr).to_string();
        assert!(err.contains(want), "log {expr}:\n got  {err}\n want …{want}…");
    }
}

#[test]
fn a_failing_rule_does_not_match_and_is_counted() {
    let port_443 = &events()[0];
    let rules = Rules::compile(&[
        "drop 1 / (destination.port - 443) == 0",
        "drop !(int(process.exe) > 0)",
        "log false && int(\"x\") == 1",
        "log true || int(\"x\") == 1",
    ])
    .unwrap();
    assert_eq!(rules.decide(port_443), (true, Some(3)), "both drops fail, the third is false, the fourth true");
    assert_eq!(rules.errors().counts(), [1, 1, 0, 0]);
    let other_port = &events()[1];
    assert_eq!(rules.decide(other_port), (false, Some(0)), "53 - 443 is not 0: 1 / -390 == 0 holds");
    assert_eq!(rules.errors().counts(), [1, 1, 0, 0]);
    // An expression that is not a condition on some events.
    let dyn_rule = Rules::compile(&["log dyn(destination.port == 443 ? true : 1)"]).unwrap();
    assert_eq!(dyn_rule.decide(other_port), (true, None), "no match: logged by default");
    assert_eq!(dyn_rule.errors().counts(), [1]);
}

/// The fast tree and the interpreter give the same answer on every event.
fn same_verdict(expr: &str, e: &Event) -> Result<(), TestCaseError> {
    let rules = compile(expr);
    let (parsed, _) = super::parse(expr, 1).map_err(|e| TestCaseError::fail(e.message))?;
    let (logged, matched) = rules.decide(e);
    match evaluate(&parsed, Some(e), &[]) {
        Ok(cel::Value::Bool(b)) => prop_assert_eq!((logged, matched), (b, Some(usize::from(!b))), "{} on {:?}", expr, e),
        other => prop_assert!(!logged && matched == Some(1), "{} on {:?}: the interpreter gave {:?}", expr, e, other),
    }
    if rules.logs(e) {
        prop_assert!(Prefilter::derive(&rules).keeps(e), "{} logs {:?} but the kernel table drops it", expr, e);
    }
    Ok(())
}

const SHAPES: [&str; 18] = [
    "destination.port in [53, 443, 70000]",
    "event.type == \"NEW\" && protocol != \"UDP\"",
    "is_network(source.address, \"private\") || in_cidr(destination.address, \"2001:db8::/32\")",
    "in_range(destination.port, 1, 1023) ? protocol == \"TCP\" : is_network(destination.address, \"LOCAL\")",
    "destination.address == \"127.0.0.1\" || source.address == \"10.1.1.1\"",
    "!(source.port >= 1024) && destination.port <= 443",
    "process.comm.startsWith(\"c\") || process.exe.matches(\"ssh$\")",
    "process.comm == \"\"",
    "source.address.contains(\":\") != (destination.port > 100)",
    "size(source.address) > 9 && source.port < destination.port",
    "[source.port, destination.port].exists(p, p == 22 || p == 53)",
    "[22, 53, 443].exists(p, p == destination.port) && [\"10.0.0.0/8\"].all(n, !in_cidr(destination.address, n))",
    "[1, 0].exists(d, 100 / d == 100 && destination.port > 0)",
    "1 / (destination.port - 80) > 0 || protocol == \"UDP\"",
    "destination.port - 443 == 0 ? true : int(process.comm) > 1",
    "string(source.port).endsWith(\"0\") && event.type in [\"NEW\", \"UPDATE\"]",
    "source.address in [\"10.0.0.5\", \"fd00::1\", \"10.1.1.1\"]",
    "!is_network(destination.address, \"PUBLIC\") == is_network(source.address, \"LOCAL\")",
];

fn arb_event() -> impl Strategy<Value = Event> {
    let ips = prop::sample::select(vec![
        "10.0.0.5",
        "10.1.1.1",
        "::ffff:10.1.1.1",
        "127.0.0.1",
        "224.0.0.1",
        "fd00::1",
        "fe80::1",
        "2001:db8::1",
        "203.0.113.9",
        "::1",
    ]);
    let ports = prop::sample::select(vec![0u16, 22, 53, 80, 443, 1023, 1024, 8080, 65535]);
    let kinds = prop::sample::select(vec![EventType::New, EventType::Update, EventType::Destroy]);
    let protos = prop::sample::select(vec![Protocol::Tcp, Protocol::Udp]);
    let comm = prop::sample::select(vec![None, Some(("curl", "/usr/bin/curl")), Some(("ssh", "/usr/bin/ssh")), Some(("12", "/x"))]);
    (kinds, protos, ips.clone(), ports.clone(), ips, ports, comm).prop_map(|(k, p, s, sp, d, dp, c)| {
        let e = ev(k, p, s, sp, d, dp);
        match c {
            Some((comm, exe)) => with_process(e, comm, exe),
            None => e,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn the_fast_tree_and_the_interpreter_agree(shape in 0..SHAPES.len(), events in prop::collection::vec(arb_event(), 1..10)) {
        for e in &events {
            same_verdict(SHAPES[shape], e)?;
        }
    }
}
