//! Syslog transports: the `address` URL and the connection it names.
//!
//! - `udp://host[:port]`: one datagram per message (port 514 by default).
//! - `tcp://host[:port]`: a stream, each message framed with RFC 6587 octet
//!   counting (port 514 by default).
//! - `unixgram:///path`: one datagram per message to a unix datagram socket.
//! - `unixpacket:///path`: one record per message on a connected unix
//!   `SOCK_SEQPACKET` socket (as Go's `net.Dial("unixpacket", …)`).
//! - `unix:///path`: like glibc's and Go's syslog clients, a datagram socket
//!   first and, if the path only accepts streams, a stream socket on which
//!   each message ends with a newline.
use std::{
    fmt,
    io::{self, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket},
    os::{
        fd::AsRawFd,
        unix::net::{UnixDatagram, UnixStream},
    },
    path::PathBuf,
    time::Duration,
};

/// How long one connect or one blocked write may take before the connection
/// is treated as broken (and reopened).
const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub(crate) enum AddressError {
    #[error("expected udp://host:port, tcp://host:port, unix:///path, unixgram:///path or unixpacket:///path, found {0:?}")]
    Scheme(String),
    #[error("expected host[:port] after {scheme}://, found {rest:?}")]
    HostPort { scheme: &'static str, rest: String },
    #[error("expected an absolute socket path (at most 107 bytes) after {scheme}://, found {rest:?}")]
    Path { scheme: &'static str, rest: String },
}

/// A parsed `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    Udp {
        host: String,
        port: u16,
    },
    Tcp {
        host: String,
        port: u16,
    },
    /// Datagram, falling back to stream.
    Unix(PathBuf),
    UnixGram(PathBuf),
    /// A connected `SOCK_SEQPACKET` socket: one record per message.
    UnixPacket(PathBuf),
}

impl Address {
    /// The schemes [`Address::parse`] takes.
    pub const SCHEMES: &'static [&'static str] = &["udp", "tcp", "unix", "unixgram", "unixpacket"];

    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let (scheme, rest) = text.split_once("://").ok_or_else(|| AddressError::Scheme(text.into()))?;
        match scheme.to_ascii_lowercase().as_str() {
            "udp" => host_port("udp", rest).map(|(host, port)| Self::Udp { host, port }),
            "tcp" => host_port("tcp", rest).map(|(host, port)| Self::Tcp { host, port }),
            "unix" => path("unix", rest).map(Self::Unix),
            "unixgram" => path("unixgram", rest).map(Self::UnixGram),
            "unixpacket" => path("unixpacket", rest).map(Self::UnixPacket),
            _ => Err(AddressError::Scheme(text.into())),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Udp { host, port } => write!(f, "udp://{}:{port}", bracket(host)),
            Self::Tcp { host, port } => write!(f, "tcp://{}:{port}", bracket(host)),
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::UnixGram(path) => write!(f, "unixgram://{}", path.display()),
            Self::UnixPacket(path) => write!(f, "unixpacket://{}", path.display()),
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; nothing else (no user, path, query).
fn host_port(scheme: &'static str, rest: &str) -> Result<(String, u16), AddressError> {
    let bad = || AddressError::HostPort { scheme, rest: rest.into() };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        let port = if after.is_empty() { None } else { Some(after.strip_prefix(':').ok_or_else(bad)?) };
        (host, port)
    } else {
        let (host, port) = rest.split_once(':').map_or((rest, None), |(h, p)| (h, Some(p)));
        let valid = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !valid {
            return Err(bad());
        }
        (host, port)
    };
    let port = match port {
        None => 514,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad)?,
    };
    Ok((host.to_string(), port))
}

fn path(scheme: &'static str, rest: &str) -> Result<PathBuf, AddressError> {
    if !rest.starts_with('/') || rest.len() > 107 || rest.contains('\0') {
        return Err(AddressError::Path { scheme, rest: rest.into() });
    }
    Ok(PathBuf::from(rest))
}

/// An open connection to the syslog receiver.
pub(crate) enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    UnixGram(UnixDatagram),
    UnixStream(UnixStream),
    UnixPacket(socket2::Socket),
}

impl Conn {
    pub fn open(address: &Address) -> io::Result<Self> {
        match address {
            Address::Udp { host, port } => open_udp(host, *port),
            Address::Tcp { host, port } => open_tcp(host, *port),
            Address::UnixGram(path) => open_unixgram(path).map(Self::UnixGram),
            Address::UnixPacket(path) => open_unixpacket(path).map(Self::UnixPacket),
            Address::Unix(path) => match open_unixgram(path) {
                Ok(sock) => Ok(Self::UnixGram(sock)),
                Err(err) if err.raw_os_error() == Some(libc::EPROTOTYPE) => {
                    let stream = UnixStream::connect(path)?;
                    stream.set_write_timeout(Some(IO_TIMEOUT))?;
                    Ok(Self::UnixStream(stream))
                }
                Err(err) => Err(err),
            },
        }
    }

