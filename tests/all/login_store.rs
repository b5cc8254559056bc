//! `Store::login_with`: one login for many callers, without a network (the login is a
//! closure that builds a session), and a login that never loses its result.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use credlock::{Client, ClientAuth, Error, LoggedIn, Session, Store, TokenResponse};

fn session(n: usize) -> Session {
    let client = Client::new("https://id.example/token", "cli", ClientAuth::None).unwrap();
    let body = format!(
        r#"{{"access_token":"at-{n}","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-{n}"}}"#
    );
    Session::from_token_response(
        client,
        TokenResponse::from_json(body.as_bytes()).unwrap(),
        SystemTime::now(),
    )
    .unwrap()
}

#[test]
fn sixteen_threads_needing_a_login_run_it_once_and_all_adopt_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    let logins = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (path, logins, barrier) = (path.clone(), logins.clone(), barrier.clone());
            std::thread::spawn(move || {
                let store = Store::new(&path);
                barrier.wait();
                store.login_with(Duration::from_secs(20), || {
                    let n = logins.fetch_add(1, Ordering::SeqCst);
                    // A user takes a while to approve.
                    std::thread::sleep(Duration::from_millis(300));
                    Ok(session(n))
                })
            })
        })
        .collect();
    let outcomes: Vec<LoggedIn> = crate::common::within(Duration::from_secs(60), move || {
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert_eq!(logins.load(Ordering::SeqCst), 1);
    assert_eq!(outcomes.iter().filter(|o| o.logged_in()).count(), 1);
    for o in &outcomes {
        assert_eq!(o.session().refresh_token().secret(), "rt-0");
    }
    let stored = Store::new(&path).load().unwrap().unwrap();
    assert_eq!(stored.refresh_token().secret(), "rt-0");
}

#[test]
fn a_failed_login_saves_nothing_and_the_next_caller_logs_in_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("session.json"));
    let e = store
        .login_with(Duration::from_secs(5), || {
            Err(Error::LoginDenied {
                description: None,
                via_redirect: false,
            })
        })
        .unwrap_err();
    assert!(matches!(e, Error::LoginDenied { .. }));
    assert!(store.load().unwrap().is_none());
    let o = store
        .login_with(Duration::from_secs(5), || Ok(session(7)))
        .unwrap();
    assert!(o.logged_in());
    assert_eq!(
        store.load().unwrap().unwrap().refresh_token().secret(),
        "rt-7"
    );
}

#[test]
fn an_explicit_login_replaces_the_session_it_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("session.json"));
    store.save(&session(1)).unwrap();
    let o = store
        .login_with(Duration::from_secs(5), || Ok(session(2)))
        .unwrap();
    assert!(
        o.logged_in(),
        "a fresh session already stored is replaced, not adopted"
    );
    assert_eq!(
        store.load().unwrap().unwrap().refresh_token().secret(),
        "rt-2"
    );
}

#[test]
fn a_session_saved_while_waiting_for_the_guards_is_adopted_without_logging_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let first = {
        let path = path.clone();
        std::thread::spawn(move || {
            Store::new(&path).login_with(Duration::from_secs(10), || {
                let _ = started_tx.send(());
                std::thread::sleep(Duration::from_millis(400));
                Ok(session(1))
            })
        })
    };
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let ran = AtomicUsize::new(0);
    let second = Store::new(&path)
        .login_with(Duration::from_secs(10), || {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok(session(2))
        })
        .unwrap();
    assert!(first.join().unwrap().unwrap().logged_in());
    assert!(matches!(second, LoggedIn::Adopted(_)));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(second.session().refresh_token().secret(), "rt-1");
}

#[test]
fn a_login_whose_save_fails_hands_the_new_session_back_in_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    let store = Store::new(&path);
    let e = store
        .login_with(Duration::from_secs(5), || {
            // Something takes the file's place during the login: the save must fail.
            std::fs::create_dir(&path).unwrap();
            Ok(session(3))
        })
        .unwrap_err();
    match e {
        Error::NotSaved { session, .. } => assert_eq!(session.refresh_token().secret(), "rt-3"),
        other => panic!("{other}"),
    }
}

#[test]
fn a_login_held_longer_than_the_waiters_patience_times_them_out_transiently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let holder = {
        let path = path.clone();
        std::thread::spawn(move || {
            Store::new(&path).login_with(Duration::from_secs(10), || {
                let _ = started_tx.send(());
                std::thread::sleep(Duration::from_millis(1500));
                Err(Error::LoginExpired {
                    what: "test".into(),
                })
            })
        })
    };
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let e = Store::new(&path)
        .with_lock_timeout(Duration::from_millis(100))
        .login_with(Duration::from_millis(200), || Ok(session(9)))
        .unwrap_err();
    assert!(
        matches!(e, Error::LockTimeout { .. }) && e.is_transient(),
        "{e}"
    );
    assert!(holder.join().unwrap().is_err());
}

