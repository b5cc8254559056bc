//! After invalid_grant: adopt a sibling's session, refresh once with a newer stale one, and
//! delete only the very session whose refresh token failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use credlock::Clock as _;
use credlock::{Error, LockMode, Store, SystemClock};
use credlock_test::{FakeServer, FakeTransport, ReusePolicy};

use crate::common::{Bed, TOKEN_ENDPOINT, tokens_from_threads, within};

/// A store for "a process on another machine": same file, its lock invisible to ours.
fn sibling(bed: &Bed) -> Store {
    bed.store().with_lock_mode(LockMode::Off)
}

#[test]
fn a_sibling_that_refreshed_during_our_request_is_adopted_and_kept() {
    let bed = Arc::new(Bed::new(ReusePolicy::RejectOnly));
    bed.seed_expired();
    let once = AtomicBool::new(false);
    let sibling_token = Arc::new(std::sync::Mutex::new(String::new()));
    {
        let (bed2, sibling_token) = (Arc::clone(&bed), Arc::clone(&sibling_token));
        bed.server.on_refresh(move |_| {
            if !once.swap(true, Ordering::SeqCst) {
                // 5 ms into our refresh, the sibling's own refresh wins the race and saves.
                let t = sibling(&bed2).access_token().expect("sibling refreshes");
                *sibling_token.lock().expect("lock") = t.secret().to_owned();
            }
        });
    }
    let token = bed
        .store()
        .access_token()
        .expect("adopts the sibling's session");
    let sibling_token = sibling_token.lock().expect("lock").clone();
    assert_eq!(token.secret(), sibling_token);
    assert!(!token.refreshed());
    let stored = bed.stored().expect("kept");
    assert_eq!(stored.access_token().secret(), sibling_token);
    assert!(bed.server.is_live(stored.refresh_token().secret()));
    assert_eq!(bed.server.counters().invalid_grant, 1);
}

/// Failure table: `invalid_grant`, nothing newer, store still holds the failed token
#[test]
fn invalid_grant_with_no_sibling_deletes_the_dead_session_and_asks_for_a_login() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let session = bed.seed_expired();
    bed.server.revoke_grant_of(session.refresh_token().secret());
    let err = bed.store().access_token().unwrap_err();
    assert!(
        matches!(err, Error::SessionExpired { deleted: true, .. }),
        "{err:?}"
    );
    assert!(err.needs_login());
    assert!(bed.stored().is_none());
    assert!(!bed.path.exists());
}

/// Failure table: `invalid_grant`, a sibling saved a fresh session
#[test]
fn a_sibling_that_saves_during_the_polling_window_is_adopted() {
    let bed = Arc::new(Bed::new(ReusePolicy::RevokeGrant));
    let dead = bed.seed_expired();
    bed.server.revoke_grant_of(dead.refresh_token().secret());
    let newer = bed.server.seed_session(TOKEN_ENDPOINT).expect("login");
    let sleeps = AtomicUsize::new(0);
    {
        let (bed2, newer) = (Arc::clone(&bed), newer.clone());
        bed.clock.on_sleep(move |_| {
            // The third re-read (after 50 ms) is the first to see the sibling's login.
            if sleeps.fetch_add(1, Ordering::SeqCst) == 2 {
                sibling(&bed2).save(&newer).expect("sibling saves");
            }
        });
    }
    let token = bed.store().access_token().expect("adopted");
    assert_eq!(token.secret(), newer.access_token().secret());
    assert_eq!(bed.stored().expect("kept"), newer);
}

#[test]
fn compare_and_delete_adopts_a_session_saved_just_before_the_delete() {
    let bed = Arc::new(Bed::new(ReusePolicy::RevokeGrant));
    let dead = bed.seed_expired();
    bed.server.revoke_grant_of(dead.refresh_token().secret());
    let newer = bed.server.seed_session(TOKEN_ENDPOINT).expect("login");
    {
        let (bed2, newer) = (Arc::clone(&bed), newer.clone());
        bed.server
            .on_refresh(move |_| sibling(&bed2).save(&newer).expect("sibling saves"));
    }
    // No polling at all: the only protection left is the compare before the delete.
    let token = bed
        .store()
        .with_poll_schedule(vec![])
        .access_token()
        .expect("adopted");
    assert_eq!(token.secret(), newer.access_token().secret());
    assert_eq!(bed.stored().expect("kept"), newer);
}