    /// Stream connections carry many framed messages per write.
    pub fn is_stream(&self) -> bool {
        matches!(self, Self::Tcp(_) | Self::UnixStream(_))
    }

    /// Appends one message with this connection's framing.
    pub fn frame(&self, out: &mut Vec<u8>, message: &[u8]) {
        match self {
            Self::Tcp(_) => super::format::frame_octet_counting(out, message),
            Self::UnixStream(_) => {
                out.extend_from_slice(message);
                out.push(b'\n');
            }
            Self::Udp(_) | Self::UnixGram(_) | Self::UnixPacket(_) => out.extend_from_slice(message),
        }
    }

    /// True when a connection's peer has closed (or reset) it; a receiver
    /// never sends, so any readable byte or EOF means it is gone.
    pub fn peer_gone(&self) -> bool {
        let fd = match self {
            Self::Tcp(s) => s.as_raw_fd(),
            Self::UnixStream(s) => s.as_raw_fd(),
            Self::UnixPacket(s) => s.as_raw_fd(),
            Self::Udp(_) | Self::UnixGram(_) => return false,
        };
        let mut byte = 0u8;
        // SAFETY: one-byte peek into a local on a valid socket.
        let n = unsafe { libc::recv(fd, (&raw mut byte).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        n == 0 || (n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock)
    }

    /// Sends one datagram (datagram and seqpacket connections).
    pub fn send(&self, message: &[u8]) -> io::Result<()> {
        match self {
            Self::Udp(s) => s.send(message).map(drop),
            Self::UnixGram(s) => s.send(message).map(drop),
            Self::UnixPacket(s) => s.send_with_flags(message, libc::MSG_NOSIGNAL).map(drop),
            Self::Tcp(_) | Self::UnixStream(_) => Err(io::Error::other("send on a stream connection")),
        }
    }

    /// Writes as much of `buf` as it can; returns how many bytes were written
    /// before an error (and the error), or `Ok` when all were.
    pub fn write_stream(&mut self, buf: &[u8]) -> Result<(), (usize, io::Error)> {
        let mut done = 0;
        while let Some(rest) = buf.get(done..).filter(|rest| !rest.is_empty()) {
            let res = match self {
                Self::Tcp(s) => s.write(rest),
                Self::UnixStream(s) => s.write(rest),
                Self::Udp(_) | Self::UnixGram(_) | Self::UnixPacket(_) => Err(io::Error::other("write on a datagram connection")),
            };
            match res {
                Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
                // Write returns at most rest.len(), so `done` stays within buf.
                Ok(n) => done += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err((done, err)),
            }
        }
        Ok(())
    }
}

fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let mut addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    // IPv4 first: `localhost` then reaches receivers that listen on IPv4 only.
    addrs.sort_by_key(SocketAddr::is_ipv6);
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")));
    }
    Ok(addrs)
}

fn open_udp(host: &str, port: u16) -> io::Result<Conn> {
    let target = resolve(host, port)?.into_iter().next().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    let local: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let sock = UdpSocket::bind(local)?;
    sock.connect(target)?;
    Ok(Conn::Udp(sock))
}

fn open_tcp(host: &str, port: u16) -> io::Result<Conn> {
    let mut last = None;
    for addr in resolve(host, port)? {
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(stream) => {
                stream.set_write_timeout(Some(IO_TIMEOUT))?;
                stream.set_nodelay(true)?;
                return Ok(Conn::Tcp(stream));
            }
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| io::ErrorKind::NotFound.into()))
}

/// std has no `SOCK_SEQPACKET`; socket2 opens it (the type by its libc
/// value; socket2 sets close-on-exec).
fn open_unixpacket(path: &std::path::Path) -> io::Result<socket2::Socket> {
    let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::from(libc::SOCK_SEQPACKET), None)?;
    sock.connect(&socket2::SockAddr::unix(path)?)?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(sock)
}

