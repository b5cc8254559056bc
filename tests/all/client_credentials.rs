//! Client-credentials sessions (RFC 6749 §4.4): no refresh token, an access token obtained
//! with the client's secret, read from the environment variable the session names. The same
//! promise as a refresh: one token request per expiry for every thread, process and instance
//! that shares the store, and no refusal ever deletes the session.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use credlock::{ClientAuth, ClientCredentials, Error, Secret, Session, Store};
use credlock_test::{Failure, FakeServer, FakeTransport, HttpServer, ReusePolicy, TEST_CLIENT_ID};

use crate::common::{Reaped, TOKEN_ENDPOINT, finish, within};

/// The variable the sessions of these tests read their client secret from. Set only in the
/// child processes the tests start (setting a variable in a process whose other threads may
/// read the environment is undefined behaviour on some platforms).
const SECRET_VAR: &str = "CREDLOCK_TEST_CC_SECRET";
const SECRET: &str = "cc-secret-Xq7-never-stored";
const STORE_ENV: &str = "CREDLOCK_TEST_CC_STORE";
const GO_ENV: &str = "CREDLOCK_TEST_CC_GO";

/// A server that wants `SECRET` with HTTP Basic, and whose tokens live `ttl`.
fn server(latency: Duration) -> Arc<FakeServer> {
    FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .client_auth(ClientAuth::Basic {
            secret: Secret::new(SECRET),
        })
        .latency(latency)
        .build()
}

fn session(endpoint: &str, secret_env: &str) -> Session {
    Session::client_credentials(
        endpoint,
        TEST_CLIENT_ID,
        ClientCredentials::new(secret_env).scope("jobs:run"),
    )
    .expect("endpoint")
}

/// Runs the test `name` again in a child process that has the client secret in its
/// environment. Returns `true` in the child (the caller runs the test's body), `false` in the
/// parent once the child passed.
fn in_child_with_secret(name: &str) -> bool {
    if std::env::var_os(SECRET_VAR).is_some() {
        return true;
    }
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(SECRET_VAR, SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = finish(child, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} failed in its child:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// Starts `n` processes (this test again, with the secret and `store` in their environment)
/// that each start `threads` threads asking for a token at once; returns every token.
fn tokens_from_processes(name: &str, store: &str, n: usize) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    let exe = std::env::current_exe().expect("test binary");
    let mut children: Vec<Reaped> = (0..n)
        .map(|_| {
            Reaped(
                Command::new(&exe)
                    .args(["--exact", name, "--nocapture", "--test-threads=1"])
                    .env(STORE_ENV, store)
                    .env(GO_ENV, &go)
                    .env(SECRET_VAR, SECRET)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn"),
            )
        })
        .collect();
    std::fs::write(&go, b"").expect("start them together");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut tokens = Vec::new();
    for child in &mut children {
        while child.0.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "a child hung");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut out = String::new();
        std::io::Read::read_to_string(child.0.stdout.as_mut().expect("stdout"), &mut out)
            .expect("read");
        let mine: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_once("TOKEN ").map(|(_, t)| t.to_owned()))
            .collect();
        assert_eq!(mine.len(), THREADS, "a child failed: {out}");
        tokens.extend(mine);
    }
    tokens
}

const THREADS: usize = 4;

