//! Sender behaviour against receivers in the test: reconnecting after the
//! TCP peer went away, and giving up only at shutdown. Real rsyslog is
//! exercised by the kernel tests (`tests/logsinks.rs`).
use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
};

use super::*;
use crate::event::tests::tcp_v4_record;

fn header() -> Header {
    Header { format: Format::Rfc5424, facility: Facility::DAEMON, severity: Severity::INFO, hostname: "h".into(), procid: 1, local: false }
}

fn events(n: usize) -> Vec<Event> {
    let ev = Event::from_record(&tcp_v4_record(), 0).unwrap();
    (0..n).map(|_| ev.clone()).collect()
}

/// Reads `n` octet-counted frames.
fn read_frames(reader: &mut impl BufRead, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let mut len = Vec::new();
            reader.read_until(b' ', &mut len).unwrap();
            let len: usize = std::str::from_utf8(&len[..len.len() - 1]).unwrap().parse().unwrap();
            let mut msg = vec![0u8; len];
            reader.read_exact(&mut msg).unwrap();
            String::from_utf8(msg).unwrap()
        })
        .collect()
}

#[test]
fn reconnects_after_the_tcp_peer_goes_away() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let queue = BoundedQueue::new(100);
    let mut sender = Sender::new(Address::Tcp { host: "127.0.0.1".into(), port }, header());
    sender.deliver(&events(2), &queue);
    let (peer, _) = listener.accept().unwrap();
    assert_eq!(read_frames(&mut BufReader::new(&peer), 2).len(), 2);
    drop(peer);
    drop(listener);
    // The receiver is down: delivery waits with backoff until it is back.
    let restart = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let (peer, _) = listener.accept().unwrap();
        read_frames(&mut BufReader::new(peer), 3)
    });
    sender.deliver(&events(3), &queue);
    let frames = restart.join().unwrap();
    assert!(frames.iter().all(|f| f.starts_with("<30>1 ") && f.contains("@cee: {")), "{frames:?}");
    let stats = queue.stats();
    assert_eq!((stats.written, stats.dropped_write_error), (5, 0));
    assert!(sender.failures == 0 && sender.conn.is_some());
}

#[test]
fn undeliverable_events_are_counted_at_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let queue = BoundedQueue::new(100);
    queue.close();
    let mut sender = Sender::new(Address::Tcp { host: "127.0.0.1".into(), port }, header());
    sender.deliver(&events(4), &queue);
    let stats = queue.stats();
    assert_eq!((stats.written, stats.dropped_write_error), (0, 4));
}

#[test]
fn a_persistent_send_error_backs_off_and_ends_at_shutdown() {
    // UDP to the broadcast address without SO_BROADCAST fails (EACCES) on every
    // attempt: the sender must back off, and stop at shutdown instead of hanging.
    let queue = Arc::new(BoundedQueue::new(100));
    let closer = Arc::clone(&queue);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        closer.close();
    });
    let mut sender = Sender::new(Address::Udp { host: "255.255.255.255".into(), port: 514 }, header());
    let start = std::time::Instant::now();
    sender.deliver(&events(3), &queue);
    t.join().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(500), "it retried until the queue closed");
    assert!(sender.failures < 10, "with backoff, not in a busy loop: {} failures", sender.failures);
    let stats = queue.stats();
    assert_eq!((stats.written, stats.dropped_write_error), (0, 3));
}

#[test]
fn udp_datagrams_carry_one_message_each() {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();
    let queue = BoundedQueue::new(100);
    let mut sender = Sender::new(Address::Udp { host: "127.0.0.1".into(), port }, header());
    sender.deliver(&events(2), &queue);
    let mut buf = [0u8; 4096];
    for _ in 0..2 {
        let n = rx.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("<30>1 ") && text.ends_with("Z\"}"), "{text}");
        let body: serde_json::Value = serde_json::from_str(text.split_once(" - @cee: ").unwrap().1).unwrap();
        assert_eq!(body["event"]["flow"], 305_419_896);
    }
    assert_eq!(queue.stats().written, 2);
}

#[test]
fn config_defaults_and_errors() {
    let on = || RawSyslog { enable: true, ..RawSyslog::default() };
    let c = validate(Some(on())).unwrap().unwrap();
    assert_eq!(c.address, Address::Udp { host: "localhost".into(), port: 514 });
    assert_eq!((c.format, c.facility, c.severity, c.queue_events), (Format::Rfc5424, Facility::DAEMON, Severity::INFO, 65_536));
    let c = validate(Some(RawSyslog { facility: "user".into(), severity: "notice".into(), ..on() })).unwrap().unwrap();
    assert_eq!(c.facility.pri(c.severity), 13, "user.notice");
    assert!(validate(Some(RawSyslog { enable: false, ..on() })).unwrap().is_none());
    for (raw, key) in [
        (RawSyslog { address: "syslog.example.com".into(), ..on() }, "sink.syslog.address"),
        (RawSyslog { facility: "local9".into(), ..on() }, "sink.syslog.facility"),
        (RawSyslog { severity: "verbose".into(), ..on() }, "sink.syslog.severity"),
        (RawSyslog { queue_events: 0, ..on() }, "sink.syslog.queue_events"),
    ] {
        let err = validate(Some(raw)).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains("expected"), "{err}");
    }
    // The format is a choice: the file's parser refuses other values, listing the allowed ones.
    let err = toml::from_str::<RawSyslog>("format = \"json\"\n").unwrap_err().to_string();
    assert!(err.contains("expected rfc5424 or rfc3164, found \"json\""), "{err}");
}
