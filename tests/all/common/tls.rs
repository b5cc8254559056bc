//! A local HTTPS token endpoint whose certificate comes from a CA made at test time (as a
//! corporate network that intercepts TLS has), for the TLS and proxy tests of both suites.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use credlock::transport::UreqTransport;
use credlock::{Error, Store};
use credlock_test::FakeServer;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::within;

pub const LIMIT: Duration = Duration::from_secs(60);
const BODY: &str = r#"{"access_token":"at-over-tls","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-over-tls"}"#;

/// A test CA, a server certificate for 127.0.0.1 and a client certificate it signed, written
/// as PEM files into a temp directory.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

impl Pki {
    pub fn new() -> Pki {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "credlock test interception CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |name: &str, purpose: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("key");
            let mut params =
                CertificateParams::new(vec!["localhost".to_owned(), "token.test".to_owned()])
                    .expect("params");
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![purpose];
            let cert = params.signed_by(&key, &issuer).expect("sign");
            (cert, key)
        };
        let (server_cert, server_key) = leaf("127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) =
            leaf("credlock client", ExtendedKeyUsagePurpose::ClientAuth);

        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text);
        write("ca.pem", ca_cert.pem()).expect("write");
        write("client.pem", client_cert.pem()).expect("write");
        write("client-key.pem", client_key.serialize_pem()).expect("write");
        // Another CA, trusted by nobody here.
        let other_key = KeyPair::generate().expect("key");
        let mut other = CertificateParams::new(Vec::<String>::new()).expect("params");
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        write(
            "other-ca.pem",
            other.self_signed(&other_key).expect("cert").pem(),
        )
        .expect("write");
        Pki {
            ca: ca_cert.der().clone(),
            server_chain: vec![server_cert.der().clone()],
            server_key: PrivateKeyDer::from_pem_slice(server_key.serialize_pem().as_bytes())
                .expect("server key"),
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A server configuration; with `require_client_cert`, only clients with a certificate
    /// of the test CA get through the handshake.
    pub fn server_config(&self, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca.clone()).expect("root");
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(
            builder
                .with_single_cert(self.server_chain.clone(), self.server_key.clone_key())
                .expect("server cert"),
        )
    }
}

/// An HTTPS token endpoint on 127.0.0.1 that answers each POST with a fixed token response
/// and counts the requests it read (a failed handshake reads none). Stopped when dropped.
pub struct TlsServer {
    pub port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsServer {
    pub fn start(config: Arc<rustls::ServerConfig>) -> TlsServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (Arc::clone(&requests), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let Ok(mut spare) = tcp.try_clone() else {
                    continue;
                };
                if answer(tcp, Arc::clone(&config)).is_ok() {
                    count.fetch_add(1, Ordering::SeqCst);
                } else {
                    // A lingering close, as servers do: the alert already written is read
                    // by the client instead of being lost to a reset.
                    let _ = spare.shutdown(std::net::Shutdown::Write);
                    let _ = spare.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = std::io::copy(&mut spare, &mut std::io::sink());
                }
            }
        });
        TlsServer {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}/token", self.port)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes `accept`
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One exchange: the handshake, one request (headers and `Content-Length` body), the answer.
fn answer(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let header_end = loop {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..header_end]).to_ascii_lowercase();
    assert!(head.starts_with("post /token "), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < header_end + length {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&request[header_end..]);
    assert!(body.contains("grant_type=refresh_token"), "{body}");
    write!(
        tls,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    )?;
    tls.flush()?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// A session with an expired access token for `endpoint`, saved in a temp directory.
pub fn expired_session_for(endpoint: &str) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let fake = FakeServer::builder().build();
    let session = fake
        .seed_session(endpoint)
        .expect("seed")
        .with_expires_at(SystemTime::now() - Duration::from_secs(60));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    Store::new(&path).save(&session).expect("save");
    let bytes = std::fs::read(&path).expect("read");
    (dir, path, bytes)
}

/// Refreshes through `transport` on a thread with a hard time limit.
pub fn refresh_with(path: &Path, transport: UreqTransport) -> Result<String, Error> {
    let path = path.to_path_buf();
    within(LIMIT, move || {
        Store::new(&path)
            .with_transport(Arc::new(transport))
            .access_token()
            .map(|t| t.secret().to_owned())
    })
}
