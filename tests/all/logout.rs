//! Logging out: revoke and delete in one critical section, keep the session when revocation
//! fails, and touch nothing when nothing is stored.

use std::sync::Arc;
use std::time::Duration;

use credlock::{Client, Error, LoggedOut, Revocation, Session, Store, TransportError};
use credlock_test::{Failure, FakeServer, FakeTransport, ReusePolicy};

use crate::common::{Bed, REVOCATION_ENDPOINT, TOKEN_ENDPOINT, seed_revocable};

#[test]
fn logout_with_revocation_revokes_the_stored_refresh_token_then_deletes() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let session = seed_revocable(&bed);
    let outcome = bed.store().logout(Revocation::Required).expect("logout");
    assert_eq!(outcome, LoggedOut::Deleted { revoked: true });
    assert!(!bed.path.exists());
    assert!(!bed.server.is_live(session.refresh_token().secret()));
    assert_eq!(bed.server.live_grants(), 0);
}

/// Failure table: `logout` with revocation: network error, 408, 425, 429, 5xx
#[test]
fn a_revocation_that_cannot_reach_the_server_keeps_the_session_and_is_transient() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let session = seed_revocable(&bed);
    let before = bed.bytes();
    bed.server
        .push_failure(Failure::Transport(TransportError::Connect(
            "refused".into(),
        )));
    let err = bed.store().logout(Revocation::Required).unwrap_err();
    assert!(
        matches!(err, Error::RevocationUnavailable { .. }),
        "{err:?}"
    );
    assert!(err.is_transient() && !err.needs_login(), "{err:?}");
    assert_eq!(bed.bytes(), before, "the session is kept byte for byte");
    assert!(bed.server.is_live(session.refresh_token().secret()));
}

/// Failure table: `logout` with revocation: no revocation endpoint in the session
#[test]
fn revocation_without_an_endpoint_keeps_the_session_and_local_logout_deletes_it() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let session = bed.seed();
    let before = bed.bytes();
    let err = bed.store().logout(Revocation::Required).unwrap_err();
    assert!(matches!(err, Error::NoRevocationEndpoint { .. }), "{err:?}");
    assert!(!err.is_transient() && !err.needs_login(), "{err:?}");
    assert!(err.to_string().contains("without revoking"), "{err}");
    assert_eq!(bed.bytes(), before);

    let outcome = bed.store().logout(Revocation::LocalOnly).expect("logout");
    assert_eq!(outcome, LoggedOut::Deleted { revoked: false });
    assert!(!bed.path.exists());
    assert!(
        bed.server.is_live(session.refresh_token().secret()),
        "a local logout sends nothing"
    );
    assert_eq!(bed.server.counters().refresh_requests, 0);
}

/// Failure table: `logout` with nothing stored
#[test]
fn logout_with_nothing_stored_creates_no_directory_and_no_lock_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("not-yet").join("session.json");
    for revocation in [Revocation::Required, Revocation::LocalOnly] {
        let outcome = Store::new(&path).logout(revocation).expect("logout");
        assert_eq!(outcome, LoggedOut::NothingStored);
    }
    assert!(!dir.path().join("not-yet").exists());

    let path = dir.path().join("session.json");
    assert_eq!(
        Store::new(&path)
            .logout(Revocation::Required)
            .expect("logout"),
        LoggedOut::NothingStored
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n != "not-yet")
        .collect();
    assert!(left.is_empty(), "no lock file, no lease: {left:?}");
}

