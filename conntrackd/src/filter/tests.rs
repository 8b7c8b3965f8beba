//! Table-driven tests of both rule languages, their errors, and the kernel
//! pre-filter derived from them (including a soundness property test).
use std::net::IpAddr;

use proptest::prelude::*;

use super::{Prefilter, Rules};
use crate::event::{Endpoints, Event, EventType, Protocol};

fn ev(kind: EventType, proto: Protocol, src: &str, sport: u16, dst: &str, dport: u16) -> Event {
    Event { flow: Some(1), ..Event::bare(kind, proto, Endpoints { src: src.parse().unwrap(), dst: dst.parse().unwrap(), src_port: sport, dst_port: dport }) }
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Event {
    ev(EventType::New, Protocol::Tcp, src, sport, dst, dport)
}

/// Does the single rule `log <expr>` match the event?
fn matches(expr: &str, event: &Event) -> bool {
    let rules = Rules::compile(&[format!("log {expr}"), "drop any".into()]).unwrap_or_else(|e| panic!("{e}"));
    rules.logs(event)
}

#[test]
fn keyword_predicates() {
    let web = tcp("10.0.0.5", 40000, "8.8.8.8", 443);
    let udp = ev(EventType::Destroy, Protocol::Udp, "192.168.1.2", 5353, "224.0.0.251", 5353);
    let v6 = ev(EventType::Update, Protocol::Tcp, "fd00::1", 1234, "2001:db8::7", 22);
    let mapped = tcp("::ffff:10.1.1.1", 1000, "::ffff:8.8.4.4", 53);
    let table: &[(&str, &Event, bool)] = &[
        ("any", &web, true),
        ("ANY", &udp, true),
        ("type NEW", &web, true),
        ("type new,update", &udp, false),
        ("TYPE UPDATE,DESTROY", &udp, true),
        ("protocol TCP", &web, true),
        ("protocol udp", &web, false),
        ("protocol TCP,UDP", &udp, true),
        ("destination address 8.8.8.8", &web, true),
        ("dst address 8.8.0.0/16", &web, true),
        ("dest address 8.8.4.0/24", &web, false),
        ("source address 10.0.0.0/8,192.168.0.0/16", &udp, true),
        ("src address 10.0.0.5 on port 40000", &web, true),
        ("src address 10.0.0.5 on port 40001", &web, false),
        ("destination address 2001:db8::/32", &v6, true),
        ("source address fd00::1", &v6, true),
        ("source address 10.0.0.0/8", &mapped, true),
        ("destination network PUBLIC", &mapped, true),
        ("source network private", &mapped, true),
        ("destination network PUBLIC", &web, true),
        ("destination network MULTICAST", &udp, true),
        ("source network LOCAL,PRIVATE", &v6, true),
        ("destination network LOCAL,PRIVATE", &v6, false),
        ("destination port 443", &web, true),
        ("source port 443", &web, false),
        ("destination port 1024-65535", &web, false),
        ("source port 1024-65535", &web, true),
        ("destination port 22,80,443", &web, true),
        ("destination port 20-23,8000", &v6, true),
        ("on port 40000", &web, true),
        ("on port 5353", &udp, true),
        ("on port 1", &udp, false),
        ("not type NEW", &web, false),
        ("! protocol UDP", &web, true),
        ("!type NEW", &udp, true),
        ("not not type NEW", &web, true),
        ("(type NEW)", &web, true),
        ("type DESTROY, protocol TCP", &web, true),
        ("type DESTROY, protocol UDP", &web, false),
        ("destination port 53, 443", &web, true),
    ];
    for (expr, event, want) in table {
        assert_eq!(matches(expr, event), *want, "log {expr} on {event:?}");
    }
}

#[test]
fn precedence_not_then_and_then_or() {
    let new_udp = ev(EventType::New, Protocol::Udp, "10.0.0.1", 1, "8.8.8.8", 53);
    let upd_udp = ev(EventType::Update, Protocol::Udp, "10.0.0.1", 1, "8.8.8.8", 53);
    // NEW or (UPDATE and TCP)
    assert!(matches("type NEW or type UPDATE and protocol TCP", &new_udp));
    assert!(!matches("type NEW or type UPDATE and protocol TCP", &upd_udp));
    // (NEW or UPDATE) and TCP
    assert!(!matches("(type NEW or type UPDATE) and protocol TCP", &new_udp));
    // (not NEW) and UDP
    assert!(matches("not type NEW and protocol UDP", &upd_udp));
    assert!(!matches("not type NEW and protocol UDP", &new_udp));
    // not (NEW and UDP)
    assert!(!matches("not (type NEW and protocol UDP)", &new_udp));
}

#[test]
fn first_match_wins_and_no_match_logs() {
    let rules = Rules::compile(&["drop destination address 8.8.8.8", "log protocol TCP and destination network PUBLIC", "drop any"]).unwrap();
    assert!(!rules.logs(&tcp("10.0.0.1", 1, "8.8.8.8", 443)));
    assert!(rules.logs(&tcp("10.0.0.1", 1, "1.1.1.1", 443)));
    assert!(!rules.logs(&ev(EventType::New, Protocol::Udp, "10.0.0.1", 1, "1.1.1.1", 53)));
    assert!(!rules.logs(&tcp("10.0.0.1", 1, "10.0.0.5", 22)));
    let none = Rules::compile::<&str>(&[]).unwrap();
    assert!(none.logs(&tcp("10.0.0.1", 1, "10.0.0.5", 22)), "no rules log everything");
    let only_drop_dns = Rules::compile(&["drop destination port 53"]).unwrap();
    assert!(only_drop_dns.logs(&tcp("10.0.0.1", 1, "10.0.0.5", 22)), "no match logs");
}

#[test]
fn product_examples() {
    let defaults = Rules::defaults();
    assert!(defaults.logs(&tcp("10.0.0.1", 1, "8.8.8.8", 443)));
    assert!(!defaults.logs(&tcp("10.0.0.1", 1, "10.0.0.2", 443)));
    assert!(!defaults.logs(&ev(EventType::New, Protocol::Udp, "10.0.0.1", 1, "8.8.8.8", 53)));
    let cel = Rules::compile(&["log protocol == \"TCP\" && is_network(destination.address, \"PUBLIC\")", "drop ANY"]).unwrap();
    assert_eq!(cel.rules[0].language, super::Language::Cel);
    assert_eq!(cel.rules[1].language, super::Language::Keyword);
    assert!(cel.logs(&tcp("10.0.0.1", 1, "8.8.8.8", 443)));
    assert!(!cel.logs(&tcp("10.0.0.1", 1, "10.0.0.2", 443)));
}

#[test]
fn cel_twins_give_the_same_verdicts() {
    let twins: &[(&str, &str)] = &[
        ("type NEW", "event.type == \"NEW\""),
        ("not type DESTROY", "event.type != \"DESTROY\""),
        ("protocol TCP and destination network PUBLIC", "protocol == \"TCP\" && is_network(destination.address, \"PUBLIC\")"),
        ("source network PRIVATE or destination port 53", "is_network(source.address, \"PRIVATE\") || destination.port == 53"),
        ("destination address 8.8.8.8", "destination.address == \"8.8.8.8\""),
        ("destination address 8.8.0.0/16", "in_cidr(destination.address, \"8.8.0.0/16\")"),
        ("source address 10.0.0.0/8", "in_cidr(source.address, '10.0.0.0/8')"),
        ("destination address 2001:db8::/32", "in_cidr(destination.address, \"2001:db8::/32\")"),
        ("source port 1024-65535", "in_range(source.port, 1024, 65535)"),
        ("source port 1024-65535", "source.port >= 1024"),
        ("destination port 0-1023", "destination.port < 1024"),
        ("destination port 0-443", "443 >= destination.port"),
        ("not destination port 443", "destination.port != 443"),
        ("not (type NEW and protocol UDP)", "!(event.type == \"NEW\" && protocol == \"UDP\")"),
        ("any", "true"),
    ];
    let events = [
        tcp("10.0.0.5", 40000, "8.8.8.8", 443),
        tcp("::ffff:10.1.1.1", 80, "8.8.4.4", 53),
        ev(EventType::Destroy, Protocol::Udp, "192.168.1.2", 5353, "224.0.0.251", 53),
        ev(EventType::New, Protocol::Udp, "2001:db8::1", 1023, "2001:db8::7", 1024),
        ev(EventType::Update, Protocol::Tcp, "127.0.0.1", 65535, "8.8.8.8", 0),
    ];
    for (dsl, cel) in twins {
        let a = Rules::compile(&[format!("log {dsl}"), "drop any".into()]).unwrap();
        let b = Rules::compile(&[format!("log {cel}"), "drop any".into()]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.rules[0].language, super::Language::Cel, "{cel}");
        for e in &events {
            assert_eq!(a.logs(e), b.logs(e), "{dsl:?} vs {cel:?} on {e:?}");
        }
        assert_eq!(Prefilter::derive(&a), Prefilter::derive(&b), "{dsl:?} vs {cel:?}");
    }
}

#[test]
fn every_error_names_rule_column_found_and_expected() {
    let table: &[(&str, &str)] = &[
        ("log destination port http", "rule 1 \"log destination port http\", column 22: expected a port number or range after 'port', found 'http'"),
        ("log destination port 90-80", "rule 1 \"log destination port 90-80\", column 22: port range 90-80 is reversed: 90 is above 80"),
        ("log destination port 70000", "rule 1 \"log destination port 70000\", column 22: port 70000 is above 65535"),
        ("log source port 1-65536", "rule 1 \"log source port 1-65536\", column 17: port 65536 is above 65535"),
        ("log dst address 10.0.0.300", "rule 1 \"log dst address 10.0.0.300\", column 17: expected an IP address or CIDR after 'address', found '10.0.0.300'"),
        ("log dst address 1.2.3.4,foo", "rule 1 \"log dst address 1.2.3.4,foo\", column 25: expected an IP address or CIDR after ',', found 'foo'"),
        ("log type NEWW", "rule 1 \"log type NEWW\", column 10: expected an event type (NEW, UPDATE, DESTROY) after 'type', found 'NEWW'"),
        ("log protocol ICMP", "rule 1 \"log protocol ICMP\", column 14: expected a protocol (TCP, UDP) after 'protocol', found 'ICMP'"),
        ("log dst network INTERNET", "rule 1 \"log dst network INTERNET\", column 17: expected a network class (LOCAL, PRIVATE, PUBLIC, MULTICAST) after 'network', found 'INTERNET'"),
        ("log port 80", "rule 1 \"log port 80\", column 5: found 'port' without a direction: expected 'source port', 'destination port' or 'on port'"),
        ("log type NEW and", "rule 1 \"log type NEW and\", column 17: expected a condition after 'and', found end of rule"),
        ("log type NEW or", "rule 1 \"log type NEW or\", column 16: expected a condition after 'or', found end of rule"),
        ("log (type NEW", "rule 1 \"log (type NEW\", column 14: expected ')' to close the '(' at column 5, found end of rule"),
        ("log type NEW)", "rule 1 \"log type NEW)\", column 13: unbalanced ')': no '(' is open"),
        ("log", "rule 1 \"log\", column 4: expected a condition after the action, found end of rule"),
        ("allow any", "rule 1 \"allow any\", column 1: expected 'log' or 'drop', found 'allow'"),
        ("", "rule 1 \"\", column 1: expected 'log' or 'drop', found an empty rule"),
        ("log source foo 1", "rule 1 \"log source foo 1\", column 12: expected 'address', 'network' or 'port' after 'source', found 'foo'"),
        ("log on 80", "rule 1 \"log on 80\", column 8: expected 'port' after 'on', found '80'"),
        ("log type NEW protocol TCP", "rule 1 \"log type NEW protocol TCP\", column 14: expected 'and', 'or' or the end of the rule, found 'protocol'"),
        ("log type NEW; drop", "rule 1 \"log type NEW; drop\", column 13: unexpected character ';'"),
        ("log is_network(destination.address, \"INTERNET\")", "rule 1 \"log is_network(destination.address, \\\"INTERNET\\\")\", column 37: unknown network class \"INTERNET\": expected LOCAL, PRIVATE, PUBLIC or MULTICAST"),
        ("log dest.port == 80", "rule 1 \"log dest.port == 80\", column 5: unknown variable 'dest.port': expected event.type, protocol, source.address, destination.address, source.port, destination.port, process.comm, process.user, process.exe or destination.domain"),
        ("log source.port == \"80\"", "rule 1 \"log source.port == \\\"80\\\"\", column 20: '==' does not apply to 'source.port' (an int) and the string \"80\""),
        ("log protocol == \"ICMP\"", "rule 1 \"log protocol == \\\"ICMP\\\"\", column 17: expected \"TCP\" or \"UDP\", found \"ICMP\""),
        ("log in_cidr(source.address, \"10.0.0.0/33\")", "rule 1 \"log in_cidr(source.address, \\\"10.0.0.0/33\\\")\", column 29: expected a CIDR such as \"10.0.0.0/8\", found \"10.0.0.0/33\""),
        ("log in_range(source.port, 90, 80)", "rule 1 \"log in_range(source.port, 90, 80)\", column 27: in_range(90, 80) is empty: the low bound is above the high bound"),
        ("log protocol == \"TCP\" &&", "rule 1 \"log protocol == \\\"TCP\\\" &&\", column 25: syntax error: expected a value, a variable, '(' or '!', found end of rule"),
        ("log source.port", "rule 1 \"log source.port\", column 5: expected a condition, found 'source.port' (an int)"),
        ("log frob(source.port)", "rule 1 \"log frob(source.port)\", column 5: unknown function 'frob': expected one of size, contains, startsWith, endsWith, matches, int, uint, double, string, bytes, bool, dyn, type, is_network, in_cidr, in_range, and the macros has, all, exists, exists_one, map, filter"),
        ("log frob", "rule 1 \"log frob\", column 5: expected a condition (any, type, protocol, source/destination address|network|port, on port) after the action, found 'frob'"),
        ("log is_nework(source.address)", "rule 1 \"log is_nework(source.address)\", column 5: unknown function 'is_nework': expected one of size, contains, startsWith, endsWith, matches, int, uint, double, string, bytes, bool, dyn, type, is_network, in_cidr, in_range, and the macros has, all, exists, exists_one, map, filter"),
    ];
    for (rule, want) in table {
        let err = Rules::compile(&[*rule]).expect_err(rule);
        assert_eq!(err.to_string(), *want, "{rule}");
    }
    let two = Rules::compile(&["log any", "drop port 1", "log type X"]).unwrap_err();
    assert_eq!(two.0.iter().map(|e| e.index).collect::<Vec<_>>(), vec![2, 3], "every broken rule is reported");
}

#[test]
fn kernel_table_and_summary() {
    let defaults = Prefilter::derive(&Rules::defaults());
    assert_eq!(defaults.to_string(), "kernel keeps: NEW,UPDATE,DESTROY × TCP × src any × dst PUBLIC");
    assert_eq!(defaults.kinds(), vec![EventType::New, EventType::Update, EventType::Destroy]);
    assert_eq!(defaults, Prefilter::tcp_to_public(), "the sources' tests use this table as the defaults'");
    let issue = Rules::compile(&["drop destination address 8.8.8.8", "log protocol TCP and destination network PUBLIC", "drop any"]).unwrap();
    assert_eq!(Prefilter::derive(&issue), defaults, "an address can not be decided by class");
    let new_only = Rules::compile(&["log type NEW,DESTROY and protocol TCP and dst network PUBLIC", "drop any"]).unwrap();
    let p = Prefilter::derive(&new_only);
    assert_eq!(p.to_string(), "kernel keeps: NEW,DESTROY × TCP × src any × dst PUBLIC");
    assert_eq!(p.kinds(), vec![EventType::New, EventType::Destroy]);
    assert_eq!(Prefilter::derive(&Rules::compile(&["drop any"]).unwrap()).to_string(), "kernel keeps: nothing (every event is dropped in the kernel)");
    let mixed = Rules::compile(&["log src network PRIVATE and dst network PUBLIC", "log src network LOCAL and dst network LOCAL", "drop any"]).unwrap();
    assert_eq!(
        Prefilter::derive(&mixed).to_string(),
        "kernel keeps: NEW,UPDATE,DESTROY × TCP × src LOCAL × dst LOCAL; NEW,UPDATE,DESTROY × TCP × src PRIVATE × dst PUBLIC; \
         NEW,UPDATE,DESTROY × UDP × src LOCAL × dst LOCAL; NEW,UPDATE,DESTROY × UDP × src PRIVATE × dst PUBLIC"
    );
    // A CIDR spanning classes keeps every class it touches; one inside a class only that class.
    let span = Rules::compile(&["log dst address 10.0.0.0/7", "drop any"]).unwrap();
    let keep = Prefilter::derive(&span);
    assert!(keep.keeps(&tcp("1.1.1.1", 1, "10.1.1.1", 1)) && keep.keeps(&tcp("1.1.1.1", 1, "11.1.1.1", 1)));
    assert!(keep.keeps(&tcp("1.1.1.1", 1, "192.168.1.1", 1)), "same class as 10.0.0.0/8: kept");
    assert!(!keep.keeps(&tcp("1.1.1.1", 1, "127.0.0.1", 1)) && !keep.keeps(&tcp("1.1.1.1", 1, "224.0.0.1", 1)));
}

/// Random rule lists, written as keyword text, over a pool of values that
/// covers every class and the boundaries of the class prefixes.
fn arb_pred() -> impl Strategy<Value = String> {
    let addrs = prop::sample::select(vec![
        "8.8.8.8",
        "10.0.0.0/8",
        "10.0.0.0/7",
        "0.0.0.0/0",
        "127.0.0.1",
        "169.254.0.0/16",
        "224.0.0.0/3",
        "172.16.0.0/11",
        "fd00::/8",
        "fe80::1",
        "::/0",
        "2001:db8::/32",
        "::ffff:10.0.0.0/104",
        "ff02::1",
        "::1",
    ]);
    prop_oneof![
        Just("any".to_string()),
        prop::sample::select(vec!["NEW", "UPDATE", "DESTROY", "NEW,DESTROY"]).prop_map(|t| format!("type {t}")),
        prop::sample::select(vec!["TCP", "UDP", "TCP,UDP"]).prop_map(|p| format!("protocol {p}")),
        (prop::sample::select(vec!["source", "destination"]), prop::sample::select(vec!["LOCAL", "PRIVATE", "PUBLIC", "MULTICAST", "PUBLIC,PRIVATE"]))
            .prop_map(|(d, c)| format!("{d} network {c}")),
        (prop::sample::select(vec!["src", "dst"]), addrs.clone(), any::<bool>()).prop_map(|(d, a, p)| {
            if p {
                format!("{d} address {a} on port 443")
            } else {
                format!("{d} address {a}")
            }
        }),
        (prop::sample::select(vec!["source port", "destination port", "on port"]), prop::sample::select(vec!["443", "0-65535", "1024-65535", "53,80"]))
            .prop_map(|(s, p)| format!("{s} {p}")),
    ]
}

fn arb_expr() -> impl Strategy<Value = String> {
    arb_pred().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| format!("not ({e})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) or ({b})")),
        ]
    })
}