fn open_unixgram(path: &std::path::Path) -> io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    sock.connect(path)?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme_with_defaults() {
        let udp = |host: &str, port| Address::Udp { host: host.into(), port };
        assert_eq!(Address::parse("udp://localhost").unwrap(), udp("localhost", 514));
        assert_eq!(Address::parse("udp://127.0.0.1:5514").unwrap(), udp("127.0.0.1", 5514));
        assert_eq!(Address::parse("UDP://[::1]:601").unwrap(), udp("::1", 601));
        assert_eq!(Address::parse("udp://[::1]").unwrap(), udp("::1", 514));
        assert_eq!(Address::parse("tcp://log.example.com:6514").unwrap(), Address::Tcp { host: "log.example.com".into(), port: 6514 });
        assert_eq!(Address::parse("unix:///dev/log").unwrap(), Address::Unix("/dev/log".into()));
        assert_eq!(Address::parse("unixgram:///run/x.sock").unwrap(), Address::UnixGram("/run/x.sock".into()));
        assert_eq!(Address::parse("unixpacket:///run/p.sock").unwrap(), Address::UnixPacket("/run/p.sock".into()));
        assert_eq!(Address::parse("unixpacket:///run/p.sock").unwrap().to_string(), "unixpacket:///run/p.sock");
        assert_eq!(Address::parse("tcp://[2001:db8::1]:514").unwrap().to_string(), "tcp://[2001:db8::1]:514");
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        for bad in [
            "localhost:514",
            "http://x",
            "udp://",
            "udp://host:0",
            "udp://host:70000",
            "tcp://user@host:1",
            "tcp://host:1/path",
            "udp://[::1",
            "udp://[nothost]:1",
            "udp://[::1]x",
            "unix://dev/log",
            "unixgram://",
            "unixpacket://run/p.sock",
        ] {
            let err = Address::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("expected"), "{bad}: {err}");
        }
    }

    #[test]
    fn unix_falls_back_to_a_stream_socket() {
        let dir = crate::sink::journal::tests::tempdir::Dir::new();
        let path = dir.path().join("stream.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut conn = Conn::open(&Address::Unix(path.clone())).unwrap();
        assert!(conn.is_stream());
        let mut buf = Vec::new();
        conn.frame(&mut buf, b"<30>hello");
        conn.write_stream(&buf).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let mut got = [0u8; 10];
        std::io::Read::read_exact(&mut peer, &mut got).unwrap();
        assert_eq!(&got, b"<30>hello\n");
        assert!(!conn.peer_gone());
        drop(peer);
        assert!(conn.peer_gone(), "a closed peer is noticed before the next write");
        assert!(Conn::open(&Address::UnixGram(path)).is_err(), "unixgram never falls back");
    }

    #[test]
    fn tcp_frames_with_octet_counting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut conn = Conn::open(&Address::Tcp { host: "127.0.0.1".into(), port }).unwrap();
        let mut buf = Vec::new();
        conn.frame(&mut buf, b"<30>1 a");
        conn.frame(&mut buf, b"<30>1 bc");
        conn.write_stream(&buf).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let mut got = vec![0u8; buf.len()];
        std::io::Read::read_exact(&mut peer, &mut got).unwrap();
        assert_eq!(got, b"7 <30>1 a8 <30>1 bc");
    }

    #[test]
    fn unixpacket_sends_one_record_per_message_and_notices_a_closed_peer() {
        let dir = crate::sink::journal::tests::tempdir::Dir::new();
        let path = dir.path().join("packet.sock");
        let listener = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::from(libc::SOCK_SEQPACKET), None).unwrap();
        listener.bind(&socket2::SockAddr::unix(&path).unwrap()).unwrap();
        listener.listen(4).unwrap();
        let conn = Conn::open(&Address::UnixPacket(path.clone())).unwrap();
        assert!(!conn.is_stream(), "records, not a byte stream: no framing");
        let mut framed = Vec::new();
        conn.frame(&mut framed, b"<30>1 a");
        assert_eq!(framed, b"<30>1 a");
        conn.send(b"<30>1 first").unwrap();
        conn.send(b"<30>1 second message").unwrap();
        let (peer, _) = listener.accept().unwrap();
        let peer = std::os::unix::net::UnixDatagram::from(std::os::fd::OwnedFd::from(peer));
        let mut buf = [0u8; 64];
        let n = peer.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<30>1 first", "record boundaries kept");
        let n = peer.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<30>1 second message");
        assert!(!conn.peer_gone());
        drop(peer);
        assert!(conn.peer_gone(), "a closed peer is noticed before the next send");
        assert!(conn.send(b"<30>1 lost").is_err(), "sending to a closed peer fails (EPIPE, no SIGPIPE)");
        drop(listener);
        std::fs::remove_file(&path).unwrap();
        assert!(Conn::open(&Address::UnixPacket(path)).is_err(), "nothing listens");
    }
}
