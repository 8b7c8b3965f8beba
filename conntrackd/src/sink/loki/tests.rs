//! Fault injection: the whole sink thread against a scripted local HTTP
//! server that answers 429, 500, 400 with a message, too slowly, or closes
//! the connection, then 204. Real sockets, loopback only.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{config::RawLoki, encoding::PushRequest, spawn, LokiConfig, Start};
use crate::{
    event::{tests::tcp_v4_record, Event},
    sink::{queue::BoundedQueue, SinkStats},
};

/// What the server does with one push request.
#[derive(Debug, Clone)]
enum Action {
    Status(u16, &'static str),
    /// Answer 204, but only after this delay (longer than the client timeout).
    Slow(Duration),
    /// Read the request, then close without an answer.
    Close,
}

#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    script: Vec<Action>,
    pushes: Vec<Request>,
    ready_probes: usize,
    /// Pushes answered 2xx (slow ones included: the server did store them).
    stored: usize,
}

struct FakeLoki {
    port: u16,
    shared: Arc<Mutex<Shared>>,
}

impl FakeLoki {
    /// Serves on 127.0.0.1; after the script, every push gets 204.
    fn start(script: Vec<Action>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared { script: script.into_iter().rev().collect(), ..Shared::default() }));
        let state = Arc::clone(&shared);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let state = Arc::clone(&state);
                std::thread::spawn(move || serve(conn, &state));
            }
        });
        Self { port, shared }
    }

    fn state<T>(&self, f: impl FnOnce(&Shared) -> T) -> T {
        f(&self.shared.lock().unwrap())
    }

    fn wait_stored(&self, n: usize) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.state(|s| s.stored) < n {
            assert!(Instant::now() < until, "the server did not get {n} batches");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn serve(conn: TcpStream, state: &Mutex<Shared>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let Some((k, v)) = line.trim_end().split_once(": ") else { break };
        headers.push((k.to_ascii_lowercase(), v.to_string()));
    }
    let len = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let mut conn = conn;
    if path.ends_with("/ready") {
        state.lock().unwrap().ready_probes += 1;
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nready");
        return;
    }
    let action = {
        let mut s = state.lock().unwrap();
        s.pushes.push(Request { path, headers, body });
        s.script.pop().unwrap_or(Action::Status(204, ""))
    };
    let (status, text) = match action {
        Action::Close => return,
        Action::Slow(delay) => {
            std::thread::sleep(delay);
            (204, "")
        }
        Action::Status(status, text) => (status, text),
    };
    if (200..300).contains(&status) {
        state.lock().unwrap().stored += 1;
    }
    let _ = write!(conn, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
}

fn config(port: u16, extra: &str) -> LokiConfig {
    let text = format!(
        "enable = true\naddress = \"http://127.0.0.1:{port}/prefix\"\nbatch_wait = \"20ms\"\n\
         min_backoff = \"10ms\"\nmax_backoff = \"40ms\"\ntimeout = \"2s\"\n{extra}"
    );
    let raw: RawLoki = toml::from_str(&text).unwrap();
    raw.validate().unwrap().unwrap()
}

/// Runs the sink over `n` events; `wait` pushes must be stored before it is stopped.
fn run_sink(config: LokiConfig, n: usize, server: &FakeLoki, wait: usize) -> SinkStats {
    let queue = Arc::new(BoundedQueue::new(1024));
    let (thread, _) = spawn(config, Arc::clone(&queue), Start::Open).unwrap();
    let ev = Event::from_record(&tcp_v4_record(), 0).unwrap();
    queue.push_batch(&vec![ev; n]);
    server.wait_stored(wait);
    queue.close();
    thread.join().unwrap();
    queue.stats()
}

fn entries(req: &Request) -> usize {
    let raw = snap::raw::Decoder::new().decompress_vec(&req.body).unwrap();
    let push: PushRequest = prost::Message::decode(raw.as_slice()).unwrap();
    push.streams.iter().map(|s| s.entries.len()).sum()
}

#[test]
fn retries_429_500_and_closed_connection_then_delivers_once() {
    let server = FakeLoki::start(vec![Action::Status(429, "slow down"), Action::Status(500, "oops"), Action::Close]);
    let stats = run_sink(config(server.port, ""), 5, &server, 1);
    assert_eq!(stats, SinkStats { written: 5, dropped_queue_full: 0, dropped_write_error: 0 });
    let pushes = server.state(|s| s.pushes.clone());
    assert_eq!(pushes.len(), 4, "three failures, then the accepted attempt");
    assert!(pushes.iter().all(|p| p.body == pushes[0].body), "the same batch each time");
    assert_eq!(entries(&pushes[3]), 5);
    assert_eq!(server.state(|s| s.stored), 1, "stored exactly once");
}

#[test]
fn a_400_is_dropped_and_counted_not_retried() {
    let server = FakeLoki::start(vec![Action::Status(400, "entry too far behind")]);
    let c = config(server.port, "");
    let result = super::service::Service::new(&c).unwrap().push(b"x", super::config::Encoding::Protobuf, None);
    assert_eq!(result.outcome, super::retry::Outcome::Status(400));
    assert_eq!(result.message, "entry too far behind", "the server's message is kept for the log");
    let stats = run_sink(c, 3, &server, 1);
    assert_eq!(stats, SinkStats { written: 3, dropped_queue_full: 0, dropped_write_error: 0 });
    let server = FakeLoki::start(vec![Action::Status(400, "bad"), Action::Status(400, "bad")]);
    let stats = run_sink(config(server.port, ""), 3, &server, 0);
    assert_eq!(stats, SinkStats { written: 0, dropped_queue_full: 0, dropped_write_error: 3 });
    assert_eq!(server.state(|s| s.pushes.len()), 1, "never retried");
}

#[test]
fn a_slow_answer_is_retried_and_may_duplicate() {
    let server = FakeLoki::start(vec![Action::Slow(Duration::from_millis(3000))]);
    let stats = run_sink(config(server.port, ""), 4, &server, 2);
    assert_eq!(stats.written, 4);
    // The server stored the first attempt after the client had given up:
    // at-least-once, as documented; the duplicate is the identical batch.
    let pushes = server.state(|s| s.pushes.clone());
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[0].body, pushes[1].body);
}

