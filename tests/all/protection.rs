//! Protection at rest: a store sealed under a key of the keychain stays sealed through a
//! refresh and a save, and converts back to plain JSON on request. The key is put in this
//! process's memory (`credlock::internal::remember_key_for_tests`): these run without a
//! keychain (the keychain itself is in `crates/credlock-cli/tests/all/keychain.rs`).

use std::sync::Arc;
use std::time::Duration;

use credlock::{FileProtection, FsKind, Protected, Protection, Store};
use credlock_test::{FakeServer, FakeTransport, ManualClock, ReusePolicy};

use crate::common::contains;

/// A key of 32 bytes, the AEAD's key length.
const KEY: [u8; 32] = [7; 32];

/// A store on a temp directory whose file is sealed under `key_id`, a key this process holds,
/// wired to an in-memory token server.
fn sealed_bed(key_id: &str) -> (tempfile::TempDir, Store, Arc<ManualClock>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let clock = ManualClock::starting_now();
    let server = FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .clock(clock.clone())
        .build();
    credlock::internal::remember_key_for_tests(key_id, &KEY);
    let seeded = server
        .seed_session("http://127.0.0.1:9/token")
        .expect("seed");
    let sealed = credlock::internal::seal_with_key(&KEY, key_id, &seeded.to_json()).expect("seal");
    std::fs::write(&path, sealed).expect("write");
    let store = Store::new(&path)
        .with_clock(clock.clone())
        .with_filesystem_kind(FsKind::Local)
        .with_transport(Arc::new(FakeTransport::new(server)));
    (dir, store, clock)
}

#[test]
fn a_refresh_of_a_sealed_store_writes_it_sealed_under_the_same_key_with_no_token_in_the_clear() {
    let (_dir, store, clock) = sealed_bed("refresh-test-1");
    let before = store.load().expect("load").expect("a session");
    clock.advance(Duration::from_secs(7200));
    let token = store.access_token().expect("refreshed");
    assert!(token.refreshed());
    let bytes = std::fs::read(store.path()).expect("read");
    assert!(bytes.starts_with(b"credlock-sealed/1 aes-256-gcm keyring:refresh-test-1\n"));
    let after = store.load().expect("load").expect("a session");
    assert_ne!(after.refresh_token(), before.refresh_token(), "rotated");
    for secret in [
        after.access_token().secret(),
        after.refresh_token().secret(),
    ] {
        assert!(
            !contains(&bytes, secret),
            "a token in the clear after the refresh"
        );
    }
}

#[test]
fn a_save_over_a_sealed_file_keeps_its_key_and_protect_none_converts_it_back() {
    let (_dir, store, _clock) = sealed_bed("save-test-1");
    let session = store.load().expect("load").expect("a session");
    store.save(&session).expect("save");
    assert_eq!(
        store.file_protection().expect("header"),
        Some(FileProtection::Keyring {
            key_id: "save-test-1".into(),
            scheme: "aes-256-gcm"
        })
    );
    let converted = store.protect(Protection::None).expect("protect none");
    assert!(matches!(
        converted,
        Protected::Changed {
            to: FileProtection::None,
            ..
        }
    ));
    let plain = std::fs::read(store.path()).expect("read");
    assert_eq!(plain, session.to_json(), "the same session, in plain JSON");
    assert_eq!(
        store.protect(Protection::None).expect("again"),
        Protected::Unchanged(FileProtection::None)
    );
}
