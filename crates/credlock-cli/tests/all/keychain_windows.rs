//! Sealed session files with the key in Windows' Credential Manager (under Wine in
//! `.ci/windows`, whose Credential Manager keeps credentials in its registry).

use std::process::Stdio;
use std::time::Duration;

use credlock::Store;
use credlock_test::FakeServer;

use crate::common::{credlock, finish};

fn run(mut cmd: std::process::Command) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn credlock");
    finish(child, Duration::from_secs(120))
}

#[test]
fn protect_keyring_seals_the_file_with_a_key_in_credential_manager_and_protect_none_undoes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let fake = FakeServer::builder().build();
    let session = fake.seed_session("http://127.0.0.1:9/token").expect("seed");
    Store::new(&path).save(&session).expect("save");
    let plain = std::fs::read(&path).expect("read");

    let out = run(credlock(&path, &["protect", "keyring", "--json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed = std::fs::read(&path).expect("read");
    assert!(sealed.starts_with(b"credlock-sealed/1 aes-256-gcm keyring:"));
    for token in [
        session.access_token().secret(),
        session.refresh_token().secret(),
    ] {
        assert!(
            !sealed.windows(token.len()).any(|w| w == token.as_bytes()),
            "a token in the clear"
        );
    }
    // Another process: the key comes from Credential Manager, not from memory.
    let out = run(credlock(&path, &["token"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        session.access_token().secret()
    );
    let out = run(credlock(&path, &["status", "--json"]));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        status["protection"]
            .as_str()
            .is_some_and(|p| p.starts_with("keyring")),
        "{status}"
    );

    let out = run(credlock(&path, &["protect", "none"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        plain,
        "the same session, plain"
    );
}