/// Invariant 4 in a race: a refresh is in flight (the server has rotated the token, its answer
/// is on the way) when the user logs out. Revoking what was on disk before the refresh
/// revokes a token that is already dead, and the deletion then throws away the only copy of
/// the live one: the grant outlives the logout. Under the guards, the logout waits for the
/// refresh's save and revokes the newest token.
#[test]
fn a_logout_racing_a_refresh_revokes_the_newest_refresh_token() {
    let server = FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .latency(Duration::from_millis(400))
        .build();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let store = || Store::new(&path).with_transport(Arc::new(FakeTransport::new(server.clone())));
    let client = Client::new(
        TOKEN_ENDPOINT,
        credlock_test::TEST_CLIENT_ID,
        credlock::ClientAuth::None,
    )
    .and_then(|c| c.with_revocation_endpoint(REVOCATION_ENDPOINT))
    .expect("client");
    let session = Session::from_token_response(client, server.seed(), std::time::SystemTime::now())
        .expect("session")
        .with_expires_at(std::time::SystemTime::now());
    store().save(&session).expect("save");

    let refreshing = {
        let store = store();
        std::thread::spawn(move || store.access_token())
    };
    // Log out once the server has rotated the token and while its answer is on the way.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.counters().refreshes_ok == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let outcome = crate::common::within(Duration::from_secs(30), {
        let store = store();
        move || store.logout(Revocation::Required)
    });
    let refreshed = refreshing.join().expect("thread");
    assert!(refreshed.is_ok(), "{refreshed:?}");
    assert_eq!(
        outcome.expect("logout"),
        LoggedOut::Deleted { revoked: true }
    );
    assert!(!path.exists());
    assert_eq!(
        server.live_grants(),
        0,
        "the grant must not outlive the logout"
    );
}

/// A session whose client names a revocation endpoint, seeded on the server but not saved.
fn revocable_session(bed: &Bed) -> Session {
    let response = bed.server.seed();
    let client = Client::new(
        TOKEN_ENDPOINT,
        credlock_test::TEST_CLIENT_ID,
        credlock::ClientAuth::None,
    )
    .and_then(|c| c.with_revocation_endpoint(REVOCATION_ENDPOINT))
    .expect("client");
    Session::from_token_response(client, response, credlock::Clock::now(&*bed.clock))
        .expect("session")
}

/// Runs `during` while a revocation is at the server: what "another process broke our lease
/// meanwhile" looks like from the process logging out.
struct DuringRevocation {
    inner: FakeTransport,
    during: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for DuringRevocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DuringRevocation")
    }
}

impl credlock::Transport for DuringRevocation {
    fn post_form(
        &self,
        request: &credlock::transport::FormRequest,
    ) -> Result<credlock::transport::HttpResponse, TransportError> {
        if request.url.ends_with("/revoke") {
            (self.during)();
        }
        self.inner.post_form(request)
    }
}

/// Breaks the lease at `lease` and takes it for a process of another machine.
fn take_the_lease_over(lease: &std::path::Path) {
    std::fs::remove_file(lease).expect("broken");
    let record = serde_json::json!({
        "host": "another-host", "pid": 7, "created_ms": 0u64, "ttl_ms": u64::MAX / 2,
        "nonce": "thief",
    });
    std::fs::write(lease, record.to_string()).expect("retaken");
}

