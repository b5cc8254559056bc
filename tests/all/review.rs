//! Hostile review of the issue-9 fixes: each test here failed on the code it was written
//! against. See the review report for the invariant each one breaks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use credlock::testing::{Failure, ReusePolicy};
use credlock::{
    Client, FormRequest, HttpResponse, LockMode, LoggedOut, Revocation, Session, Store, Transport,
    TransportError,
};

use crate::common::{Bed, TOKEN_ENDPOINT, seed_revocable};

/// Invariant 7 (no secret in errors): the refresh path withholds a transport error that
/// quotes a secret sent; the revocation path (`logout --revoke`) does not.
#[test]
fn review_a_revocation_transport_error_quoting_the_refresh_token_is_withheld() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let session = seed_revocable(&bed);
    let rt = session.refresh_token().secret().to_owned();
    bed.server
        .push_failure(Failure::Transport(TransportError::Other(format!(
            "malformed response header near \"token={rt}\""
        ))));
    let err = bed.store().logout(Revocation::Required).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(&rt),
        "the refresh token leaked through a revocation error: {shown}"
    );
}

/// Issue 9 C / H: a logout must not answer "nothing stored" while a compare-and-delete has
/// the file renamed aside (the session is then put back and outlives the logout).
#[test]
fn review_logout_during_a_compare_and_delete_does_not_leave_the_session_behind() {
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

/// A transport that, on every refresh, lets a "winner" save a newer fresh session and then
/// answers `invalid_grant`: the loser's compare-and-delete renames the file aside, finds the
/// winner's session, and puts it back. Real code paths, no emulation.
#[derive(Debug)]
struct WinnerSavesThenInvalidGrant {
    writer: Store,
    winners: Mutex<VecDeque<Session>>,
}

impl Transport for WinnerSavesThenInvalidGrant {
    fn post_form(&self, _request: &FormRequest) -> Result<HttpResponse, TransportError> {
        if let Some(s) = self.winners.lock().expect("lock").pop_front() {
            self.writer.save(&s).expect("winner saves");
        }
        Ok(HttpResponse {
            status: 400,
            retry_after: None,
            body: br#"{"error":"invalid_grant"}"#.to_vec(),
        })
    }
}

/// Issue 9 C: "a reader must not conclude 'no session' while a delete is in progress". The
/// reader's check (`delete_in_progress`) runs after its failed open, so a put-back that lands
/// in between (or a rename aside before its flock mark is taken) gives `NoSession`.
#[test]
fn review_a_lock_free_reader_never_sees_no_session_while_a_file_is_put_back() {
    const ROUNDS: usize = 1500;
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let now = SystemTime::now();
    let mut stale = Vec::new();
    let mut winners = VecDeque::new();
    for _ in 0..ROUNDS {
        stale.push(
            bed.server
                .seed_session(TOKEN_ENDPOINT)
                .expect("seed")
                .with_expires_at(now - Duration::from_secs(3600)),
        );
        winners.push_back(
            bed.server
                .seed_session(TOKEN_ENDPOINT)
                .expect("seed")
                .with_expires_at(now + Duration::from_secs(3600)),
        );
    }
    let off = |p: &std::path::Path| {
        Store::new(p)
            .with_lock_mode(LockMode::Off)
            .with_poll_schedule(Vec::new())
    };
    let transport = Arc::new(WinnerSavesThenInvalidGrant {
        writer: off(&bed.path),
        winners: Mutex::new(winners),
    });
    let loser = off(&bed.path).with_transport(transport);
    let setter = off(&bed.path);
    setter.save(&stale[0]).expect("seed");
    let stop = Arc::new(AtomicBool::new(false));
    let none_seen = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, none_seen, path) = (stop.clone(), none_seen.clone(), bed.path.clone());
            std::thread::spawn(move || {
                let reader = Store::new(&path);
                while !stop.load(Ordering::Relaxed) {
                    if matches!(reader.load(), Ok(None)) {
                        none_seen.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for s in &stale {
        setter.save(s).expect("re-arm with a stale session");
        loser
            .access_token()
            .expect("the winner's session is adopted");
        if none_seen.load(Ordering::Relaxed) > 0 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader");
    }
    assert_eq!(
        none_seen.load(Ordering::Relaxed),
        0,
        "a lock-free reader concluded 'no session' while a compare-and-delete put the file back"
    );
}

/// A session file whose endpoint carries user information (written by a credlock from before
/// endpoints were validated, or by hand). `display_url` treats that as a password and hides it
/// in errors, but `Session`'s `Debug` (derived `Client` Debug; also in `NotSaved`'s Debug)
/// and `credlock status` print it.
fn session_with_password_in_endpoint(bed: &Bed) -> (Vec<u8>, &'static str) {
    const PASSWORD: &str = "hunter2-endpoint-pw";
    let session = bed.server.seed_session(TOKEN_ENDPOINT).expect("seed");
    let json = String::from_utf8(session.to_json()).expect("utf8").replace(
        TOKEN_ENDPOINT,
        "https://me:hunter2-endpoint-pw@auth.example.com/token",
    );
    (json.into_bytes(), PASSWORD)
}

#[test]
fn review_a_password_in_a_stored_endpoint_is_not_in_session_debug() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let (bytes, password) = session_with_password_in_endpoint(&bed);
    let session = Session::from_json(&bytes, &bed.path).expect("the file parses");
    let shown = format!("{session:?}");
    assert!(!shown.contains(password), "Debug shows it: {shown}");
}

#[cfg(feature = "cli")]
#[test]
fn review_status_does_not_print_a_password_in_the_stored_endpoint() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let (bytes, password) = session_with_password_in_endpoint(&bed);
    std::fs::write(&bed.path, bytes).expect("write");
    for args in [&["status"][..], &["--json", "status"][..]] {
        let out = crate::common::credlock(&bed.path, args)
            .output()
            .expect("run");
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!shown.contains(password), "{args:?} shows it: {shown}");
    }
}

/// Issue 9 A / invariant 8: "a 2xx that carries a rotated refresh token reaches disk before
/// anything else happens". serde_json refuses some bodies that are JSON by RFC 8259's grammar
/// (a number out of f64 range), or that real servers send (a Latin-1 byte in a vendor field,
/// a deeply nested claim): the whole body is then "not JSON" and the rotated refresh token,
/// already consumed on the server, is dropped; the next call meets invalid_grant and deletes
/// the session.
#[test]
fn review_a_rotated_refresh_token_survives_a_body_serde_json_refuses() {
    let splice = |extra: &'static [u8]| {
        move |m: serde_json::Map<String, serde_json::Value>| {
            let mut body = serde_json::to_vec(&m).expect("json");
            body.pop(); // the closing brace
            body.extend_from_slice(extra);
            body.push(b'}');
            body
        }
    };
    let nested: &'static [u8] = Box::leak(
        format!(r#","claims":{}1{}"#, "[".repeat(200), "]".repeat(200))
            .into_bytes()
            .into_boxed_slice(),
    );
    let cases: [(&str, &'static [u8]); 3] = [
        (
            "a vendor field 1e400 (ext_expires_in)",
            br#","ext_expires_in":1e400"#,
        ),
        ("a Latin-1 byte in a vendor field", b",\"name\":\"Jos\xe9\""),
        ("a claim nested 200 deep", nested),
    ];
    let mut lost = Vec::new();
    for (what, extra) in cases {
        let bed = Bed::new(ReusePolicy::RevokeGrant);
        bed.seed_expired();
        bed.server.reshape_next_success(splice(extra));
        let first = bed.store().access_token();
        let stored = bed.stored().expect("a session is still stored");
        if !bed.server.is_live(stored.refresh_token().secret()) {
            let next = bed.store().access_token();
            lost.push(format!("{what}: first {first:?}, then {next:?}"));
        }
    }
    assert!(
        lost.is_empty(),
        "rotated refresh token dropped:\n{}",
        lost.join("\n")
    );
}

/// Invariant 2 under the lease (issue 9 B: "two holders never refresh at once"). The fence
/// checks only that the lease has not run out *yet* right before the send; a request that
/// takes longer than what is left of the TTL (here: TTL 400 ms, the server answers in 800 ms,
/// well within the 30 s transport timeout) overlaps the next holder's. Nothing stops a TTL
/// shorter than the transport timeout (`with_lease_ttl` accepts any).
#[test]
fn review_a_lease_holder_never_sends_a_request_that_outlives_its_lease() {
    let bed = Arc::new(Bed::with_latency(
        ReusePolicy::RevokeGrant,
        Duration::from_millis(800),
    ));
    bed.seed_expired();
    let make = {
        let bed = Arc::clone(&bed);
        move || {
            bed.store()
                .with_lock_mode(LockMode::Lease)
                .with_lease_ttl(Duration::from_millis(400))
        }
    };
    let first = {
        let store = make();
        std::thread::spawn(move || store.access_token())
    };
    std::thread::sleep(Duration::from_millis(50));
    let second = make().access_token();
    let first = first.join().expect("thread");
    let counters = bed.server.counters();
    assert!(
        counters.reuse_detected == 0 && counters.grants_revoked == 0,
        "two holders refreshed with one refresh token: {counters:?}\nfirst: {first:?}\nsecond: {second:?}"
    );
}

/// Issue 9 G / F: HTTP 408 (Request Timeout) is a transient status (RFC 9110 §15.5.9: the
/// client may repeat the request), but any 4xx without an OAuth body is "log in again"
/// (`needs_login`, exit 3), and the still-valid token of item F is not handed out.
#[test]
fn review_http_408_is_transient_not_log_in_again() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    bed.server.push_failure(Failure::Status {
        status: 408,
        body: String::new(),
        retry_after: None,
    });
    let err = bed.store().access_token().unwrap_err();
    assert!(
        err.is_transient() && !err.needs_login(),
        "408 classified as {}: {err}",
        err.kind()
    );
}

