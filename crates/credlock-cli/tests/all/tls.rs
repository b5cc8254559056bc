//! TLS roots as the `credlock` binary reads them: `SSL_CERT_FILE` makes a CA made at test time
//! trusted instead of the platform's store, and an unusable one is a configuration error. (The
//! transport's roots and client certificates are in the library's `tests/all/tls.rs`.)

use std::path::PathBuf;
use std::time::Duration;

use crate::common::tls::{LIMIT, Pki, TlsServer, expired_session_for};
use crate::common::{credlock, finish};

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
