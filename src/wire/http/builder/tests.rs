//! The builder's errors: each names the file at fault, at build time, and shows no secret.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::wire::http::{Roots, Transport, TransportBuilder, TransportError};

/// A CA certificate, a leaf it signed and the leaf's key, as PEM files in a temp directory;
/// and a second key that goes with nothing.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .expect("params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf");
        let other_key = rcgen::KeyPair::generate().expect("key");
        for (name, text) in [
            ("ca.pem", ca_cert.pem()),
            ("leaf.pem", leaf.pem()),
            ("leaf-key.pem", leaf_key.serialize_pem()),
            ("other-key.pem", other_key.serialize_pem()),
            ("notes.txt", "not a certificate\n".to_owned()),
            (
                "broken.pem",
                "-----BEGIN CERTIFICATE-----\nMIIB\n".to_owned(),
            ),
        ] {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn build(builder: &TransportBuilder) -> Result<crate::wire::http::UreqTransport, Error> {
    builder.build_with_env(&no_env)
}

fn build_in(
    builder: &TransportBuilder,
    vars: &[(&str, &Path)],
) -> Result<crate::wire::http::UreqTransport, Error> {
    let env: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_os_str().to_owned()))
        .collect();
    builder.build_with_env(&|name| env.get(name).cloned())
}

/// The error's path and reason, failing the test for any other error.
fn setup_error(
    result: Result<crate::wire::http::UreqTransport, Error>,
) -> (Option<PathBuf>, String) {
    match result {
        Err(Error::TransportSetup { path, reason }) => (path, reason),
        Err(other) => panic!("expected TransportSetup, got {other:?}"),
        Ok(t) => panic!("expected an error, got {t:?}"),
    }
}

/// Failure table: transport files unusable: extra CA file, client certificate or key, no root, bad explicit proxy
#[test]
fn a_missing_extra_ca_file_is_an_error_naming_it() {
    let files = Files::new();
    let missing = files.path("nope.pem");
    let (path, reason) = setup_error(build(&TransportBuilder::new().extra_ca_file(&missing)));
    assert_eq!(path.as_deref(), Some(missing.as_path()));
    assert!(reason.contains("cannot be read"), "{reason}");
    let e = build(&TransportBuilder::new().extra_ca_file(&missing)).expect_err("error");
    assert!(e.to_string().contains("nope.pem"), "{e}");
    assert!(e.is_configuration() && !e.is_transient(), "{e}");
    assert_eq!(e.kind(), "transport_setup");
}

#[test]
fn a_file_without_a_certificate_is_an_error_naming_it() {
    let files = Files::new();
    for name in ["notes.txt", "leaf-key.pem"] {
        let (path, reason) = setup_error(build(
            &TransportBuilder::new().extra_ca_file(files.path(name)),
        ));
        assert_eq!(path, Some(files.path(name)));
        assert!(reason.contains("no PEM certificate"), "{name}: {reason}");
    }
    let (path, reason) = setup_error(build(
        &TransportBuilder::new().extra_ca_file(files.path("broken.pem")),
    ));
    assert_eq!(path, Some(files.path("broken.pem")));
    assert!(reason.contains("not valid PEM"), "{reason}");
}

#[test]
fn a_key_without_its_certificate_is_an_error_naming_the_file_at_fault() {
    let files = Files::new();
    // The "chain" holds only a key.
    let (path, reason) = setup_error(build(
        &TransportBuilder::new()
            .client_identity(files.path("leaf-key.pem"), files.path("leaf-key.pem")),
    ));
    assert_eq!(path, Some(files.path("leaf-key.pem")));
    assert!(reason.contains("no PEM certificate"), "{reason}");
    // The "key" holds only a certificate.
    let (path, reason) = setup_error(build(
        &TransportBuilder::new().client_identity(files.path("leaf.pem"), files.path("leaf.pem")),
    ));
    assert_eq!(path, Some(files.path("leaf.pem")));
    assert!(reason.contains("no usable PEM private key"), "{reason}");
    // A missing key file.
    let (path, _) = setup_error(build(
        &TransportBuilder::new().client_identity(files.path("leaf.pem"), files.path("gone.pem")),
    ));
    assert_eq!(path, Some(files.path("gone.pem")));
    // A key that belongs to another certificate.
    let (path, reason) = setup_error(build(
        &TransportBuilder::new()
            .client_identity(files.path("leaf.pem"), files.path("other-key.pem")),
    ));
    assert_eq!(path, Some(files.path("other-key.pem")));
    assert!(reason.contains("does not go with"), "{reason}");
    // The pair that matches builds.
    build(
        &TransportBuilder::new()
            .client_identity(files.path("leaf.pem"), files.path("leaf-key.pem")),
    )
    .expect("a matching identity");
}

