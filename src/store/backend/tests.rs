use std::time::SystemTime;

use crate::basics::clock::unix_ms;
use crate::error::Error;
use crate::file::lease::LeaseRecord;
use crate::session::model::{Client, ClientAuth, Session};
use crate::session::token_response::TokenResponse;
use crate::store::Store;
use crate::store::options::LockMode;

fn session(refresh_token: &str) -> Session {
    let client = Client::new("https://as.example/t", "c", ClientAuth::None).expect("client");
    let body =
        format!(r#"{{"access_token":"a","expires_in":3600,"refresh_token":"{refresh_token}"}}"#);
    let response = TokenResponse::from_json(body.as_bytes()).expect("response");
    Session::from_token_response(client, response, SystemTime::now()).expect("session")
}

/// We were paused past the TTL: another process broke our lease, took its own and saved.
fn steal_the_lease_and_save(store_path: &std::path::Path, newer: &Session) {
    let lease = store_path.with_file_name("session.json.lease");
    std::fs::remove_file(&lease).expect("broken");
    let theirs = LeaseRecord {
        host: "another-host".into(),
        pid: 7,
        boot_id: String::new(),
        machine_id: String::new(),
        pid_ns: String::new(),
        created_ms: unix_ms(SystemTime::now()),
        ttl_ms: 60_000,
        nonce: "thief".into(),
    };
    std::fs::write(&lease, theirs.to_json()).expect("retaken");
    Store::new(store_path)
        .with_lock_mode(LockMode::Off)
        .save(newer)
        .expect("the new holder saves");
}

/// A save whose lease was lost before the write leaves the newer session another holder
/// saved meanwhile: the file backend asks the fence before it replaces the file.
///
/// Failure table: save or delete, lease lost before the write (holder paused past its TTL, another took the lease and saved)
#[test]
fn a_save_whose_lease_was_lost_does_not_overwrite_the_newer_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let store = Store::new(&path).with_lock_mode(LockMode::Lease);
    let held = store.hold().expect("held");
    let newer = session("rt-newer");
    steal_the_lease_and_save(&path, &newer);
    let ours = session("rt-ours");
    let bytes = store.encode_new(&ours).expect("encoded");
    let err = store.write_held(&held, &bytes, &ours).unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
    assert_eq!(
        store.load().expect("read"),
        Some(newer),
        "the newer session was kept"
    );
}

/// A delete whose lease was lost leaves the session another holder saved meanwhile.
#[test]
fn a_delete_whose_lease_was_lost_does_not_remove_the_newer_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let store = Store::new(&path).with_lock_mode(LockMode::Lease);
    let held = store.hold().expect("held");
    let newer = session("rt-newer");
    steal_the_lease_and_save(&path, &newer);
    let err = store.remove_held(&held).unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
    assert_eq!(
        store.load().expect("read"),
        Some(newer),
        "the newer session was kept"
    );
}