/// `relogin_with` waits for whoever holds the guards, then logs in anyway: a session saved
/// meanwhile (here a refresh's rotated one) is replaced, not adopted.
#[test]
fn a_relogin_runs_its_login_even_when_a_session_is_saved_while_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    Store::new(&path).save(&session(1)).unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let refresher = {
        let path = path.clone();
        // Holds the guards the way a refresh does, and saves a rotated session under them.
        std::thread::spawn(move || {
            Store::new(&path).login_with(Duration::from_secs(10), || {
                let _ = started_tx.send(());
                std::thread::sleep(Duration::from_millis(300));
                Ok(session(2))
            })
        })
    };
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let ran = AtomicUsize::new(0);
    let saved = Store::new(&path)
        .relogin_with(Duration::from_secs(10), || {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok(session(3))
        })
        .unwrap();
    assert!(refresher.join().unwrap().unwrap().logged_in());
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the login ran");
    assert_eq!(saved.refresh_token().secret(), "rt-3");
    assert_eq!(
        Store::new(&path)
            .load()
            .unwrap()
            .unwrap()
            .refresh_token()
            .secret(),
        "rt-3"
    );
}

/// A login nobody approved (expired, or denied) ends the callers that waited for it with
/// the same error, without running their own; a caller that comes later logs in.
#[test]
fn callers_waiting_for_a_login_that_expires_get_its_error_and_later_ones_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    let ran = Arc::new(AtomicUsize::new(0));
    let (p1, ran1) = (path.clone(), ran.clone());
    let holder = std::thread::spawn(move || {
        Store::new(&p1).login_with(Duration::from_secs(20), || {
            ran1.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(600));
            Err(Error::LoginExpired {
                what: "no approval".into(),
            })
        })
    });
    std::thread::sleep(Duration::from_millis(200));
    let (p2, ran2) = (path.clone(), ran.clone());
    let waiter = std::thread::spawn(move || {
        Store::new(&p2).login_with(Duration::from_secs(20), || {
            ran2.fetch_add(1, Ordering::SeqCst);
            Ok(session(2))
        })
    });
    let (held, waited) = crate::common::within(Duration::from_secs(60), move || {
        (holder.join().unwrap(), waiter.join().unwrap())
    });
    assert!(matches!(held, Err(Error::LoginExpired { .. })), "{held:?}");
    assert!(
        matches!(waited, Err(Error::LoginExpired { ref what }) if what.contains("no approval")),
        "{waited:?}"
    );
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "the waiter did not prompt again"
    );
    std::thread::sleep(Duration::from_millis(5));
    let later = Store::new(&path)
        .login_with(Duration::from_secs(5), || Ok(session(3)))
        .unwrap();
    assert!(later.logged_in());
}

/// Writes `<store>.login-ended` as a login denied `ahead_ms` from now would.
fn plant_login_end(path: &std::path::Path, ahead_ms: u128) -> std::path::PathBuf {
    let ended = path.with_file_name("session.json.login-ended");
    let at_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + ahead_ms;
    std::fs::write(
        &ended,
        format!(r#"{{"kind":"login_denied","at_ms":{at_ms},"detail":"planted\u001b[31m"}}"#),
    )
    .unwrap();
    ended
}

/// A `.login-ended` record is trusted only when it could have come from a login that ended
/// while the caller waited: one dated further in the future than a small clock skew
/// (planted, or a clock far ahead) does not end a new login; one within the skew does.
#[test]
fn a_login_end_dated_in_the_future_does_not_end_a_new_login() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    plant_login_end(&path, 3_600_000);
    let outcome = Store::new(&path).login_with(Duration::from_secs(5), || Ok(session(1)));
    assert!(matches!(outcome, Ok(ref o) if o.logged_in()), "{outcome:?}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    plant_login_end(&path, 1_000);
    let outcome = Store::new(&path).login_with(Duration::from_secs(5), || Ok(session(1)));
    match outcome {
        Err(Error::LoginDenied {
            description: Some(d),
            ..
        }) => assert_eq!(d, "planted[31m", "control characters are dropped"),
        other => panic!("a record within the skew is read: {other:?}"),
    }
}

/// A `.login-ended` record owned by another user (planted in a shared directory) is ignored,
/// as a session, lock or lease file of another user is refused. Needs root to give a file
/// away; skipped otherwise.
#[cfg(unix)]
#[test]
fn a_login_end_owned_by_another_user_does_not_end_a_login() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: giving a file to another user (uid 65534) needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    let ended = plant_login_end(&path, 1_000);
    std::os::unix::fs::chown(&ended, Some(65534), Some(65534)).unwrap();
    let outcome = Store::new(&path).login_with(Duration::from_secs(5), || Ok(session(1)));
    assert!(matches!(outcome, Ok(ref o) if o.logged_in()), "{outcome:?}");
}

/// A login under a lease that another process takes over while the user is logging in saves
/// nothing (the new holder may be saving its own session): the new session comes back in
/// `NotSaved`, whose source is `LeaseLost`, and the file keeps what it held.
#[test]
fn a_login_that_lost_its_lease_saves_nothing_and_hands_its_session_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    let store = Store::new(&path).with_lock_mode(credlock::LockMode::Lease);
    store.save(&session(1)).unwrap();
    let lease = crate::common::lease_path(&path);
    let e = store
        .login_with(Duration::from_secs(5), || {
            std::fs::remove_file(&lease).unwrap();
            let thief = serde_json::json!({
                "host": "another-host", "pid": 7, "created_ms": 0u64,
                "ttl_ms": u64::MAX / 2, "nonce": "thief",
            });
            std::fs::write(&lease, thief.to_string()).unwrap();
            Ok(session(2))
        })
        .unwrap_err();
    match e {
        Error::NotSaved { session, source } => {
            assert_eq!(session.refresh_token().secret(), "rt-2");
            assert!(matches!(*source, Error::LeaseLost { .. }), "{source:?}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        store.load().unwrap().unwrap().refresh_token().secret(),
        "rt-1"
    );
}
