//! The userspace decoder against the same crafted messages as the kernel
//! program, and the differential test: both read the same bytes the same way.
use conntrackd_common::Counter;

use super::decode::decode;
use crate::{
    event::{prefilter::Prefilter, Event, EventType},
    source::testmsg::{MsgBuilder, Spec},
};

fn defaults() -> Prefilter {
    Prefilter::tcp_to_public()
}

fn event(spec: &Spec) -> Event {
    let rec = decode(&spec.message(), &defaults()).expect("kept");
    Event::from_record(&rec, 0).expect("event")
}

#[test]
fn decodes_every_attribute() {
    let mut spec = Spec::tcp(EventType::Destroy, "10.99.0.1", "8.8.8.8");
    spec.mark = Some(42);
    spec.zone = Some(7);
    spec.counters = Some((3, 180, 2, 120));
    spec.timestamp = Some((1_700_000_000_000_000_000, 1_700_000_001_500_000_000));
    let ev = event(&spec);
    assert_eq!((ev.kind, ev.flow, ev.mark, ev.zone, ev.tcp_state), (EventType::Destroy, Some(0xdead_beef), Some(42), Some(7), Some(3)));
    let c = ev.counters.expect("counters");
    assert_eq!((c.orig_packets, c.orig_bytes, c.reply_packets, c.reply_bytes), (3, 180, 2, 120));
    assert_eq!((ev.start_ns, ev.stop_ns), (Some(1_700_000_000_000_000_000), Some(1_700_000_001_500_000_000)));
    assert_eq!(ev.task, None, "only the kernel program sees the task");
}

#[test]
fn outcomes_match_the_kernel_program() {
    let p = defaults();
    assert_eq!(decode(&Spec::tcp(EventType::New, "10.0.0.1", "192.168.1.1").message(), &p), Err(Counter::DropDstClass));
    let mut udp = Spec::tcp(EventType::New, "10.0.0.1", "8.8.4.4");
    udp.proto = 17;
    assert_eq!(decode(&udp.message(), &p), Err(Counter::DropProtocol));
    assert_eq!(decode(&MsgBuilder::new(2 << 8, 0, 2).attr(1, &[0; 4]).build(), &p), Err(Counter::NotConntrack));
    // Found by the fuzzer: a malformed nftables message panicked inside netlink-packet-netfilter.
    let nftables = [0x20, 0, 0, 0, 0x0a, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0, 0, 0x01, 0, 0x04, 0x0a, 0, 0x11, 0, 0, 0, 0, 0x02, 0x26, 0, 0, 0];
    assert_eq!(decode(&nftables, &p), Err(Counter::NotConntrack));
    assert_eq!(decode(&[1, 2], &p), Err(Counter::ParseError));
    let mut truncated = Spec::tcp(EventType::New, "10.0.0.1", "8.8.8.8").message();
    truncated.truncate(truncated.len() - 8);
    assert_eq!(decode(&truncated, &p), Err(Counter::ParseError));
    assert_eq!(decode(&MsgBuilder::new(1 << 8, 0x600, 2).attr(12, &1u32.to_be_bytes()).build(), &p), Err(Counter::ParseError));
}

/// Same bytes through the kernel program (BPF_PROG_TEST_RUN) and the userspace
/// decoder: identical events apart from time and the task.
#[test]
fn kernel_and_userspace_decoders_agree() {
    use crate::source::ebpf::tests_support::{load, run_one};
    let mut program = load();
    let mut specs = Vec::new();
    for (kind, src, dst) in [
        (EventType::New, "10.99.0.1", "8.8.8.8"),
        (EventType::Update, "fd00::1", "2001:4860:4860::8888"),
        (EventType::Destroy, "192.168.1.5", "1.1.1.1"),
        (EventType::New, "10.0.0.1", "10.0.0.2"),
        (EventType::New, "2001:db8::1", "::ffff:8.8.8.8"),
    ] {
        let mut s = Spec::tcp(kind, src, dst);
        s.mark = Some(9);
        s.counters = (kind == EventType::Destroy).then_some((1, 2, 3, 4));
        s.timestamp = (kind == EventType::Destroy).then_some((10, 20));
        specs.push(s.clone());
        // As x86's kernel writes it (no 64-bit padding; the state only on
        // DESTROY), which the kernel program reads container by container.
        (s.pad_64bit, s.tcp_state_only) = (false, kind == EventType::Destroy);
        specs.push(s.clone());
        // Unknown attributes in every container: read attribute by attribute.
        s.unknown_in_containers = true;
        specs.push(s);
    }
    for spec in specs {
        let bytes = spec.message();
        let user = decode(&bytes, &defaults()).map(|r| Event::from_record(&r, 0).expect("event"));
        let kernel = run_one(&mut program, &bytes);
        match (user, kernel) {
            (Ok(mut u), Ok(mut k)) => {
                k.task = None;
                (k.time_ns, u.time_ns) = (0, 0);
                assert_eq!(u, k, "{spec:?}");
            }
            (Err(u), Err(k)) => assert_eq!(u, k, "{spec:?}"),
            (u, k) => panic!("decoders disagree on {spec:?}: userspace {u:?}, kernel {k:?}"),
        }
    }
}

/// The datagram walk never reads past the data, whatever the length fields say.
#[test]
fn datagrams_split_into_messages_whatever_their_lengths() {
    use super::split_messages;
    let header = |len: u32, fill: u8| {
        let mut m = len.to_ne_bytes().to_vec();
        m.resize(16, fill);
        m
    };
    let lens = |data: &[u8]| split_messages(data).map(<[u8]>::len).collect::<Vec<_>>();
    // Two messages, the first padded to 20 bytes (NLMSG_ALIGN of 18).
    let mut two = header(18, 1);
    two.extend_from_slice(&[1, 1, 0, 0]);
    two.extend(header(16, 2));
    assert_eq!(lens(&two), vec![18, 16]);
    for (len, want) in [(0u32, vec![20]), (15, vec![20]), (21, vec![20]), (u32::MAX, vec![20])] {
        let mut data = header(len, 3);
        data.extend_from_slice(&[0; 4]);
        assert_eq!(lens(&data), want, "length field {len}");
    }
    assert!(lens(&[0; 15]).is_empty(), "shorter than a header");
    assert!(lens(&[]).is_empty());
    let mut tail = header(16, 4);
    tail.extend_from_slice(&[9; 10]);
    assert_eq!(lens(&tail), vec![16], "a tail shorter than a header is ignored");
}
