//! TLS roots and client certificates against a local HTTPS token endpoint whose certificate
//! comes from a CA made at test time (as a corporate network that intercepts TLS has): the
//! default transport refuses it, an extra CA file or `SSL_CERT_FILE` makes it trusted, and a
//! server that requires a client certificate gets one only from a configured identity.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use credlock::transport::{Roots, UreqTransport};
use credlock::{Error, Store};
use credlock_test::FakeServer;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::common::{credlock, finish, within};

const LIMIT: Duration = Duration::from_secs(60);
const BODY: &str = r#"{"access_token":"at-over-tls","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-over-tls"}"#;

/// A test CA, a server certificate for 127.0.0.1 and a client certificate it signed, written
/// as PEM files into a temp directory.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

impl Pki {
    pub(crate) fn new() -> Pki {
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

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A server configuration; with `require_client_cert`, only clients with a certificate
    /// of the test CA get through the handshake.
    pub(crate) fn server_config(&self, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
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
pub(crate) struct TlsServer {
    pub(crate) port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsServer {
    pub(crate) fn start(config: Arc<rustls::ServerConfig>) -> TlsServer {
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

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}/token", self.port)
    }

    pub(crate) fn requests(&self) -> usize {
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
pub(crate) fn expired_session_for(endpoint: &str) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
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
pub(crate) fn refresh_with(path: &Path, transport: UreqTransport) -> Result<String, Error> {
    let path = path.to_path_buf();
    within(LIMIT, move || {
        Store::new(&path)
            .with_transport(Arc::new(transport))
            .access_token()
            .map(|t| t.secret().to_owned())
    })
}

/// Failure table: connection refused, DNS, TLS (untrusted certificate, client certificate refused), timeout
#[test]
fn a_server_certificate_from_an_unknown_ca_is_refused_and_the_session_kept() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(false));
    let (_dir, path, before) = expired_session_for(&server.endpoint());

    let transport = UreqTransport::builder().build().expect("default transport");
    let e = refresh_with(&path, transport).expect_err("an untrusted certificate was accepted");
    let Error::Unavailable { reason, .. } = &e else {
        panic!("expected Unavailable, got {e:?}");
    };
    assert!(reason.starts_with("TLS failed"), "{reason}");
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    assert_eq!(
        server.requests(),
        0,
        "a request crossed an untrusted handshake"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "session touched"
    );

    // The bundled roots do not know the test CA either.
    let bundled = UreqTransport::builder()
        .roots(Roots::Bundled)
        .build()
        .expect("bundled");
    assert!(refresh_with(&path, bundled).is_err());
    assert_eq!(server.requests(), 0);
}

#[test]
fn an_extra_ca_file_makes_the_intercepting_ca_trusted() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(false));
    for roots in [Roots::Platform, Roots::Bundled, Roots::ExtraOnly] {
        let (_dir, path, _) = expired_session_for(&server.endpoint());
        let transport = UreqTransport::builder()
            .roots(roots)
            .extra_ca_file(pki.path("ca.pem"))
            .build()
            .expect("transport");
        let token = refresh_with(&path, transport).unwrap_or_else(|e| panic!("{roots:?}: {e}"));
        assert_eq!(token, "at-over-tls", "{roots:?}");
        let stored = Store::new(&path).load().expect("load").expect("session");
        assert_eq!(stored.refresh_token().secret(), "rt-over-tls", "{roots:?}");
    }
    assert_eq!(server.requests(), 3);

    // Another CA's file does not help.
    let (_dir, path, before) = expired_session_for(&server.endpoint());
    let transport = UreqTransport::builder()
        .roots(Roots::ExtraOnly)
        .extra_ca_file(pki.path("other-ca.pem"))
        .build()
        .expect("transport");
    assert!(refresh_with(&path, transport).is_err());
    assert_eq!(std::fs::read(&path).expect("read"), before);
    assert_eq!(server.requests(), 3);
}

#[test]
fn a_server_requiring_a_client_certificate_gets_one_only_from_a_configured_identity() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(true));

    let (_dir, path, before) = expired_session_for(&server.endpoint());
    let without = UreqTransport::builder()
        .extra_ca_file(pki.path("ca.pem"))
        .build()
        .expect("transport");
    let e = refresh_with(&path, without).expect_err("accepted without a client certificate");
    assert!(
        matches!(&e, Error::Unavailable { reason, .. }
            if reason.starts_with("TLS failed") && reason.contains("client certificate")),
        "{e:?}"
    );
    assert_eq!(server.requests(), 0);
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "session touched"
    );

    let with = UreqTransport::builder()
        .extra_ca_file(pki.path("ca.pem"))
        .client_identity(pki.path("client.pem"), pki.path("client-key.pem"))
        .build()
        .expect("transport");
    assert_eq!(
        refresh_with(&path, with).expect("refresh with a client certificate"),
        "at-over-tls"
    );
    assert_eq!(server.requests(), 1);
}