/// Failure table: `invalid_grant`, a sibling saved a stale session
#[test]
fn a_newer_but_stale_session_is_refreshed_once() {
    let bed = Arc::new(Bed::new(ReusePolicy::RejectOnly));
    let dead = bed.seed_expired();
    bed.server.revoke_grant_of(dead.refresh_token().secret());
    let newer = bed.server.seed_session(TOKEN_ENDPOINT).expect("login");
    let newer_stale = newer.clone().with_expires_at(bed.clock.now());
    {
        let (bed2, once) = (Arc::clone(&bed), AtomicBool::new(false));
        bed.server.on_refresh(move |_| {
            if !once.swap(true, Ordering::SeqCst) {
                sibling(&bed2).save(&newer_stale).expect("sibling saves");
            }
        });
    }
    let token = bed
        .store()
        .access_token()
        .expect("refreshed with the newer token");
    assert!(token.refreshed());
    assert_eq!(bed.server.counters().refresh_requests, 2);
    assert!(
        bed.server
            .is_live(bed.stored().expect("stored").refresh_token().secret())
    );
}

#[test]
fn a_newer_session_that_also_fails_is_not_retried_again() {
    let bed = Arc::new(Bed::new(ReusePolicy::RejectOnly));
    let dead = bed.seed_expired();
    bed.server.revoke_grant_of(dead.refresh_token().secret());
    let also_dead = bed
        .server
        .seed_session(TOKEN_ENDPOINT)
        .expect("login")
        .with_expires_at(bed.clock.now());
    bed.server
        .revoke_grant_of(also_dead.refresh_token().secret());
    {
        let (bed2, once) = (Arc::clone(&bed), AtomicBool::new(false));
        bed.server.on_refresh(move |_| {
            if !once.swap(true, Ordering::SeqCst) {
                sibling(&bed2).save(&also_dead).expect("sibling saves");
            }
        });
    }
    let err = bed.store().access_token().unwrap_err();
    assert!(
        matches!(err, Error::SessionExpired { deleted: true, .. }),
        "{err:?}"
    );
    assert_eq!(
        bed.server.counters().refresh_requests,
        2,
        "one retry, never recursion"
    );
    assert!(bed.stored().is_none());
}

#[test]
fn a_late_winner_saving_after_the_polling_window_survives() {
    // Two machines (locks off), real time. The winner's refresh is done on the server, but its
    // answer arrives late: it saves 300 ms after the loser's invalid_grant.
    let server = FakeServer::builder()
        .policy(ReusePolicy::RejectOnly)
        .build();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let store = |mode| {
        Store::new(&path)
            .with_clock(Arc::new(SystemClock))
            .with_lock_mode(mode)
            .with_transport(Arc::new(FakeTransport::new(server.clone())))
    };
    let seeded = server
        .seed_session(TOKEN_ENDPOINT)
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    store(LockMode::Auto).save(&seeded).expect("save");
    let winner = seeded.refreshed(
        {
            // The winner's request reaches the server first and rotates the token.
            let form = credlock::transport::FormRequest::refresh(&seeded);
            let fields: Vec<(String, String)> = form
                .form
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.secret().to_owned()))
                .collect();
            let r = server.handle_token(&fields, None);
            assert_eq!(r.status, 200);
            credlock::TokenResponse::from_json(&r.body).expect("token")
        },
        std::time::SystemTime::now(),
    );
    let late_save = {
        let (winner, path) = (winner.clone(), path.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            Store::new(&path).save(&winner).expect("late save");
        })
    };
    let loser = within(Duration::from_secs(20), {
        let loser = store(LockMode::Off);
        move || loser.access_token().map(|t| t.secret().to_owned())
    });
    late_save.join().expect("join");
    assert!(
        matches!(loser, Err(Error::SessionExpired { .. })),
        "{loser:?}"
    );
    let stored = store(LockMode::Auto)
        .load()
        .expect("load")
        .expect("the winner's session survives");
    assert_eq!(stored, winner);
    assert!(server.is_live(stored.refresh_token().secret()));
}

