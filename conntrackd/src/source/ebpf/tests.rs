//! The kernel program without live traffic: crafted ctnetlink messages fed
//! through BPF_PROG_TEST_RUN (valid, truncated, oversized, nested wrongly,
//! unknown attributes, random mutations), checked against the counters and
//! the records it writes. Needs root (CAP_BPF).
use conntrackd_common::Counter;

use super::{
    program::KernelProgram,
    tests_support::{load, run},
};
use crate::{
    event::{prefilter::Prefilter, Event, EventType, Protocol},
    source::{
        testmsg::{MsgBuilder, Spec},
        KernelCounters,
    },
};

/// Asserts the message had exactly one outcome, `outcome`.
fn assert_outcome(delta: &KernelCounters, outcome: Counter) {
    assert_eq!(delta.get(Counter::Seen), 1, "{delta:?}");
    for c in Counter::ALL.iter().skip(1) {
        let want = u64::from(*c == outcome);
        assert_eq!(delta.get(*c), want, "counter {} after expecting {}: {delta:?}", c.name(), outcome.name());
    }
}

fn one_event(p: &mut KernelProgram, spec: &Spec) -> Event {
    let (delta, events) = run(p, &spec.message());
    assert_outcome(&delta, Counter::Submitted);
    assert_eq!(events.len(), 1);
    events.into_iter().next().expect("one event")
}

#[test]
fn valid_ipv4_new_with_every_attribute() {
    let mut p = load();
    let mut spec = Spec::tcp(EventType::New, "10.99.0.1", "8.8.8.8");
    spec.mark = Some(42);
    spec.zone = Some(7);
    spec.counters = Some((3, 180, 2, 120));
    spec.timestamp = Some((1_700_000_000_000_000_000, 1_700_000_001_000_000_000));
    let ev = one_event(&mut p, &spec);
    assert_eq!(ev.kind, EventType::New);
    assert_eq!(ev.protocol, Protocol::Tcp);
    assert_eq!(ev.flow, Some(0xdead_beef));
    assert_eq!((ev.orig.src, ev.orig.dst), (spec.src, spec.dst));
    assert_eq!((ev.orig.src_port, ev.orig.dst_port), (40002, 443));
    let reply = ev.reply.expect("reply tuple");
    assert_eq!((reply.src, reply.src_port), (spec.dst, 443));
    assert_eq!(ev.tcp_state, Some(3));
    assert_eq!(ev.mark, Some(42));
    assert_eq!(ev.zone, Some(7));
    let c = ev.counters.expect("counters");
    assert_eq!((c.orig_packets, c.orig_bytes, c.reply_packets, c.reply_bytes), (3, 180, 2, 120));
    let task = ev.task.expect("task");
    assert_eq!(task.pid, std::process::id(), "BPF_PROG_TEST_RUN runs in the caller's context");
}

#[test]
fn ipv6_update_and_destroy() {
    let mut p = load();
    let ev = one_event(&mut p, &Spec::tcp(EventType::Update, "fd00::1", "2001:4860:4860::8888"));
    assert_eq!(ev.kind, EventType::Update);
    assert_eq!(ev.orig.dst, "2001:4860:4860::8888".parse::<std::net::IpAddr>().unwrap());
    let mut destroy = Spec::tcp(EventType::Destroy, "fd00::1", "2001:4860:4860::8888");
    destroy.tcp_state = None;
    let ev = one_event(&mut p, &destroy);
    assert_eq!((ev.kind, ev.tcp_state), (EventType::Destroy, None));
}

#[test]
fn policy_drops_are_counted_by_reason() {
    let mut p = load();
    for (src, dst) in [("10.0.0.1", "192.168.1.1"), ("10.0.0.1", "127.0.0.1"), ("2001:db8::1", "ff02::1"), ("::1", "fe80::1")] {
        let (delta, events) = run(&mut p, &Spec::tcp(EventType::New, src, dst).message());
        assert_outcome(&delta, Counter::DropDstClass);
        assert!(events.is_empty());
    }
    let mut udp = Spec::tcp(EventType::New, "10.0.0.1", "8.8.4.4");
    udp.proto = 17;
    udp.tcp_state = None;
    let (delta, _) = run(&mut p, &udp.message());
    assert_outcome(&delta, Counter::DropProtocol);
    // IPv4-mapped IPv6 is classified as IPv4.
    let (delta, _) = run(&mut p, &Spec::tcp(EventType::New, "2001:db8::1", "::ffff:10.1.2.3").message());
    assert_outcome(&delta, Counter::DropDstClass);
}