/// A logout whose lease is taken over after it took it, before its revocation is sent, sends
/// nothing and keeps the session: another process may be refreshing with that refresh token.
/// (The take-over happens where the logout reads the session under its guards: the file is
/// 0644, so that read tightens it and says so, and the observer steals the lease then.)
///
/// Failure table: logout, lease lost before the revocation
#[cfg(unix)]
#[test]
fn a_logout_that_lost_its_lease_before_the_revocation_sends_nothing_and_keeps_the_session() {
    use std::os::unix::fs::PermissionsExt;
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let session = seed_revocable(&bed);
    std::fs::set_permissions(&bed.path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let lease = crate::common::lease_path(&bed.path);
    let thief = lease.clone();
    let err = bed
        .store()
        .with_lock_mode(credlock::LockMode::Lease)
        .on_event(move |e| {
            if matches!(e, credlock::Event::PermissionsTightened { .. }) {
                take_the_lease_over(&thief);
            }
        })
        .logout(Revocation::Required)
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
    assert!(err.is_transient(), "{err:?}");
    assert!(
        bed.server.is_live(session.refresh_token().secret()),
        "no revocation was sent"
    );
    assert_eq!(
        bed.stored().expect("kept").refresh_token(),
        session.refresh_token()
    );
}

/// Invariant 4 under the lease: a logout whose lease is taken over while its revocation is at
/// the server revoked the old refresh token; the newer session the new holder saved meanwhile
/// holds another one, live at the server, and is kept: deleting it would leave a live grant
/// nobody can revoke any more.
///
/// Failure table: logout, revocation done, a newer session saved meanwhile
#[test]
fn a_logout_that_lost_its_lease_keeps_a_newer_session_it_did_not_revoke() {
    let bed = Arc::new(Bed::new(ReusePolicy::RevokeGrant));
    let old = seed_revocable(&bed);
    let newer = revocable_session(&bed);
    let lease = crate::common::lease_path(&bed.path);
    let transport = {
        let (bed2, lease, newer) = (Arc::clone(&bed), lease.clone(), newer.clone());
        DuringRevocation {
            inner: FakeTransport::new(bed.server.clone()),
            during: Box::new(move || {
                take_the_lease_over(&lease);
                Store::new(&bed2.path)
                    .with_lock_mode(credlock::LockMode::Off)
                    .save(&newer)
                    .expect("the new holder saves");
            }),
        }
    };
    let err = Store::new(&bed.path)
        .with_clock(bed.clock.clone())
        .with_transport(Arc::new(transport))
        .with_lock_mode(credlock::LockMode::Lease)
        .logout(Revocation::Required)
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
    assert!(
        err.is_transient(),
        "logging out again revokes the newer one"
    );
    assert!(!bed.server.is_live(old.refresh_token().secret()), "revoked");
    assert_eq!(bed.stored(), Some(newer), "the newer session was kept");
}

/// The lease was lost during the revocation, but nothing newer was saved: the session holds
/// the refresh token just revoked, useless to anyone, and is deleted.
#[test]
fn a_logout_that_lost_its_lease_still_deletes_the_session_it_revoked() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let old = seed_revocable(&bed);
    let lease = crate::common::lease_path(&bed.path);
    let transport = {
        let lease = lease.clone();
        DuringRevocation {
            inner: FakeTransport::new(bed.server.clone()),
            during: Box::new(move || take_the_lease_over(&lease)),
        }
    };
    let outcome = Store::new(&bed.path)
        .with_clock(bed.clock.clone())
        .with_transport(Arc::new(transport))
        .with_lock_mode(credlock::LockMode::Lease)
        .logout(Revocation::Required)
        .expect("logout");
    assert_eq!(outcome, LoggedOut::Deleted { revoked: true });
    assert!(!bed.path.exists());
    assert!(!bed.server.is_live(old.refresh_token().secret()));
    assert!(lease.exists(), "the new holder's lease was left alone");
}

/// Invariant 4: a logout must not answer "nothing stored" while a compare-and-delete has
/// the file renamed aside (the session is then put back and outlives the logout).
///
/// Failure table: logout while a compare-and-delete has the file aside
#[test]
fn a_logout_during_a_compare_and_delete_does_not_leave_the_session_behind() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed();
    let aside = bed
        .dir
        .path()
        .join(format!(".session.json.aside-{}-1-0", std::process::id()));
    std::fs::rename(&bed.path, &aside).expect("rename aside");
    let mut marked = fd_lock::RwLock::new(std::fs::File::open(&aside).expect("open aside"));
    let (tx, rx) = std::sync::mpsc::channel();
    let put_back = {
        let (aside, path) = (aside.clone(), bed.path.clone());
        std::thread::spawn(move || {
            let _held = marked.try_write().expect("mark the aside file");
            tx.send(()).expect("send");
            std::thread::sleep(Duration::from_millis(60));
            std::fs::rename(&aside, &path).expect("put back");
        })
    };
    rx.recv().expect("marked");
    let outcome = Store::new(&bed.path)
        .logout(Revocation::LocalOnly)
        .expect("logout");
    put_back.join().expect("thread");
    assert!(
        !(outcome == LoggedOut::NothingStored && bed.path.exists()),
        "logout said {outcome:?} but the session is still stored after the put-back"
    );
}

