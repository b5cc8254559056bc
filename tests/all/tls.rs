//! TLS roots and client certificates against a local HTTPS token endpoint whose certificate
//! comes from a CA made at test time (as a corporate network that intercepts TLS has): the
//! default transport refuses it, an extra CA file makes it trusted, and a server that requires
//! a client certificate gets one only from a configured identity. (`SSL_CERT_FILE`, read by
//! the `credlock` binary, is in `crates/credlock-cli/tests/all/tls.rs`.)

use credlock::transport::{Roots, UreqTransport};
use credlock::{Error, Store};

use crate::common::finish;
use crate::common::tls::{LIMIT, Pki, TlsServer, expired_session_for, refresh_with};
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