/// Delays revocation requests before the server sees them (a slow revocation endpoint).
#[derive(Debug)]
struct SlowRevocation(credlock::testing::FakeTransport, Duration);

impl Transport for SlowRevocation {
    fn post_form(&self, request: &FormRequest) -> Result<HttpResponse, TransportError> {
        if request.url.ends_with("/revoke") {
            std::thread::sleep(self.1);
        }
        self.0.post_form(request)
    }
}

/// Issue 9 D under the lease: `logout --revoke` checks no fence. A logout whose revocation
/// outlives its lease revokes the (by then rotated) old refresh token, then deletes the new
/// holder's session unconditionally: the newest refresh token stays live at the server and is
/// gone locally, exactly what item D was about.
#[test]
fn review_logout_under_a_lost_lease_never_deletes_a_newer_session_it_did_not_revoke() {
    let bed = Arc::new(Bed::new(ReusePolicy::RevokeGrant));
    seed_revocable(&bed);
    bed.clock.advance(Duration::from_secs(3600));
    let store = |ttl: Duration| {
        Store::new(&bed.path)
            .with_clock(bed.clock.clone())
            .with_transport(Arc::new(SlowRevocation(
                credlock::testing::FakeTransport::new(bed.server.clone()),
                Duration::from_millis(800),
            )))
            .with_lock_mode(LockMode::Lease)
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

/// Issue 9 H / README: "With `--json`, a failure is one object on stdout too". A usage error
/// that clap detects (an unknown lock mode, a bad flag value) prints clap's text on stderr and
/// nothing on stdout.
#[cfg(feature = "cli")]
#[test]
fn review_json_usage_errors_are_one_object_on_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    for args in [
        &["--json", "--lock", "sideways", "status"][..],
        &["--json", "--margin", "soon", "token"][..],
    ] {
        let out = crate::common::credlock(&store, args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out.stdout);
        assert!(
            parsed.as_ref().is_ok_and(|v| v["error"]["exit_code"] == 2),
            "{args:?}: stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Invariant 8 ("a 2xx that carries a rotated refresh token reaches disk before anything
/// else happens") against the save fence: a holder whose lease ran out while its request was
/// in flight gets the rotated token and refuses to save it (`NotSaved { LeaseLost }`). The
/// stored token is consumed; the next holder's refresh with it is refused (a server that
/// refuses reuse without revoking the grant) and its compare-and-delete removes the session,
/// although the grant is alive and the fenced holder had its live refresh token in hand.
/// Saving it (the fence is no reason to drop a token the server already rotated) would have
/// let the next holder adopt it.
#[test]
fn review_a_fenced_holder_still_saves_the_refresh_token_the_server_rotated() {
    let bed = Arc::new(Bed::with_latency(
        ReusePolicy::RejectOnly,
        Duration::from_millis(800),
    ));
    bed.seed_expired();
    let make = {
        let bed = Arc::clone(&bed);
        move |ttl: Duration| {
            bed.store()
                .with_lock_mode(LockMode::Lease)
                .with_lease_ttl(ttl)
        }
    };
    let first = {
        let store = make(Duration::from_millis(400));
        std::thread::spawn(move || store.access_token())
    };
    std::thread::sleep(Duration::from_millis(50));
    let second = make(Duration::from_secs(10)).access_token();
    let first = first.join().expect("thread");
    assert!(
        bed.server.live_grants() == 0 || bed.path.exists(),
        "the grant is alive at the server but the session was deleted\nfirst: {first:?}\nsecond: {second:?}"
    );
}

/// A 2xx body under the transport's 256 KiB cap is accepted and its unknown fields kept in
/// `extra`, but the session is saved pretty-printed: a vendor field holding a long list (one
/// line and one indentation per element) grows past the 1 MiB a session file may have, so
/// the save succeeds and every later read refuses the file (`NotASessionFile`): the session,
/// rotated refresh token included, can no longer be used. Never logged out, in the issue's
/// words, means the file credlock writes must be one credlock reads.
#[test]
fn review_a_session_credlock_saved_is_one_it_can_read_back() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    bed.server.reshape_next_success(|mut m| {
        let ones = vec![serde_json::json!(1); 110_000];
        m.insert("groups".into(), serde_json::json!({ "ids": [ones] }));
        let body = serde_json::to_vec(&m).expect("json");
        assert!(
            body.len() < 256 * 1024,
            "within the transport's cap: {}",
            body.len()
        );
        body
    });
    bed.store().access_token().expect("refreshed and saved");
    let size = std::fs::metadata(&bed.path).expect("saved").len();
    let reread = bed.store().load();
    assert!(
        matches!(reread, Ok(Some(_))),
        "the saved file ({size} bytes) cannot be read back: {reread:?}"
    );
}

/// Endpoint errors go through `display_url`, which hides user information only after a
/// `://`. A URL typed with one slash (`https:/user:pw@host/…`) is refused, and the refusal
/// quotes the password.
#[test]
fn review_an_endpoint_error_never_quotes_a_password() {
    let url = "https:/me:hunter2-endpoint-pw@auth.example.com/token";
    let err = Client::new(url, "cli", credlock::ClientAuth::None).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2-endpoint-pw"), "{shown}");
}