/// The child half: waits for the start signal, then `THREADS` threads with their own store
/// handles ask for a token at once; prints each.
fn child_threads(open: impl Fn() -> Store + Send + Sync + 'static) {
    let go = std::path::PathBuf::from(std::env::var_os(GO_ENV).expect("go file"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !go.exists() {
        assert!(Instant::now() < deadline, "no start signal");
        std::thread::sleep(Duration::from_millis(1));
    }
    for token in crate::common::tokens_from_threads(THREADS, open) {
        println!("TOKEN {}", token.expect("a token"));
    }
}

/// Eight processes of four threads each, every one with its own store handle, on one
/// client-credentials session without a token (as `credlock import --grant
/// client-credentials` leaves it): one token request, everyone gets that token, and the
/// client secret is nowhere in the file.
#[test]
fn eight_processes_of_four_threads_on_a_client_credentials_session_send_one_token_request() {
    const NAME: &str = "client_credentials::eight_processes_of_four_threads_on_a_client_credentials_session_send_one_token_request";
    if let Some(path) = std::env::var_os(STORE_ENV) {
        return child_threads(move || Store::new(&path));
    }
    let fake = server(Duration::from_millis(50));
    let http = HttpServer::start(fake.clone()).expect("start the token server");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("machine.json");
    Store::new(&path)
        .save(&session(&http.token_endpoint(), SECRET_VAR))
        .expect("save");

    let tokens = tokens_from_processes(NAME, &path.to_string_lossy(), 8);
    assert_eq!(tokens.len(), 8 * THREADS);
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    let c = fake.counters();
    assert_eq!(c.client_credentials_requests, 1, "{c:?}");
    assert_eq!(c.refresh_requests, 0, "{c:?}");
    let stored = Store::new(&path).load().expect("load").expect("stored");
    assert_eq!(stored.access_token().secret(), tokens[0]);
    assert!(fake.is_access_token_valid(&tokens[0]));
    let bytes = std::fs::read(&path).expect("read");
    assert!(
        !crate::common::contains(&bytes, SECRET),
        "the secret was stored"
    );
    assert!(crate::common::contains(&bytes, SECRET_VAR));
}

/// The same on Redis: eight processes of four threads, one token request; the save after it
/// is compared on the access token that was stale (there is no refresh token to compare).
#[cfg(all(unix, feature = "redis"))]
#[test]
fn eight_processes_of_four_threads_on_a_client_credentials_session_on_redis_send_one_token_request()
{
    const NAME: &str = "client_credentials::eight_processes_of_four_threads_on_a_client_credentials_session_on_redis_send_one_token_request";
    if let Some(url) = std::env::var_os(STORE_ENV) {
        let url = url.to_string_lossy().into_owned();
        return child_threads(move || Store::redis(&url).expect("url"));
    }
    let redis = crate::common::redis::RedisServer::start(Some("pw-cc-never-shown"));
    let url = redis.url("machine");
    let fake = server(Duration::from_millis(50));
    let http = HttpServer::start(fake.clone()).expect("start the token server");
    Store::redis(&url)
        .expect("url")
        .save(&session(&http.token_endpoint(), SECRET_VAR))
        .expect("save");

    let tokens = tokens_from_processes(NAME, &url, 8);
    assert_eq!(tokens.len(), 8 * THREADS);
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    let c = fake.counters();
    assert_eq!(c.client_credentials_requests, 1, "{c:?}");
    let stored = Store::redis(&url)
        .expect("url")
        .load()
        .expect("load")
        .expect("stored");
    assert_eq!(stored.access_token().secret(), tokens[0]);
    let data = redis.cmd(&["HGET", "{credlock:machine}:session", "data"]);
    assert!(
        data.contains(SECRET_VAR) && !data.contains(SECRET),
        "{data}"
    );
}

fn on_fake(path: &std::path::Path, fake: &Arc<FakeServer>) -> Store {
    Store::new(path).with_transport(Arc::new(FakeTransport::new(fake.clone())))
}

/// Failure table: a client-credentials session whose secret variable is not set
#[test]
fn a_missing_secret_variable_is_a_configuration_error_naming_it_and_nothing_is_sent() {
    let fake = server(Duration::ZERO);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("machine.json");
    let var = "CREDLOCK_TEST_CC_SECRET_NEVER_SET";
    let store = on_fake(&path, &fake);
    store.save(&session(TOKEN_ENDPOINT, var)).expect("save");
    let before = std::fs::read(&path).expect("read");

    let err = store.access_token().unwrap_err();
    assert!(
        matches!(&err, Error::MissingClientSecret { variable, .. } if variable == var),
        "{err:?}"
    );
    assert!(err.is_configuration() && !err.is_transient() && !err.needs_login());
    assert!(err.to_string().contains(var), "{err}");
    assert_eq!(fake.counters().client_credentials_requests, 0);
    assert_eq!(std::fs::read(&path).expect("read"), before);
}

/// Failure table: `invalid_client` or `unauthorized_client` to a client-credentials request
#[test]
fn invalid_client_and_unauthorized_client_keep_the_client_credentials_session() {
    if !in_child_with_secret(
        "client_credentials::invalid_client_and_unauthorized_client_keep_the_client_credentials_session",
    ) {
        return;
    }
    let fake = server(Duration::ZERO);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("machine.json");
    let store = on_fake(&path, &fake);
    store
        .save(&session(TOKEN_ENDPOINT, SECRET_VAR))
        .expect("save");
    let before = std::fs::read(&path).expect("read");
    for (status, code) in [(401, "invalid_client"), (400, "unauthorized_client")] {
        fake.push_failure(Failure::Status {
            status,
            body: format!(r#"{{"error":"{code}"}}"#),
            retry_after: None,
        });
        let err = store.access_token().unwrap_err();
        assert!(
            err.is_configuration() && !err.needs_login() && !err.is_transient(),
            "{code}: {err:?}"
        );
        assert_eq!(std::fs::read(&path).expect("read"), before, "{code}");
    }
    // Then the server takes the client again: the session was there all along.
    let token = store.access_token().expect("a token");
    assert!(fake.is_access_token_valid(token.secret()));
    assert_eq!(fake.counters().client_credentials_requests, 3);
}

/// Failure table: `invalid_grant` to a client-credentials request
#[test]
fn invalid_grant_to_a_client_credentials_request_keeps_the_session_without_a_fallback() {
    if !in_child_with_secret(
        "client_credentials::invalid_grant_to_a_client_credentials_request_keeps_the_session_without_a_fallback",
    ) {
        return;
    }
    let fake = server(Duration::ZERO);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("machine.json");
    let store = on_fake(&path, &fake);
    store
        .save(&session(TOKEN_ENDPOINT, SECRET_VAR))
        .expect("save");
    let before = std::fs::read(&path).expect("read");
    fake.push_failure(Failure::Status {
        status: 400,
        body: r#"{"error":"invalid_grant"}"#.into(),
        retry_after: None,
    });
    let err = store.access_token().unwrap_err();
    assert!(
        matches!(err, Error::Rejected { status: 400, .. }),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), before);
    assert_eq!(fake.counters().client_credentials_requests, 1);
}

/// Failure table: 5xx or a network error to a client-credentials request
#[test]
fn a_5xx_or_a_network_error_to_a_client_credentials_request_is_transient_and_keeps_the_session() {
    if !in_child_with_secret(
        "client_credentials::a_5xx_or_a_network_error_to_a_client_credentials_request_is_transient_and_keeps_the_session",
    ) {
        return;
    }
    let fake = server(Duration::ZERO);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("machine.json");
    let store = on_fake(&path, &fake);
    store
        .save(&session(TOKEN_ENDPOINT, SECRET_VAR))
        .expect("save");
    let before = std::fs::read(&path).expect("read");
    fake.push_failure(Failure::Status {
        status: 503,
        body: String::new(),
        retry_after: None,
    });
    fake.push_failure(Failure::Transport(
        credlock::transport::TransportError::Connect("connection reset".into()),
    ));
    for _ in 0..2 {
        let err = store.access_token().unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert_eq!(std::fs::read(&path).expect("read"), before);
    }
}

/// A client-credentials session renews at every expiry, once, and keeps no refresh token
/// even if the server sends one.
#[test]
fn a_client_credentials_session_renews_once_per_expiry() {
    if !in_child_with_secret(
        "client_credentials::a_client_credentials_session_renews_once_per_expiry",
    ) {
        return;
    }
    let fake = server(Duration::ZERO);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("machine.json");
    let store = on_fake(&path, &fake);
    store
        .save(&session(TOKEN_ENDPOINT, SECRET_VAR))
        .expect("save");
    let first = store.access_token().expect("a token");
    assert_eq!(
        store.access_token().expect("a token").secret(),
        first.secret()
    );
    assert_eq!(fake.counters().client_credentials_requests, 1);
    let stored = store.load().expect("load").expect("stored");
    assert_eq!(stored.version(), 2);
    assert!(stored.refresh_token().secret().is_empty());
    assert_eq!(
        stored
            .client_credentials_grant()
            .map(ClientCredentials::secret_env),
        Some(SECRET_VAR)
    );
    // Expired: the next use renews it, once.
    let expired = stored.with_expires_at(SystemTime::now() - Duration::from_secs(1));
    store.save(&expired).expect("save");
    let second = within(Duration::from_secs(30), move || {
        store.access_token().expect("a token").secret().to_owned()
    });
    assert_ne!(second, first.secret());
    assert_eq!(fake.counters().client_credentials_requests, 2);
}

/// The fence, compared on the access token that was stale: a holder whose guard was taken
/// over while its client-credentials request was in flight, and another holder saved a newer
/// token meanwhile, cannot save its own over it (both sessions have the same, empty, refresh
/// token: comparing that would let it).
#[cfg(all(unix, feature = "redis"))]
#[test]
fn a_client_credentials_holder_whose_guard_was_taken_over_cannot_save_over_the_newer_token() {
    if !in_child_with_secret(
        "client_credentials::a_client_credentials_holder_whose_guard_was_taken_over_cannot_save_over_the_newer_token",
    ) {
        return;
    }
    let redis = crate::common::redis::RedisServer::start(None);
    let url = redis.url("cc-fence");
    let fake = server(Duration::ZERO);
    let stale = session(TOKEN_ENDPOINT, SECRET_VAR);
    Store::redis(&url).expect("url").save(&stale).expect("save");
    let newer = stale.refreshed(
        credlock::TokenResponse::builder(Secret::new("at-from-the-other-holder"))
            .expires_in(Duration::from_secs(3600))
            .build(),
        SystemTime::now(),
    );
    {
        let (url, newer, port) = (url.clone(), newer.clone(), redis.port);
        let done = std::sync::atomic::AtomicBool::new(false);
        fake.on_refresh(move |_| {
            if done.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            // What the guard's TTL running out and another instance taking it would do.
            let other = crate::common::redis::RedisServer::client(port, None);
            other(&["DEL", "{credlock:cc-fence}:guard"]);
            Store::redis(&url)
                .expect("url")
                .save(&newer)
                .expect("the other holder saves");
        });
    }
    let store = Store::redis(&url)
        .expect("url")
        .with_transport(Arc::new(FakeTransport::new(fake.clone())));
    let err = within(Duration::from_secs(30), move || store.access_token()).expect_err("fenced");
    match &err {
        Error::NotSaved { source, .. } => {
            assert!(matches!(**source, Error::LeaseLost { .. }), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
    let stored = Store::redis(&url)
        .expect("url")
        .load()
        .expect("load")
        .expect("kept");
    assert_eq!(stored.access_token().secret(), "at-from-the-other-holder");
    assert_eq!(fake.counters().client_credentials_requests, 1);
}
