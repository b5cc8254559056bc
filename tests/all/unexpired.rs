//! A valid token is still a valid token: when a refresh fails for a reason that may pass, an
//! access token that is only inside the refresh margin (not expired) is handed out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use credlock::{Error, Event, TransportError};
use credlock_test::{Failure, ReusePolicy};

use crate::common::Bed;

/// A bed whose session expires in 10 s: inside the 30 s margin, so a refresh is due.
fn bed_inside_the_margin() -> Bed {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed();
    bed.clock.advance(Duration::from_secs(3600 - 10));
    bed
}

/// Failure table: transient failure (`Unavailable`, `LockTimeout`) while the stored access token has not expired (inside the margin, or short of `access_token_valid_for`'s minimum)
#[test]
fn a_transient_failure_inside_the_margin_hands_out_the_unexpired_token_and_says_so() {
    for failure in [
        Failure::Status {
            status: 503,
            body: String::new(),
            retry_after: None,
        },
        Failure::Status {
            status: 429,
            body: String::new(),
            retry_after: None,
        },
        Failure::Transport(TransportError::Connect("connection refused".into())),
    ] {
        let bed = bed_inside_the_margin();
        let stored = bed.stored().expect("session");
        let before = bed.bytes();
        bed.server.push_failure(failure.clone());
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let store = bed
            .store()
            .on_event(move |e| seen.lock().expect("events").push(e.clone()));
        let token = store
            .access_token()
            .unwrap_or_else(|e| panic!("{failure:?}: {e}"));
        assert_eq!(token.secret(), stored.access_token().secret());
        assert!(!token.refreshed());
        assert_eq!(bed.bytes(), before, "nothing written");
        assert_eq!(bed.server.counters().refresh_requests, 1, "it did try");
        let events = events.lock().expect("events");
        let warning = events
            .iter()
            .find(|e| matches!(e, Event::UsingUnexpiredToken { .. }))
            .unwrap_or_else(|| panic!("no UsingUnexpiredToken event in {events:?}"));
        assert!(warning.to_string().contains("has not expired"), "{warning}");
    }
}

#[test]
fn a_transient_failure_after_expiry_is_still_an_error() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    bed.server.push_failure(Failure::Status {
        status: 503,
        body: String::new(),
        retry_after: None,
    });
    let err = bed.store().access_token().unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}

/// Failure table: transient failure (`Unavailable`, `LockTimeout`) while the stored access token has not expired (inside the margin, or short of `access_token_valid_for`'s minimum)
#[test]
fn a_lock_timeout_inside_the_margin_hands_out_the_unexpired_token() {
    // A slow refresh in another thread holds the lock past this store's timeout.
    let bed = Bed::with_latency(ReusePolicy::RevokeGrant, Duration::from_millis(1500));
    bed.seed();
    bed.clock.advance(Duration::from_secs(3600 - 10));
    let stored = bed.stored().expect("session");
    let slow = {
        let store = bed.store();
        std::thread::spawn(move || store.access_token())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bed.server.counters().refresh_requests == 0 {
        assert!(std::time::Instant::now() < deadline, "no refresh started");
        std::thread::sleep(Duration::from_millis(2));
    }
    let token = bed
        .store()
        .with_lock_timeout(Duration::from_millis(200))
        .access_token()
        .expect("the unexpired token");
    assert_eq!(token.secret(), stored.access_token().secret());
    assert!(slow.join().expect("thread").expect("refresh").refreshed());
}

#[test]
fn a_session_deleted_meanwhile_is_not_resurrected_by_the_unexpired_rule() {
    let bed = bed_inside_the_margin();
    let store = bed.store();
    let path = bed.path.clone();
    // The refresh fails, and by then the user has logged out.
    bed.server.on_refresh(move |_| {
        let _ = std::fs::remove_file(&path);
    });
    bed.server.push_failure(Failure::Status {
        status: 503,
        body: String::new(),
        retry_after: None,
    });
    let err = store.access_token().unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

/// The promise holds for a minimum validity too (`Store::access_token_valid_for`, behind
/// `credlock token --min-valid`): the refresh it forces is one per expiry, and when it fails
/// for a reason that may pass, the stored token, which has not expired, is handed out.
#[test]
fn a_refresh_wanted_for_a_minimum_validity_keeps_the_unexpired_token_promise() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed();
    // 900 s left of 3600: short of the 1200 s asked for, well outside the 30 s margin.
    bed.clock.advance(Duration::from_secs(2700));
    let stored = bed.stored().expect("session");
    let before = bed.bytes();
    bed.server.push_failure(Failure::Status {
        status: 503,
        body: String::new(),
        retry_after: None,
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let store = bed
        .store()
        .on_event(move |e| seen.lock().expect("events").push(e.clone()));
    let want = Duration::from_secs(1200);
    let token = store
        .access_token_valid_for(want)
        .expect("the unexpired token");
    assert_eq!(token.secret(), stored.access_token().secret());
    assert!(!token.refreshed());
    assert_eq!(bed.bytes(), before, "nothing written");
    assert!(
        events
            .lock()
            .expect("events")
            .iter()
            .any(|e| matches!(e, Event::UsingUnexpiredToken { .. })),
        "said so"
    );
    // The server is back: one refresh, then the new token is good enough for every caller.
    let first = store.access_token_valid_for(want).expect("refreshed");
    assert!(first.refreshed());
    let second = store.access_token_valid_for(want).expect("fresh");
    assert!(!second.refreshed());
    assert_eq!(first.secret(), second.secret());
    assert_eq!(
        bed.server.counters().refresh_requests,
        2,
        "the failed try and one refresh"
    );
}