#[test]
fn malformed_messages_are_parse_errors() {
    let mut p = load();
    let good = Spec::tcp(EventType::New, "10.99.0.1", "8.8.8.8").message();

    let mut truncated = good.clone();
    truncated.truncate(good.len() - 8); // nlmsg_len now exceeds the data
    let (delta, _) = run(&mut p, &truncated);
    assert_outcome(&delta, Counter::ParseError);

    let mut overlong_attr = good.clone();
    overlong_attr[20..22].copy_from_slice(&2000u16.to_ne_bytes()); // CTA_TUPLE_ORIG longer than the message
    let (delta, _) = run(&mut p, &overlong_attr);
    assert_outcome(&delta, Counter::ParseError);

    let mut short_attr = good;
    short_attr[20..22].copy_from_slice(&2u16.to_ne_bytes()); // nla_len < 4
    let (delta, _) = run(&mut p, &short_attr);
    assert_outcome(&delta, Counter::ParseError);

    // CTA_ID with an 8-byte payload: a known attribute of the wrong size.
    let mut b = MsgBuilder::new(1 << 8, 0x600, 2);
    wrong_nesting_free_tuple(&mut b);
    let (delta, _) = run(&mut p, &b.attr(12, &[0; 8]).build());
    assert_outcome(&delta, Counter::ParseError);
}

/// A valid original tuple 10.99.0.1:1 -> 8.8.8.8:443 (TCP).
fn wrong_nesting_free_tuple(b: &mut MsgBuilder) {
    b.nest(1).nest(1).attr(1, &[10, 99, 0, 1]).attr(2, &[8, 8, 8, 8]).end();
    b.nest(2).attr(1, &[6]).attr(2, &1u16.to_be_bytes()).attr(3, &443u16.to_be_bytes()).end().end();
}

#[test]
fn wrongly_nested_and_unknown_attributes() {
    let mut p = load();
    // Addresses inside CTA_TUPLE_PROTO instead of CTA_TUPLE_IP: no address, so malformed.
    let mut b = MsgBuilder::new(1 << 8, 0x600, 2);
    b.nest(1).nest(2).attr(1, &[6]).attr(2, &1u16.to_be_bytes()).attr(3, &443u16.to_be_bytes()).end();
    b.nest(2).attr(1, &[10, 99, 0, 1]).attr(2, &[8, 8, 8, 8]).end().end();
    let (delta, _) = run(&mut p, &b.build());
    assert_outcome(&delta, Counter::ParseError);

    // No original tuple at all.
    let (delta, _) = run(&mut p, &MsgBuilder::new(1 << 8, 0x600, 2).attr(12, &1u32.to_be_bytes()).build());
    assert_outcome(&delta, Counter::ParseError);

    // Unknown attributes at every level are skipped.
    let mut b = MsgBuilder::new(1 << 8, 0x600, 2);
    b.attr(99, &[1, 2, 3]).nest(98).attr(1, &[0; 16]).end();
    b.nest(1).attr(77, &[9; 5]).nest(1).attr(1, &[10, 99, 0, 1]).attr(9, &[0; 3]).attr(2, &[8, 8, 8, 8]).end();
    b.nest(2).attr(1, &[6]).attr(2, &1u16.to_be_bytes()).attr(3, &443u16.to_be_bytes()).end().end();
    let (delta, events) = run(&mut p, &b.attr(12, &7u32.to_be_bytes()).build());
    assert_outcome(&delta, Counter::Submitted);
    assert_eq!(events[0].flow, Some(7));
}

