//! A recording proxy in front of VictoriaLogs, over plain HTTP or HTTPS with
//! a self-signed certificate for 127.0.0.1: it notes each push's
//! Content-Type (which tells the encoding) and each failed TLS handshake,
//! and forwards the push. Runs in the calling thread's namespace.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What the proxy saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// `Content-Type` of every forwarded request.
    pub content_types: Vec<String>,
    /// Errors of TLS handshakes that did not complete.
    pub handshake_errors: Vec<String>,
}

pub struct Proxy {
    pub port: u16,
    /// The certificate's PEM (HTTPS only), to trust through `tls.ca_file`.
    pub ca_pem: Option<String>,
    pub seen: Arc<Mutex<Seen>>,
}

impl Proxy {
    pub fn http(upstream: u16) -> Self {
        Self::start(upstream, None)
    }

    pub fn https(upstream: u16) -> Self {
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("self-signed certificate");
        let cert = CertificateDer::from(key.cert.der().to_vec());
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key_pair.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], private)
            .expect("server certificate");
        let mut proxy = Self::start(upstream, Some(Arc::new(config)));
        proxy.ca_pem = Some(key.cert.pem());
        proxy
    }

    fn start(upstream: u16, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Arc::clone(&seen);
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (seen, tls) = (Arc::clone(&shared), tls.clone());
                std::thread::spawn(move || match tls {
                    None => serve(tcp, upstream, &seen),
                    Some(config) => {
                        let conn = rustls::ServerConnection::new(config).expect("TLS session");
                        let mut stream = rustls::StreamOwned::new(conn, tcp);
                        while stream.conn.is_handshaking() {
                            if let Err(err) = stream.conn.complete_io(&mut stream.sock) {
                                seen.lock().unwrap().handshake_errors.push(err.to_string());
                                return;
                            }
                        }
                        serve(stream, upstream, &seen);
                    }
                });
            }
        });
        Self { port, ca_pem: None, seen }
    }
}

/// Reads one request, records it, forwards it, answers, closes.
fn serve(mut conn: impl Read + Write, upstream: u16, seen: &Mutex<Seen>) {
    let (method, path, headers, body) = {
        let mut reader = BufReader::new(&mut conn);
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split(' ');
        let (method, path) = (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string());
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let Some((k, v)) = h.trim_end().split_once(": ") else { break };
            headers.push((k.to_string(), v.to_string()));
        }
        let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let mut body = vec![0; header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if method == "POST" {
            seen.lock().unwrap().content_types.push(header("content-type").unwrap_or_default());
        }
        (method, path, headers, body)
    };
    let mut request = ureq::request(&method, &format!("http://127.0.0.1:{upstream}{path}"));
    for (k, v) in headers.iter().filter(|(k, _)| !["content-length", "host", "connection"].contains(&k.to_ascii_lowercase().as_str())) {
        request = request.set(k, v);
    }
    let (status, text) = match request.send_bytes(&body) {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
        Err(e) => (502, e.to_string()),
    };
    let _ = write!(conn, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
    let _ = conn.flush();
}
