//! Lock first: one refresh for many threads, waiting that ends early, logout under the lock.

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use credlock::{Error, LockMode};
use credlock_test::ReusePolicy;

use crate::common::{Bed, sixteen_threads_on_an_expired_session, within};

#[test]
fn sixteen_threads_on_one_expired_session_send_exactly_one_refresh() {
    let (bed, tokens) = sixteen_threads_on_an_expired_session(LockMode::Auto);
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    let c = bed.server.counters();
    assert_eq!(c.refresh_requests, 1, "{c:?}");
    assert_eq!(c.invalid_grant, 0);
    let stored = bed.stored().expect("stored");
    assert_eq!(stored.access_token().secret(), tokens[0]);
    assert!(bed.server.is_live(stored.refresh_token().secret()));
}

/// Failure table: lock held past the deadline
#[test]
fn a_lock_held_too_long_is_a_transient_error_naming_the_lock_file() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let lock_path = crate::common::lock_path(&bed.path);
    let mut holder = fd_lock_holder(&lock_path);
    let _held = holder.try_write().expect("hold the lock");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let err = bed
        .store()
        .with_lock_timeout(Duration::from_millis(100))
        .on_event(move |e| sink.lock().expect("lock").push(e.to_string()))
        .access_token()
        .unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("session.json.lock"), "{err}");
    let events = events.lock().expect("lock");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.starts_with("Blocking waiting for file lock"))
            .count(),
        1,
        "{events:?}"
    );
    assert_eq!(bed.server.counters().refresh_requests, 0);
}

#[test]
fn a_waiter_adopts_a_session_saved_while_it_waits_without_taking_the_lock() {
    let bed = Arc::new(Bed::new(ReusePolicy::RevokeGrant));
    bed.seed_expired();
    let lock_path = crate::common::lock_path(&bed.path);
    let mut holder = fd_lock_holder(&lock_path);
    let _held = holder.try_write().expect("hold the lock");
    let newer = bed
        .server
        .seed_session(crate::common::TOKEN_ENDPOINT)
        .expect("login");
    let writer = {
        let (bed, newer) = (Arc::clone(&bed), newer.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            // The lock holder (another process) saves its refreshed session.
            bed.store()
                .with_lock_mode(LockMode::Off)
                .save(&newer)
                .expect("save");
        })
    };
    let token = bed
        .store()
        .with_lock_timeout(Duration::from_secs(5))
        .access_token()
        .expect("adopted while waiting");
    writer.join().expect("join");
    assert_eq!(token.secret(), newer.access_token().secret());
    assert_eq!(bed.server.counters().refresh_requests, 0);
}

#[test]
fn a_logout_during_a_refresh_is_not_undone_by_the_refresh() {
    let bed = Arc::new(Bed::with_latency(
        ReusePolicy::RevokeGrant,
        Duration::from_millis(150),
    ));
    bed.seed_expired();
    let refresher = {
        let bed = Arc::clone(&bed);
        std::thread::spawn(move || bed.store().access_token().map(|t| t.refreshed()))
    };
    std::thread::sleep(Duration::from_millis(40));
    let deleted = within(Duration::from_secs(10), {
        let bed = Arc::clone(&bed);
        move || bed.store().delete()
    });
    assert!(
        refresher.join().expect("join").expect("refreshed"),
        "the refresh completed"
    );
    assert!(
        deleted.expect("delete"),
        "the logout waited and then deleted the refreshed session"
    );
    assert!(
        bed.stored().is_none(),
        "the refresh did not write the session back"
    );
}

#[test]
fn a_refresh_queued_behind_a_logout_finds_nothing_and_writes_nothing() {
    let bed = Arc::new(Bed::new(ReusePolicy::RevokeGrant));
    bed.seed_expired();
    let lock_path = crate::common::lock_path(&bed.path);
    let mut holder = fd_lock_holder(&lock_path);
    let held = holder.try_write().expect("hold the lock");
    let refresher = {
        let bed = Arc::clone(&bed);
        std::thread::spawn(move || bed.store().access_token())
    };
    std::thread::sleep(Duration::from_millis(30));
    // The logout, holding the lock, removes the file; then releases.
    std::fs::remove_file(&bed.path).expect("logout");
    drop(held);
    let err = within(Duration::from_secs(10), move || {
        refresher.join().expect("join")
    })
    .unwrap_err();
    assert!(matches!(err, Error::NoSession { .. }), "{err:?}");
    assert!(!bed.path.exists());
    assert_eq!(bed.server.counters().refresh_requests, 0);
}

