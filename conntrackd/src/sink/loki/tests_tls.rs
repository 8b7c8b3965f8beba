//! TLS: the sink against a local rustls server with a self-signed
//! certificate for 127.0.0.1: trusted through `tls.ca_file`, accepted with
//! `tls.insecure_skip_verify`, refused (as a transport error) otherwise.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    path::PathBuf,
    sync::Arc,
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{
    config::{Encoding, RawLoki},
    retry::Outcome,
    service::Service,
};

/// Serves HTTPS on 127.0.0.1, answering every request 204; returns the port and the CA PEM.
fn https_server() -> (u16, String) {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = CertificateDer::from(key.cert.der().to_vec());
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], private)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut reader = BufReader::new(&mut tls);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break; // handshake refused by the client, or closed
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    let _ = reader.read_exact(&mut vec![0; length]);
                    let _ = tls.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
                    let _ = tls.flush();
                    break;
                }
            }
        }
    });
    (port, key.cert.pem())
}

fn push(port: u16, tls: &str) -> (Outcome, String) {
    let raw: RawLoki = toml::from_str(&format!("enable = true\naddress = \"https://127.0.0.1:{port}\"\ntimeout = \"5s\"\n{tls}")).unwrap();
    let result = Service::new(&raw.validate().unwrap().unwrap()).unwrap().push(b"x", Encoding::Protobuf, None);
    (result.outcome, result.message)
}

#[test]
fn ca_file_insecure_skip_verify_and_untrusted() {
    let (port, pem) = https_server();
    let ca: PathBuf = std::env::temp_dir().join(format!("conntrackd-tls-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, pem).unwrap();
    let ca_key = format!("[tls]\nca_file = {:?}", ca.display().to_string());
    assert_eq!(push(port, &ca_key).0, Outcome::Status(204), "trusted through tls.ca_file");
    assert_eq!(push(port, "[tls]\ninsecure_skip_verify = true").0, Outcome::Status(204));
    let (outcome, message) = push(port, "");
    assert_eq!(outcome, Outcome::Transport, "a self-signed certificate is refused by default");
    assert!(message.to_ascii_lowercase().contains("certificate"), "{message}");
    std::fs::remove_file(ca).unwrap();
}