#[test]
fn with_locks_off_and_a_rejecting_server_every_thread_adopts_the_winner() {
    let server = FakeServer::builder()
        .policy(ReusePolicy::RejectOnly)
        .latency(Duration::from_millis(20))
        .build();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let seeded = server
        .seed_session(TOKEN_ENDPOINT)
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    Store::new(&path).save(&seeded).expect("save");
    let tokens = {
        let (server, path) = (server.clone(), path.clone());
        tokens_from_threads(8, move || {
            Store::new(&path)
                .with_lock_mode(LockMode::Off)
                .with_transport(Arc::new(FakeTransport::new(server.clone())))
        })
    };
    let ok: Vec<&String> = tokens
        .iter()
        .map(|t| t.as_ref().expect("every thread gets a token"))
        .collect();
    assert!(ok.iter().all(|t| *t == ok[0]), "one token for all: {ok:?}");
    let stored = Store::new(&path)
        .load()
        .expect("load")
        .expect("nothing deleted");
    assert_eq!(stored.access_token().secret(), ok[0].as_str());
    assert!(server.is_live(stored.refresh_token().secret()));
    assert_eq!(server.counters().refreshes_ok, 1);
}

/// A server that refuses refresh tokens with an empty-bodied 400 (Glewlwyd 2.7).
fn silent_server(policy: ReusePolicy) -> Arc<FakeServer> {
    FakeServer::builder()
        .policy(policy)
        .silent_refusals()
        .build()
}

/// Failure table: HTTP 400 with an empty (or whitespace-only) body (Glewlwyd)
#[test]
fn an_empty_bodied_400_deletes_the_dead_session_and_says_the_server_gave_no_reason() {
    let server = silent_server(ReusePolicy::RevokeGrant);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let store = Store::new(&path).with_transport(Arc::new(FakeTransport::new(server.clone())));
    let seeded = server
        .seed_session(TOKEN_ENDPOINT)
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    store.save(&seeded).expect("save");
    server.revoke_grant_of(seeded.refresh_token().secret());
    let err = store.access_token().unwrap_err();
    assert!(
        matches!(err, Error::SessionExpired { deleted: true, .. }),
        "{err:?}"
    );
    assert!(err.needs_login());
    assert!(err.to_string().contains("gave no reason"), "{err}");
    assert!(!path.exists());
    // The next call asks for a login without spending a request.
    let before = server.counters().refresh_requests;
    assert!(matches!(store.access_token(), Err(Error::NoSession { .. })));
    assert_eq!(server.counters().refresh_requests, before);
}

#[test]
fn with_locks_off_and_a_server_refusing_with_empty_bodies_every_thread_adopts_the_winner() {
    let server = FakeServer::builder()
        .policy(ReusePolicy::RejectOnly)
        .silent_refusals()
        .latency(Duration::from_millis(20))
        .build();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let seeded = server
        .seed_session(TOKEN_ENDPOINT)
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    Store::new(&path).save(&seeded).expect("save");
    let tokens = {
        let (server, path) = (server.clone(), path.clone());
        tokens_from_threads(8, move || {
            Store::new(&path)
                .with_lock_mode(LockMode::Off)
                .with_transport(Arc::new(FakeTransport::new(server.clone())))
        })
    };
    let ok: Vec<&String> = tokens
        .iter()
        .map(|t| t.as_ref().expect("every thread gets a token"))
        .collect();
    assert!(ok.iter().all(|t| *t == ok[0]), "one token for all: {ok:?}");
    let stored = Store::new(&path)
        .load()
        .expect("load")
        .expect("nothing deleted");
    assert!(server.is_live(stored.refresh_token().secret()));
    assert_eq!(server.counters().refreshes_ok, 1);
}

#[test]
fn a_sibling_that_refreshed_during_our_request_is_adopted_after_an_empty_bodied_400() {
    let server = silent_server(ReusePolicy::RejectOnly);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let store = |mode| {
        Store::new(&path)
            .with_lock_mode(mode)
            .with_transport(Arc::new(FakeTransport::new(server.clone())))
    };
    let seeded = server
        .seed_session(TOKEN_ENDPOINT)
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    store(LockMode::Auto).save(&seeded).expect("save");
    let once = AtomicBool::new(false);
    let sibling_token = Arc::new(std::sync::Mutex::new(String::new()));
    {
        let (sibling, sibling_token) = (store(LockMode::Off), Arc::clone(&sibling_token));
        server.on_refresh(move |_| {
            if !once.swap(true, Ordering::SeqCst) {
                let t = sibling.access_token().expect("sibling refreshes");
                *sibling_token.lock().expect("lock") = t.secret().to_owned();
            }
        });
    }
    let token = store(LockMode::Auto)
        .access_token()
        .expect("adopts the sibling's session");
    assert_eq!(token.secret(), *sibling_token.lock().expect("lock"));
    let stored = store(LockMode::Auto).load().expect("load").expect("kept");
    assert!(server.is_live(stored.refresh_token().secret()));
}