fn arb_event() -> impl Strategy<Value = Event> {
    let ips = prop::sample::select(vec![
        "8.8.8.8",
        "10.1.2.3",
        "11.0.0.1",
        "127.0.0.1",
        "169.254.1.1",
        "224.0.0.1",
        "239.1.1.1",
        "172.16.0.1",
        "172.32.0.1",
        "192.168.1.1",
        "0.0.0.0",
        "fd00::1",
        "fe80::1",
        "2001:db8::1",
        "::ffff:10.0.0.1",
        "::ffff:8.8.8.8",
        "ff02::1",
        "::1",
        "::",
    ]);
    let kinds = prop::sample::select(vec![EventType::New, EventType::Update, EventType::Destroy]);
    let protos = prop::sample::select(vec![Protocol::Tcp, Protocol::Udp]);
    let ports = prop::sample::select(vec![0u16, 53, 80, 443, 1023, 1024, 65535]);
    (kinds, protos, ips.clone(), ports.clone(), ips, ports).prop_map(|(k, p, s, sp, d, dp)| {
        let (s, d): (IpAddr, IpAddr) = (s.parse().unwrap(), d.parse().unwrap());
        ev(k, p, &s.to_string(), sp, &d.to_string(), dp)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Soundness: whatever the rules log, the kernel table keeps.
    #[test]
    fn kernel_table_keeps_everything_the_rules_log(
        rules in prop::collection::vec((any::<bool>(), arb_expr()), 0..5),
        events in prop::collection::vec(arb_event(), 1..20),
    ) {
        let texts: Vec<String> = rules.iter().map(|(log, e)| format!("{} {e}", if *log { "log" } else { "drop" })).collect();
        let compiled = Rules::compile(&texts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let table = Prefilter::derive(&compiled);
        for e in &events {
            if compiled.logs(e) {
                prop_assert!(table.keeps(e), "rules {:?} log {:?} but the kernel table drops it", texts, e);
            }
        }
    }
}