/// Delays revocation requests before the server sees them (a slow revocation endpoint).
#[derive(Debug)]
struct SlowRevocation(credlock_test::FakeTransport, Duration);

impl credlock::Transport for SlowRevocation {
    fn post_form(
        &self,
        request: &credlock::transport::FormRequest,
    ) -> Result<credlock::transport::HttpResponse, TransportError> {
        if request.url.ends_with("/revoke") {
            std::thread::sleep(self.1);
        }
        self.0.post_form(request)
    }
}

/// Invariant 4 under the lease: a logout deletes only the session whose refresh token it
/// revoked. A logout whose revocation outlives its lease revokes the (by then rotated) old
/// refresh token; deleting the new holder's session after it would leave the newest refresh
/// token live at the server and gone locally.
#[test]
fn a_logout_under_a_lost_lease_never_deletes_a_newer_session_it_did_not_revoke() {
    let bed = Arc::new(Bed::new(ReusePolicy::RevokeGrant));
    seed_revocable(&bed);
    bed.clock.advance(Duration::from_secs(3600));
    let store = |ttl: Duration| {
        Store::new(&bed.path)
            .with_clock(bed.clock.clone())
            .with_transport(Arc::new(SlowRevocation(
                credlock_test::FakeTransport::new(bed.server.clone()),
                Duration::from_millis(800),
            )))
            .with_lock_mode(credlock::LockMode::Lease)
            .with_lease_ttl(ttl)
    };
    let logout = {
        let s = store(Duration::from_millis(400));
        std::thread::spawn(move || s.logout(Revocation::Required))
    };
    std::thread::sleep(Duration::from_millis(50));
    let refreshed = store(Duration::from_secs(10)).access_token();
    let logout = logout.join().expect("thread");
    let newest = bed.server.live_grants();
    assert!(
        newest == 0 || bed.path.exists(),
        "a live grant remains at the server but the session is gone locally\nlogout: {logout:?}\nrefresh: {refreshed:?}"
    );
}

/// A server that accepts revocation only from confidential clients (Glewlwyd 2.7): a request
/// without client authentication gets 401.
#[derive(Debug)]
struct ConfidentialRevocationOnly(FakeTransport);

impl credlock::Transport for ConfidentialRevocationOnly {
    fn post_form(
        &self,
        request: &credlock::transport::FormRequest,
    ) -> Result<credlock::transport::HttpResponse, TransportError> {
        if request.url.ends_with("/revoke") && request.authorization.is_none() {
            return Ok(credlock::transport::HttpResponse::new(
                401,
                r#"{"error":"invalid_client"}"#,
            ));
        }
        self.0.post_form(request)
    }
}

#[test]
fn a_server_refusing_revocation_from_a_public_client_keeps_the_session_and_says_why() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let session = seed_revocable(&bed);
    let before = bed.bytes();
    let store = bed
        .store()
        .with_transport(Arc::new(ConfidentialRevocationOnly(FakeTransport::new(
            bed.server.clone(),
        ))));
    let err = store.logout(Revocation::Required).unwrap_err();
    assert!(
        matches!(err, Error::RevocationRefused { status: 401, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("refuses revocation from public clients"),
        "{text}"
    );
    assert!(text.contains("without revoking"), "{text}");
    assert_eq!(bed.bytes(), before, "the session is kept byte for byte");
    assert!(bed.server.is_live(session.refresh_token().secret()));
}