/// Runs the test `name` of this binary again in a child process without `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` (a shell may set them; the environment is process-global), so that the
/// default roots are the platform's own. Returns `true` inside the child: the caller then
/// runs the test's body.
fn without_ssl_cert_variables(name: &str) -> bool {
    const MARKER: &str = "CREDLOCK_TLS_WITHOUT_SSL_CERT";
    if std::env::var_os(MARKER).is_some() {
        return true;
    }
    let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(MARKER, "1")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = finish(child, LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} failed in the child:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

#[test]
fn the_platform_store_refuses_the_unknown_ca_and_takes_it_as_an_extra_root() {
    if !without_ssl_cert_variables(
        "tls::the_platform_store_refuses_the_unknown_ca_and_takes_it_as_an_extra_root",
    ) {
        return;
    }
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(false));
    let (_dir, path, before) = expired_session_for(&server.endpoint());

    let default = UreqTransport::builder().build().expect("default transport");
    let shown = format!("{default:?}");
    println!("{shown}");
    assert!(!shown.contains("SSL_CERT"), "{shown}");
    let e = refresh_with(&path, default).expect_err("an unknown CA was trusted");
    assert!(
        matches!(&e, Error::Unavailable { reason, .. } if reason.starts_with("TLS failed")),
        "{e:?}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "session touched"
    );
    assert_eq!(server.requests(), 0);

    // The platform verifier with the test CA added to the system's roots.
    let with_extra = UreqTransport::builder()
        .extra_ca_file(pki.path("ca.pem"))
        .build()
        .expect("transport");
    assert_eq!(
        refresh_with(&path, with_extra).expect("refresh with the extra root"),
        "at-over-tls"
    );
    assert_eq!(server.requests(), 1);
}

#[test]
fn the_default_transport_trusts_ssl_cert_file_instead_of_the_platform_store() {
    // The environment is process-global: each case runs the CLI (whose store uses
    // `UreqTransport::new()`) in a child process with its own environment.
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(false));
    let run = |cert_file: Option<PathBuf>| {
        let (dir, path, before) = expired_session_for(&server.endpoint());
        let mut cmd = credlock(&path, &["token"]);
        for var in [
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env_remove(var);
        }
        if let Some(file) = cert_file {
            cmd.env("SSL_CERT_FILE", file);
        }
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = finish(child, LIMIT);
        let after = std::fs::read(&path).expect("read");
        (out, after != before, dir)
    };

    let (out, changed, _dir) = run(None);
    assert!(!out.status.success(), "trusted without SSL_CERT_FILE");
    assert!(!changed, "session touched");
    assert_eq!(server.requests(), 0);

    let (out, changed, _dir) = run(Some(pki.path("other-ca.pem")));
    assert!(
        !out.status.success(),
        "trusted with another CA in SSL_CERT_FILE"
    );
    assert!(!changed);
    assert_eq!(server.requests(), 0);

    let missing = pki.path("missing.pem");
    let (out, changed, _dir) = run(Some(missing.clone()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!changed);
    assert!(
        stderr.contains(&missing.display().to_string()),
        "the error does not name SSL_CERT_FILE's file: {stderr}"
    );
    assert_eq!(server.requests(), 0);

    let (out, changed, _dir) = run(Some(pki.path("ca.pem")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("at-over-tls"), "{stdout}");
    assert!(changed, "the refreshed session was not saved");
    assert_eq!(server.requests(), 1);
}

/// `SSL_CERT_FILE` naming something that is no file of certificates (a FIFO nobody writes,
/// `/dev/zero`, `/dev/null`, an empty file) is a configuration error (exit 5), found before
/// the lock is taken: the command neither hangs nor waits for a lock another process holds,
/// and the session is untouched.
/// Failure table: `SSL_CERT_FILE` / `SSL_CERT_DIR` unusable (not a regular file, over 16 MiB, no certificate) with the store's default transport
#[cfg(unix)]
#[test]
fn an_unusable_ssl_cert_file_is_a_configuration_error_found_before_the_lock() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(false));
    let scratch = tempfile::tempdir().expect("tempdir");
    let fifo = scratch.path().join("fifo.pem");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let empty = scratch.path().join("empty.pem");
    std::fs::write(&empty, b"").expect("write");
    for file in [
        fifo.clone(),
        PathBuf::from("/dev/zero"),
        PathBuf::from("/dev/null"),
        empty,
    ] {
        let (_dir, path, before) = expired_session_for(&server.endpoint());
        // Another process holds the lock for the whole run: reading the roots under it
        // would wait the lock timeout out (exit 4).
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(crate::common::lock_path(&path))
            .expect("lock file");
        let mut holder = fd_lock::RwLock::new(lock);
        let _held = holder.try_write().expect("lock");
        let mut cmd = credlock(&path, &["--json", "token"]);
        for var in [
            "SSL_CERT_DIR",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env_remove(var);
        }
        let started = std::time::Instant::now();
        let child = cmd
            .env("SSL_CERT_FILE", &file)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = finish(child, LIMIT);
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{}: {stderr}", file.display());
        assert!(
            stderr.contains(&file.display().to_string()),
            "{}: {stderr}",
            file.display()
        );
        assert!(
            took < Duration::from_secs(8),
            "{}: took {took:?}",
            file.display()
        );
        assert_eq!(std::fs::read(&path).expect("read"), before);
    }
    assert_eq!(server.requests(), 0);
}