#[test]
fn oversized_and_foreign_messages() {
    let mut p = load();
    let mut b = MsgBuilder::new(1 << 8, 0x600, 2);
    wrong_nesting_free_tuple(&mut b);
    for _ in 0..conntrackd_common::MAX_WALK_STEPS {
        b.attr(99, &[]);
    }
    let (delta, _) = run(&mut p, &b.build());
    assert_outcome(&delta, Counter::WalkLimit);

    // An expectation event (NFNL_SUBSYS_CTNETLINK_EXP = 2) is not ours.
    let (delta, _) = run(&mut p, &MsgBuilder::new(2 << 8, 0, 2).attr(1, &[0; 4]).build());
    assert_outcome(&delta, Counter::NotConntrack);
}

/// The event without what differs between two runs of the same message (time, task).
fn timeless(mut ev: Event) -> Event {
    ev.time_ns = 0;
    ev.task = None;
    ev
}

/// Containers in exactly the kernel's layout are read whole, in one walk step;
/// with an unknown attribute inside every container the same message is read
/// attribute by attribute. Both readings must give the same event.
#[test]
fn whole_containers_read_like_the_attribute_walk() {
    let mut p = load();
    for (kind, src, dst) in [
        (EventType::New, "10.99.0.1", "8.8.8.8"),
        (EventType::Update, "fd00::1", "2001:4860:4860::8888"),
        (EventType::Destroy, "192.168.1.5", "1.1.1.1"),
        (EventType::Destroy, "2001:db8::1", "2001:db8::2"),
    ] {
        for (pad_64bit, tcp_state_only) in [(false, false), (false, true), (true, false)] {
            let mut spec = Spec::tcp(kind, src, dst);
            spec.mark = Some(5);
            spec.counters = Some((3, 180, 2, 120));
            spec.timestamp = Some((1_700_000_000_000_000_000, 1_700_000_001_000_000_000));
            (spec.pad_64bit, spec.tcp_state_only) = (pad_64bit, tcp_state_only);
            let whole = timeless(one_event(&mut p, &spec));
            spec.unknown_in_containers = true;
            let walked = timeless(one_event(&mut p, &spec));
            assert_eq!(whole, walked, "{spec:?}");
            let c = whole.counters.expect("counters");
            assert_eq!((c.orig_packets, c.reply_bytes, whole.tcp_state, whole.stop_ns), (3, 120, Some(3), Some(1_700_000_001_000_000_000)), "{spec:?}");
        }
    }
}

/// xorshift64*: deterministic, dependency-free randomness for the fuzz loop.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_mutations_never_escape_the_counters() {
    let mut p = load();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut base = Spec::tcp(EventType::New, "10.99.0.1", "8.8.8.8");
    base.counters = Some((1, 2, 3, 4));
    base.mark = Some(1);
    let mut destroy = Spec::tcp(EventType::Destroy, "fd00::1", "2001:db8::5");
    (destroy.counters, destroy.timestamp, destroy.pad_64bit, destroy.tcp_state_only) = (Some((5, 6, 7, 8)), Some((9, 10)), false, true);
    let mut update = Spec::tcp(EventType::Update, "10.99.0.2", "1.1.1.1");
    update.pad_64bit = false;
    let templates = [base.message(), destroy.message(), update.message()];
    let prefilter = Prefilter::tcp_to_public();
    for round in 0..3000 {
        let mut msg = templates[round % templates.len()].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(3) {
                0 => {
                    let i = rng.below(msg.len());
                    msg[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let i = rng.below(msg.len());
                    msg[i] = rng.next() as u8;
                }
                _ => msg.truncate(14 + rng.below(msg.len() - 13)),
            }
        }
        let (delta, events) = run(&mut p, &msg);
        assert_eq!(delta.get(Counter::Seen), 1);
        let outcomes: u64 = Counter::ALL.iter().skip(1).map(|c| delta.get(*c)).sum();
        assert_eq!(outcomes, 1, "round {round}: exactly one outcome: {delta:?}");
        assert_eq!(events.len() as u64, delta.get(Counter::Submitted), "round {round}");
        for ev in events {
            assert!(Prefilter::tcp_to_public().keeps(&ev), "round {round}: the kernel kept {ev:?}");
            // Where the userspace decoder also makes an event of these bytes, it is the same one.
            if let Ok(rec) = crate::source::netlink::decode::decode(&msg, &prefilter) {
                let user = Event::from_record(&rec, 0).expect("event");
                assert_eq!(timeless(ev), timeless(user), "round {round}: the decoders disagree on {msg:?}");
            }
        }
    }
}
