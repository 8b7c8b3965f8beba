//! A TCP server in one test namespace and a named client thread in another,
//! for tests that need real connections (conntrack tracks them).
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    thread,
};

use super::{enter_netns, Netns};

/// Accepts `n` connections on 203.0.113.10:`port` in `server`, answering each.
pub fn serve(server: &Netns, port: u16, n: usize) -> thread::JoinHandle<()> {
    let name = server.name.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = thread::spawn(move || {
        enter_netns(&name);
        let listener = TcpListener::bind(("203.0.113.10", port)).expect("bind");
        tx.send(()).expect("ready");
        for _ in 0..n {
            let (mut c, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 2];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"ok");
        }
    });
    rx.recv().expect("server ready");
    handle
}

/// Connects from a thread named `comm` inside `client`; returns the local port.
pub fn connect_as(client: &Netns, comm: &str, to: &str) -> u16 {
    let (name, to) = (client.name.clone(), to.to_string());
    thread::Builder::new()
        .name(comm.into())
        .spawn(move || {
            enter_netns(&name);
            let mut s = TcpStream::connect(to.as_str()).expect("connect");
            s.write_all(b"hi").expect("write");
            let mut buf = [0u8; 2];
            let _ = s.read(&mut buf);
            s.local_addr().expect("addr").port()
        })
        .expect("spawn")
        .join()
        .expect("client")
}