#[test]
fn extra_only_roots_need_an_extra_ca_file() {
    let (path, reason) = setup_error(build(&TransportBuilder::new().roots(Roots::ExtraOnly)));
    assert_eq!(path, None);
    assert!(reason.contains("extra_ca_file"), "{reason}");
    let files = Files::new();
    let t = build(
        &TransportBuilder::new()
            .roots(Roots::ExtraOnly)
            .extra_ca_file(files.path("ca.pem")),
    )
    .expect("roots");
    assert!(format!("{t:?}").contains("extra CA files only"), "{t:?}");
}

#[test]
fn ssl_cert_file_and_dir_replace_the_platform_roots_and_must_be_usable() {
    let files = Files::new();
    let t = build_in(
        &TransportBuilder::new(),
        &[("SSL_CERT_FILE", &files.path("ca.pem"))],
    )
    .expect("SSL_CERT_FILE");
    let shown = format!("{t:?}");
    assert!(
        shown.contains("SSL_CERT_FILE=") && shown.contains("instead of"),
        "{shown}"
    );
    // Only the platform choice reads them.
    let t = build_in(
        &TransportBuilder::new().roots(Roots::Bundled),
        &[("SSL_CERT_FILE", &files.path("nope.pem"))],
    )
    .expect("bundled ignores SSL_CERT_FILE");
    assert!(format!("{t:?}").contains("bundled webpki roots"), "{t:?}");
    // An empty file name is an error (OpenSSL finds no certificate in it); empty directory
    // entries are skipped.
    let (path, reason) = setup_error(build_in(
        &TransportBuilder::new(),
        &[("SSL_CERT_FILE", Path::new(""))],
    ));
    assert_eq!(path, None);
    assert!(
        reason.contains("SSL_CERT_FILE is set but empty"),
        "{reason}"
    );
    let t = build_in(&TransportBuilder::new(), &[("SSL_CERT_DIR", Path::new(""))]).expect("empty");
    assert!(!format!("{t:?}").contains("SSL_CERT_DIR"), "{t:?}");

    let missing = files.path("nope.pem");
    let (path, _) = setup_error(build_in(
        &TransportBuilder::new(),
        &[("SSL_CERT_FILE", &missing)],
    ));
    assert_eq!(path, Some(missing));
    let (path, reason) = setup_error(build_in(
        &TransportBuilder::new(),
        &[("SSL_CERT_FILE", &files.path("notes.txt"))],
    ));
    assert_eq!(path, Some(files.path("notes.txt")));
    assert!(reason.contains("no PEM certificate"), "{reason}");

    // A directory: files without certificates are skipped, but one must hold a certificate.
    let t = build_in(
        &TransportBuilder::new(),
        &[("SSL_CERT_DIR", files.dir.path())],
    )
    .expect("SSL_CERT_DIR");
    assert!(format!("{t:?}").contains("SSL_CERT_DIR"), "{t:?}");
    let empty = tempfile::tempdir().expect("tempdir");
    std::fs::write(empty.path().join("README"), "no certificates here").expect("write");
    let (path, reason) = setup_error(build_in(
        &TransportBuilder::new(),
        &[("SSL_CERT_DIR", empty.path())],
    ));
    assert_eq!(path.as_deref(), Some(empty.path()));
    assert!(
        reason.contains("no file in it holds a PEM certificate"),
        "{reason}"
    );
}

#[test]
fn without_ssl_cert_variables_the_platform_store_or_the_bundled_roots_are_used() {
    let t = build(&TransportBuilder::new()).expect("default");
    let shown = format!("{t:?}");
    assert!(
        shown.contains("the platform's trust store") || shown.contains("bundled webpki roots"),
        "{shown}"
    );
}

