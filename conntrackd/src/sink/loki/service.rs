//! HTTP to Loki with `ureq` (blocking, on the sink's own thread) over rustls:
//! `POST <address>/loki/api/v1/push` and `GET <address>/ready`.
//! Credentials travel only in headers, never in a URL that could be shown.
// Audited: nothing read from the kernel, a file, the network or the command
// line can panic here; these lints keep it so (allowed in tests).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice, clippy::cast_possible_truncation)
)]
use std::{fs::File, io::Read, path::PathBuf, sync::Arc, time::Duration};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{ring, CryptoProvider},
    pki_types::{CertificateDer, ServerName, UnixTime},
    DigitallySignedStruct, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;

use super::{
    config::{Encoding, LokiConfig},
    retry::Outcome,
};

/// Longest part of an error response body that is logged.
const MAX_MESSAGE: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    #[error("sink.loki.tls.ca_file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("sink.loki.tls: {0}")]
    Tls(#[from] rustls::Error),
}

/// The result of one push: how it ended and what the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushResult {
    pub outcome: Outcome,
    /// The server's error text, or the transport error; empty on success.
    pub message: String,
}

/// A configured client for one Loki endpoint.
pub(crate) struct Service {
    agent: ureq::Agent,
    push_url: String,
    ready_url: String,
    headers: Vec<(&'static str, String)>,
    timeout: Duration,
}

impl Service {
    pub fn new(config: &LokiConfig) -> Result<Self, ServiceError> {
        let mut builder = ureq::AgentBuilder::new().timeout(config.timeout).redirects(0).user_agent(concat!("conntrackd/", env!("CARGO_PKG_VERSION")));
        if config.ca_file.is_some() || config.insecure_skip_verify {
            builder = builder.tls_config(Arc::new(tls_config(config)?));
        }
        let mut headers = Vec::new();
        if let Some(auth) = &config.endpoint.basic_auth {
            headers.push(("Authorization", auth.clone()));
        }
        if let Some(token) = &config.bearer_token {
            headers.push(("Authorization", format!("Bearer {token}")));
        }
        if let Some(tenant) = &config.tenant_id {
            headers.push(("X-Scope-OrgID", tenant.clone()));
        }
        let base = &config.endpoint.base;
        Ok(Self { agent: builder.build(), push_url: format!("{base}/loki/api/v1/push"), ready_url: format!("{base}/ready"), headers, timeout: config.timeout })
    }

    /// Sends one request body; `limit` shortens the configured timeout (shutdown).
    pub fn push(&self, body: &[u8], encoding: Encoding, limit: Option<Duration>) -> PushResult {
        let mut request = self.agent.post(&self.push_url).set("Content-Type", encoding.content_type());
        if let Some(limit) = limit {
            request = request.timeout(limit.min(self.timeout));
        }
        for (name, value) in &self.headers {
            request = request.set(name, value);
        }
        finish(request.send_bytes(body))
    }

    /// `GET <address>/ready`: Ok when the server answers 2xx.
    pub fn ready(&self) -> PushResult {
        let mut request = self.agent.get(&self.ready_url);
        for (name, value) in &self.headers {
            request = request.set(name, value);
        }
        finish(request.call())
    }
}

fn finish(result: Result<ureq::Response, ureq::Error>) -> PushResult {
    match result {
        Ok(response) => {
            let status = response.status();
            // Read the (small) body so the connection can be reused.
            let _ = response.into_reader().take(64 * 1024).read_to_end(&mut Vec::new());
            PushResult { outcome: Outcome::Status(status), message: String::new() }
        }
        Err(ureq::Error::Status(status, response)) => {
            let mut text = String::new();
            let _ = response.into_reader().take(MAX_MESSAGE).read_to_string(&mut text);
            let message: String = text.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            PushResult { outcome: Outcome::Status(status), message }
        }
        // The URL in ureq's message carries no credentials (they were split off).
        Err(ureq::Error::Transport(err)) => PushResult { outcome: Outcome::Transport, message: err.to_string() },
    }
}

fn tls_config(config: &LokiConfig) -> Result<rustls::ClientConfig, ServiceError> {
    let provider = Arc::new(ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
    if config.insecure_skip_verify {
        let verifier = Arc::new(AcceptAnyCertificate(provider));
        return Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &config.ca_file {
        let ca_error = |message: String| ServiceError::CaFile { path: path.clone(), message };
        File::open(path).map_err(|e| ca_error(e.to_string()))?;
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
        for cert in certs {
            let cert = cert.map_err(|e| ca_error(format!("invalid PEM: {e}")))?;
            roots.add(cert).map_err(|e| ca_error(format!("invalid certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(ca_error("expected at least one PEM CERTIFICATE block".into()));
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `tls.insecure_skip_verify`: any certificate, but handshake signatures still checked.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Timeout used by tests that drive a `Service` directly.
#[cfg(test)]
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_millis(300);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::loki::config::RawLoki;

    fn config(extra: &str) -> LokiConfig {
        let raw: RawLoki = toml::from_str(&format!("enable = true\n{extra}")).unwrap();
        raw.validate().unwrap().unwrap()
    }

    #[test]
    fn ca_file_errors_name_the_key_and_file() {
        let dir = std::env::temp_dir().join(format!("conntrackd-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = Service::new(&config(&format!("tls.ca_file = {:?}", empty.display().to_string()))).err().unwrap();
        let text = err.to_string();
        assert!(text.starts_with("sink.loki.tls.ca_file") && text.contains("at least one PEM"), "{text}");
        // Validation does not open the file (it may appear before the sink starts); starting does.
        let missing = config(&format!("tls.ca_file = {:?}", dir.join("missing.pem").display().to_string()));
        let err = Service::new(&missing).err().unwrap().to_string();
        assert!(err.starts_with("sink.loki.tls.ca_file") && err.contains("No such file"), "{err}");
        assert!(Service::new(&config("tls.insecure_skip_verify = true")).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn transport_error_shows_no_credentials() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut c = config(&format!("address = \"http://admin:hunter2@127.0.0.1:{port}/prefix\""));
        c.timeout = TEST_TIMEOUT;
        let result = Service::new(&c).unwrap().push(b"x", Encoding::Protobuf, None);
        assert_eq!(result.outcome, Outcome::Transport);
        assert!(result.message.contains("127.0.0.1") && !result.message.contains("hunter2"), "{}", result.message);
    }
}