fn fd_lock_holder(path: &std::path::Path) -> fd_lock::RwLock<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open lock file");
    fd_lock::RwLock::new(f)
}

#[test]
fn many_callers_reporting_one_rejected_token_cause_one_refresh() {
    let bed = Arc::new(Bed::with_latency(
        ReusePolicy::RevokeGrant,
        Duration::from_millis(20),
    ));
    bed.seed();
    let rejected = bed.store().access_token().expect("a valid token");
    // The API said 401: the server revoked that access token early (the session itself is
    // fresh by its expiry, so a plain access_token() would hand it out again).
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (bed, barrier, rejected) =
                (Arc::clone(&bed), Arc::clone(&barrier), rejected.clone());
            std::thread::spawn(move || {
                let store = bed.store();
                barrier.wait();
                store
                    .access_token_after_rejection(rejected.secret())
                    .map(|t| t.secret().to_owned())
            })
        })
        .collect();
    let tokens: Vec<String> = within(Duration::from_secs(60), move || {
        handles
            .into_iter()
            .map(|h| h.join().expect("join").expect("a new token"))
            .collect()
    });
    assert!(
        tokens
            .iter()
            .all(|t| *t == tokens[0] && t.as_str() != rejected.secret()),
        "{tokens:?}"
    );
    assert_eq!(bed.server.counters().refresh_requests, 1);
    // Reporting the old rejection again changes nothing.
    let again = bed
        .store()
        .access_token_after_rejection(rejected.secret())
        .expect("token");
    assert_eq!(again.secret(), tokens[0]);
    assert_eq!(bed.server.counters().refresh_requests, 1);
}

/// Puts something at a path.
#[cfg(unix)]
type Plant = fn(&std::path::Path);

/// A FIFO (which would hang a blocking open, or be "locked" as if it were the lock file), a
/// symbolic link (not followed) or a directory at `<store>.lock`: refused at once with an error
/// naming the lock file and what is there, and left in place.
///
/// Failure table: FIFO / symlink / directory / socket at `<file>.lock` or `<file>.lease`
#[cfg(unix)]
#[test]
fn a_fifo_a_symlink_or_a_directory_at_the_lock_file_is_refused_at_once() {
    let cases: [(&str, Plant); 3] = [
        ("named pipe", |p| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                p,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .expect("mkfifo");
        }),
        ("symbolic link", |p| {
            let target = p.with_extension("elsewhere");
            std::fs::write(&target, b"").expect("target");
            std::os::unix::fs::symlink(&target, p).expect("symlink");
        }),
        ("directory", |p| std::fs::create_dir(p).expect("mkdir")),
    ];
    for (what, plant) in cases {
        let bed = Arc::new(Bed::new(ReusePolicy::RevokeGrant));
        bed.seed_expired();
        let lock = crate::common::lock_path(&bed.path);
        std::fs::remove_file(&lock).expect("rm the lock file the seed created");
        plant(&lock);
        let started = std::time::Instant::now();
        let err = within(Duration::from_secs(10), {
            let bed = Arc::clone(&bed);
            move || {
                bed.store()
                    .with_lock_mode(LockMode::Advisory)
                    .with_lock_timeout(Duration::from_secs(2))
                    .access_token()
            }
        })
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{what}");
        assert!(
            matches!(&err, Error::NotASessionFile { path, .. } if *path == lock),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains(what), "{what}: {err}");
        assert_eq!(bed.server.counters().refresh_requests, 0, "{what}");
        assert!(std::fs::symlink_metadata(&lock).is_ok(), "{what}: left");
    }
}