/// Failure table: `SSL_CERT_FILE` / `SSL_CERT_DIR` unusable (not a regular file, over 16 MiB, no certificate) with the store's default transport
#[test]
fn the_default_transport_reads_roots_at_the_first_https_request_and_refuses_if_unusable() {
    let env: crate::wire::http::tls_connector::Env = Box::new(|name| {
        (name == "SSL_CERT_FILE").then(|| OsString::from("/nonexistent/credlock-ca.pem"))
    });
    let t = crate::wire::http::UreqTransport::lazy(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(5),
        env,
    );
    // Plain http to loopback never reads the roots: the refused connection is the error.
    let refused = t.get("http://127.0.0.1:9/");
    assert!(
        matches!(refused, Err(TransportError::Connect(_))),
        "{refused:?}"
    );
    assert!(format!("{t:?}").contains("not read yet"), "{t:?}");
    // The first https request reads them, and refuses without connecting.
    match t.get("https://127.0.0.1:9/") {
        Err(TransportError::Other(why)) => {
            assert!(
                why.contains("credlock-ca.pem") && why.contains("nothing was sent"),
                "{why}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(format!("{t:?}").contains("credlock-ca.pem"), "{t:?}");
}

#[test]
fn explicit_proxies_are_http_only_and_their_passwords_never_shown() {
    for url in [
        "socks5://user:hunter2@proxy.example:1080",
        "https://user:hunter2@proxy.example:443",
        "user:hunter2@",
    ] {
        let builder = TransportBuilder::new().proxy(url).no_proxy("corp.example");
        assert!(!format!("{builder:?}").contains("hunter2"), "{builder:?}");
        let e = build(&builder).expect_err(url);
        assert!(
            matches!(e, Error::TransportSetup { path: None, .. }),
            "{e:?}"
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
    }
    let t = build(
        &TransportBuilder::new()
            .proxy("http://user:hunter2@proxy.example:3128")
            .no_proxy("corp.example"),
    )
    .expect("http proxy");
    let shown = format!("{t:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("https_proxy: true"), "{shown}");
    let agents = &t.agents;
    assert!(agents.no_proxy.matches("api.corp.example"));
    assert!(!agents.no_proxy.matches("example.com"));
}

#[test]
fn no_proxy_at_all_ignores_the_environment() {
    let proxy = Path::new("http://proxy.example:3128");
    let t = build_in(
        &TransportBuilder::new().no_proxy_at_all(),
        &[("HTTPS_PROXY", proxy)],
    )
    .expect("transport");
    assert!(format!("{t:?}").contains("https_proxy: false"), "{t:?}");
    let t = build_in(&TransportBuilder::new(), &[("HTTPS_PROXY", proxy)]).expect("transport");
    assert!(format!("{t:?}").contains("https_proxy: true"), "{t:?}");
}

#[test]
fn a_proxy_password_with_a_question_mark_or_hash_is_never_shown() {
    for url in [
        "http://user:hun?ter2@proxy.example:3128",
        "http://user:hun#ter2@proxy.example:3128",
        "socks5://user:hun?ter2@proxy.example:1080",
        "http://user:hun#ter2@proxy.example:bad port",
    ] {
        let builder = TransportBuilder::new().proxy(url);
        let shown = format!("{builder:?}");
        assert!(!shown.contains("ter2"), "{shown}");
        if let Err(e) = build(&builder) {
            assert!(!e.to_string().contains("ter2"), "{e}");
            assert!(!format!("{e:?}").contains("ter2"), "{e:?}");
        }
    }
}

#[test]
fn an_extra_ca_unusable_as_a_root_is_an_error_naming_it_whatever_the_roots() {
    let files = Files::new();
    let bad = files.path("not-a-cert.pem");
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    for roots in [Roots::Platform, Roots::Bundled, Roots::ExtraOnly] {
        let (path, reason) = setup_error(build(
            &TransportBuilder::new()
                .roots(roots)
                .extra_ca_file(files.path("ca.pem"))
                .extra_ca_file(&bad),
        ));
        assert_eq!(path.as_deref(), Some(bad.as_path()), "{roots:?}: {reason}");
    }
}

#[test]
fn a_default_transport_reads_its_roots_again_after_a_failure() {
    let files = Files::new();
    let late = files.path("late-ca.pem");
    let late_env = OsString::from(late.as_os_str());
    let env: crate::wire::http::tls_connector::Env =
        Box::new(move |name| (name == "SSL_CERT_FILE").then(|| late_env.clone()));
    let t = crate::wire::http::UreqTransport::lazy(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(5),
        env,
    );
    let first = t.get("https://127.0.0.1:9/");
    assert!(matches!(first, Err(TransportError::Other(_))), "{first:?}");
    // The bundle appears (a package update rewrote it meanwhile): a long-lived process must
    // not refuse every https request until it restarts.
    std::fs::copy(files.path("ca.pem"), &late).expect("copy");
    let second = t.get("https://127.0.0.1:9/");
    assert!(
        matches!(second, Err(TransportError::Connect(_))),
        "{second:?}"
    );
    assert!(format!("{t:?}").contains("late-ca.pem"), "{t:?}");
}

#[test]
fn no_proxy_applies_whether_set_before_or_after_the_proxy() {
    let t = build(
        &TransportBuilder::new()
            .no_proxy("corp.example")
            .proxy("http://proxy.example:3128"),
    )
    .expect("http proxy");
    assert!(t.agents.no_proxy.matches("api.corp.example"));
}