#[test]
fn credentials_tenant_prefix_and_ready_probe() {
    let server = FakeLoki::start(Vec::new());
    let mut c = config(server.port, "tenant_id = \"team-a\"\nlabels = [\"env=test\"]");
    c.endpoint = super::config::RawLoki { enable: true, address: format!("http://bob:s%40cret@127.0.0.1:{}/prefix/", server.port), ..RawLoki::default() }
        .validate()
        .unwrap()
        .unwrap()
        .endpoint;
    run_sink(c, 2, &server, 1);
    let push = server.state(|s| s.pushes[0].clone());
    assert_eq!(push.path, "/prefix/loki/api/v1/push");
    let header = |name: &str| push.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header("authorization"), Some("Basic Ym9iOnNAY3JldA==".to_string()), "base64 of bob:s@cret");
    assert_eq!(header("x-scope-orgid").as_deref(), Some("team-a"));
    assert_eq!(header("content-type").as_deref(), Some("application/x-protobuf"));
    assert_eq!(entries(&push), 2);
    assert!(server.state(|s| s.ready_probes) >= 1, "GET /prefix/ready probed at start");
}

#[test]
fn outage_at_shutdown_spools_and_the_next_run_sends_in_order() {
    let dir = std::env::temp_dir().join(format!("conntrackd-loki-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spool = format!("spool_dir = {:?}\nshutdown_timeout = \"100ms\"", dir.display().to_string());
    let down = FakeLoki::start(vec![Action::Status(503, "down"); 1000]);
    let stats = run_sink(config(down.port, &spool), 7, &down, 0);
    assert_eq!(stats, SinkStats { written: 0, dropped_queue_full: 0, dropped_write_error: 0 });
    assert!(std::fs::read_dir(&dir).unwrap().count() >= 1, "batch spooled on disk");
    let up = FakeLoki::start(Vec::new());
    let stats = run_sink(config(up.port, &spool), 2, &up, 2);
    assert_eq!(stats.written, 9, "the spooled 7, then the new 2");
    let pushes = up.state(|s| s.pushes.clone());
    assert_eq!(entries(&pushes[0]), 7, "spooled batch first");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, [".lock"], "every batch file is gone once sent");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn without_spool_dir_an_outage_at_shutdown_is_counted_as_lost() {
    let down = FakeLoki::start(vec![Action::Status(500, "down"); 1000]);
    let stats = run_sink(config(down.port, "shutdown_timeout = \"100ms\""), 6, &down, 0);
    assert_eq!(stats, SinkStats { written: 0, dropped_queue_full: 0, dropped_write_error: 6 });
}

#[test]
fn a_backlog_longer_than_one_drain_burst_is_sent_without_new_events() {
    // batch_bytes = 1: every event is its own batch; the first fails, so all
    // 40 wait in the outbox and must go out in order with no further input.
    let server = FakeLoki::start(vec![Action::Status(503, "warming up")]);
    let stats = run_sink(config(server.port, "batch_bytes = 1"), 40, &server, 40);
    assert_eq!(stats.written, 40);
    let pushes = server.state(|s| s.pushes.clone());
    assert_eq!(pushes.len(), 41);
    assert!(pushes.iter().all(|p| entries(p) == 1));
}

#[test]
fn shutdown_timeout_bounds_a_hanging_request() {
    let server = FakeLoki::start(vec![Action::Slow(Duration::from_secs(5))]);
    let mut c = config(server.port, "shutdown_timeout = \"300ms\"");
    c.timeout = Duration::from_secs(10);
    let started = Instant::now();
    let stats = run_sink(c, 2, &server, 0);
    assert!(started.elapsed() < Duration::from_secs(3), "stopped after {:?}", started.elapsed());
    assert_eq!(stats, SinkStats { written: 0, dropped_queue_full: 0, dropped_write_error: 2 }, "no spool_dir: lost, counted");
}

#[test]
fn a_replaced_sender_hands_its_spool_to_its_successor() {
    let dir = std::env::temp_dir().join(format!("conntrackd-loki-handover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spool = format!("spool_dir = {:?}\nshutdown_timeout = \"5s\"", dir.display().to_string());
    let down = FakeLoki::start(vec![Action::Status(503, "down"); 1000]);
    let up = FakeLoki::start(Vec::new());
    let ev = Event::from_record(&tcp_v4_record(), 0).unwrap();
    let old_queue = Arc::new(BoundedQueue::new(1024));
    let (old, successor) = spawn(config(down.port, &spool), Arc::clone(&old_queue), Start::Open).unwrap();
    old_queue.push_batch(&vec![ev.clone(); 7]);
    let spooled =
        |dir: &std::path::Path| std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "batch")).count();
    let until = Instant::now() + Duration::from_secs(10);
    while spooled(&dir) == 0 {
        assert!(Instant::now() < until, "the failed batch was never spooled");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The successor (another label, the server that is up) batches while it waits.
    let (tx, rx) = std::sync::mpsc::channel();
    let new_queue = Arc::new(BoundedQueue::new(1024));
    let (new, _) = spawn(config(up.port, &format!("{spool}\nlabels = [\"generation=2\"]")), Arc::clone(&new_queue), Start::Successor(rx)).unwrap();
    new_queue.push_batch(&vec![ev; 3]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(up.state(|s| s.pushes.len()), 0, "nothing is sent before the hand-over");
    *successor.lock().unwrap() = Some(tx);
    let started = Instant::now();
    old_queue.close();
    old.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "the old sender hands over at once, without waiting out shutdown_timeout: {:?}", started.elapsed());
    assert_eq!(old_queue.stats(), SinkStats::default(), "the old sender neither sent nor lost anything");
    up.wait_stored(2);
    let pushes = up.state(|s| s.pushes.clone());
    assert_eq!(pushes.iter().map(entries).collect::<Vec<_>>(), [7, 3], "the predecessor's batch first, then the successor's");
    new_queue.close();
    new.join().unwrap();
    assert_eq!(new_queue.stats(), SinkStats { written: 10, dropped_queue_full: 0, dropped_write_error: 0 });
    assert_eq!(spooled(&dir), 0, "the adopted spool file is gone once sent");
    std::fs::remove_dir_all(dir).unwrap();
}
