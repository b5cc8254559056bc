//! Against a real, widely deployed authorization server: node-oidc-provider 9.13.3
//! (`tests/e2e/oidc-server`), driven through the `credlock` binary as a user would.
//!
//! Ignored by a plain `cargo test`: they need Node.js and `npm ci` in the server's folder.
//! `.ci/run` installs both and runs them with `--ignored`; a missing prerequisite fails loudly.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use credlock::Store;
use serde_json::{Value, json};

use crate::common::{credlock, finish, released_together, run_with_stdin};

/// The server process, killed by PID on drop.
struct OidcServer {
    child: Child,
    base: String,
}

impl Drop for OidcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OidcServer {
    fn start(extra: &[&str]) -> OidcServer {
        let (child, ready) = crate::common::start_oidc_server(extra);
        let base = ready["issuer"].as_str().expect("issuer").to_owned();
        OidcServer { child, base }
    }

    fn token_endpoint(&self) -> String {
        format!("{}/token", self.base)
    }

    fn call(&self, method: &str, route: &str, body: Value) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let url = format!("{}{route}", self.base);
        let mut resp = if method == "GET" {
            agent.get(&url).call().expect("GET")
        } else {
            agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string())
                .expect("POST")
        };
        assert_eq!(resp.status().as_u16(), 200, "{route}");
        serde_json::from_slice(&resp.body_mut().read_to_vec().expect("body")).expect("json")
    }

    fn stats(&self) -> Value {
        self.call("GET", "/test/stats", Value::Null)
    }

    fn is_live(&self, refresh_token: &str) -> bool {
        self.call("POST", "/test/introspect", json!({"token": refresh_token}))["active"] == true
    }
}

/// Seeds a session for `client_id` and imports it with `auth`; the access token is expired.
fn login(
    server: &OidcServer,
    store: &Path,
    client_id: &str,
    auth: &str,
    secret: Option<&str>,
) -> Value {
    let response = server.call(
        "POST",
        "/test/seed",
        json!({"client_id": client_id, "expired_access": true}),
    );
    let mut cmd = credlock(store, &[]);
    cmd.args([
        "import",
        "--token-endpoint",
        &server.token_endpoint(),
        "--client-id",
        client_id,
        "--auth",
        auth,
    ]);
    if let Some(secret) = secret {
        cmd.args(["--client-secret-env", "E2E_CLIENT_SECRET"])
            .env("E2E_CLIENT_SECRET", secret);
    }
    let out = run_with_stdin(cmd, response.to_string().as_bytes());
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    response
}

fn stored_refresh_token(store: &Path) -> String {
    Store::new(store)
        .load()
        .expect("load")
        .expect("a session")
        .refresh_token()
        .secret()
        .to_owned()
}

#[test]
#[ignore = "needs Node.js and `npm ci` in tests/e2e/oidc-server; .ci/run runs it"]
fn sixteen_processes_refresh_once_against_node_oidc_provider() {
    let server = OidcServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    login(&server, &store, "cli-public", "none", None);
    let children: Vec<Child> = (0..16)
        .map(|_| {
            credlock(&store, &[])
                .arg("token")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let tokens: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = finish(c, Duration::from_secs(60));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "one token for all");
    let stats = server.stats();
    assert_eq!(stats["refresh_ok"], 1, "{stats}");
    assert_eq!(stats["refresh_invalid_grant"], 0, "{stats}");
    assert!(
        server.is_live(&stored_refresh_token(&store)),
        "the stored refresh token is live"
    );
}

#[test]
#[ignore = "needs Node.js and `npm ci` in tests/e2e/oidc-server; .ci/run runs it"]
fn a_thirty_second_soak_refreshes_once_per_lifetime_not_once_per_call() {
    let server = OidcServer::start(&["--access-ttl", "2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    login(&server, &store, "cli-public", "none", None);
    let end = Instant::now() + Duration::from_secs(30);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut calls = 0u32;
                while Instant::now() < end {
                    let child = credlock(&store, &[])
                        .arg("token")
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .expect("spawn");
                    let out = finish(child, Duration::from_secs(30));
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let calls: u32 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    let stats = server.stats();
    let refreshes = stats["refresh_ok"].as_u64().expect("n");
    eprintln!("soak: {calls} token calls, {refreshes} refreshes, stats {stats}");
    assert_eq!(stats["refresh_invalid_grant"], 0, "{stats}");
    // A 2 s token with the margin capped at a quarter of its lifetime is refreshed every
    // ~1.5 s: about 20 times in 30 s. One per call would be hundreds.
    assert!(
        (10..=32).contains(&refreshes),
        "{refreshes} refreshes in 30 s"
    );
    assert!(
        u64::from(calls) > 3 * refreshes,
        "{calls} calls, {refreshes} refreshes"
    );
    assert!(
        server.is_live(&stored_refresh_token(&store)),
        "the session is alive at the end"
    );
}

#[test]
#[ignore = "needs Node.js and `npm ci` in tests/e2e/oidc-server; .ci/run runs it"]
fn every_client_authentication_method_refreshes_including_a_secret_that_needs_encoding() {
    let server = OidcServer::start(&[]);
    for (client, auth, secret) in [
        ("cli-basic", "basic", Some("p@ss:w/rd+%&=?")),
        ("cli-post", "post", Some("post-secret-1")),
        ("cli-public", "none", None),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("session.json");
        login(&server, &store, client, auth, secret);
        let out = finish(
            credlock(&store, &[])
                .args(["token", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn"),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "{client}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let t: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(t["refreshed"], true, "{client}");
        assert!(server.is_live(&stored_refresh_token(&store)), "{client}");
        let session = Store::new(&store).load().expect("load").expect("session");
        assert!(
            session.extra().contains_key("id_token"),
            "{client}: the id_token survives the round trip"
        );
    }
    assert_eq!(server.stats()["refresh_ok"], 3);
}

#[test]
#[ignore = "needs Node.js and `npm ci` in tests/e2e/oidc-server; .ci/run runs it"]
fn a_grant_revoked_on_the_server_is_exit_code_3_and_the_dead_session_is_deleted() {
    let server = OidcServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    let response = login(&server, &store, "cli-public", "none", None);
    server.call(
        "POST",
        "/test/revoke-grant",
        json!({"token": response["refresh_token"]}),
    );
    let out = finish(
        credlock(&store, &[])
            .arg("token")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
        Duration::from_secs(30),
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_grant"));
    assert!(
        !store.exists(),
        "compare-and-delete removed the session that held the refused token"
    );
    assert_eq!(server.stats()["refresh_invalid_grant"], 1);
}

#[test]
#[ignore = "needs Node.js and `npm ci` in tests/e2e/oidc-server; .ci/run runs it"]
fn with_locks_off_a_real_server_revokes_the_grant_which_is_what_the_lock_prevents() {
    let server = OidcServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    login(&server, &store, "cli-public", "none", None);
    released_together(&vec![(store.as_path(), "off"); 8]);
    let stats = server.stats();
    eprintln!("locks off against node-oidc-provider: {stats}");
    assert!(
        stats["reuse_detected"].as_u64().expect("n") >= 1,
        "the processes raced: {stats}"
    );
    let alive = Store::new(&store)
        .load()
        .expect("parses")
        .is_some_and(|s| server.is_live(s.refresh_token().secret()));
    assert!(!alive, "reuse revoked the whole grant: {stats}");
}

#[test]
#[ignore = "needs Node.js and `npm ci` in tests/e2e/oidc-server; .ci/run runs it"]
fn a_server_too_slow_to_detect_reuse_forks_the_grant_without_the_lock_and_not_with_it() {
    // With 1 ms per storage call, node-oidc-provider misses concurrent reuse: two uncoordinated
    // refreshes both succeed and the grant forks into two live refresh tokens (a second real
    // server behaviour). With the lock there is only ever one refresh to fork from.
    for (lock, unlocked) in [("off", true), ("auto", false)] {
        let server = OidcServer::start(&["--slow-storage-ms", "1"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("session.json");
        login(&server, &store, "cli-public", "none", None);
        released_together(&vec![(store.as_path(), lock); 8]);
        let stats = server.stats();
        eprintln!("slow storage, lock {lock}: {stats}");
        let ok = stats["refresh_ok"].as_u64().expect("n");
        if unlocked {
            // Whether this run forked depends on how closely the processes met (the server's
            // own two-request check forks every time); that they raced does not.
            let sent = ok + stats["refresh_invalid_grant"].as_u64().expect("n");
            assert!(sent > 1, "without the lock the processes raced: {stats}");
        } else {
            assert_eq!(ok, 1, "{stats}");
            assert_eq!(stats["refresh_invalid_grant"], 0, "{stats}");
            assert!(server.is_live(&stored_refresh_token(&store)));
        }
    }
}

/// The fleet's "done when", against the real server: a session on Redis (password in the URL),
/// 96 `credlock` processes released together on its expired access token, three rounds:
/// one refresh per round, one token per round for all, no `invalid_grant`, the grant alive.
#[cfg(unix)]
#[test]
#[ignore = "needs Node.js and `npm ci` in tests/e2e/oidc-server; .ci/run runs it"]
fn ninety_six_processes_on_a_redis_store_refresh_once_per_round_against_node_oidc_provider() {
    use crate::common::redis::RedisServer;
    let server = OidcServer::start(&[]);
    let redis = RedisServer::start(Some("pw-oidc-fleet"));
    let url = redis.url("oidc");
    let store = Path::new(&url);
    login(&server, store, "cli-public", "none", None);
    for round in 1..=3u64 {
        let started = Instant::now();
        let answers = released_together(&vec![(store, "auto"); 96]);
        let tokens: Vec<&str> = answers
            .iter()
            .map(|a| a["token"].as_str().unwrap_or_else(|| panic!("{a}")))
            .collect();
        assert!(tokens.iter().all(|t| *t == tokens[0]), "round {round}");
        let stats = server.stats();
        assert_eq!(stats["refresh_ok"], round, "{stats}");
        assert_eq!(stats["refresh_invalid_grant"], 0, "{stats}");
        eprintln!(
            "node-oidc-provider, Redis store, round {round}: 96 processes, {} refreshes in all, {:?}",
            stats["refresh_ok"],
            started.elapsed()
        );
        let s = Store::redis(&url).expect("url");
        let session = s.load().expect("load").expect("stored");
        assert!(server.is_live(session.refresh_token().secret()));
        s.save(&session.with_expires_at(std::time::SystemTime::now()))
            .expect("expire it for the next round");
    }
}

/// node-oidc-provider's client-credentials grant (its machine client `cli-machine`, HTTP
/// Basic): sixteen `credlock token` processes on a session made by `credlock import --grant
/// client-credentials` make one token request, every one prints the token the provider
/// issued, and it is the one stored.
#[test]
#[ignore = "needs Node.js and `npm ci` in tests/e2e/oidc-server; .ci/run runs it"]
fn sixteen_processes_on_a_client_credentials_session_make_one_request_to_node_oidc_provider() {
    const VAR: &str = "CREDLOCK_E2E_MACHINE_SECRET";
    let server = OidcServer::start(&["--slow-storage-ms", "100"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("machine.json");
    let out = credlock(
        &store,
        &[
            "import",
            "--grant",
            "client-credentials",
            "--token-endpoint",
            &server.token_endpoint(),
            "--client-id",
            "cli-machine",
            "--client-secret-env",
            VAR,
        ],
    )
    .output()
    .expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let children: Vec<Child> = (0..16)
        .map(|_| {
            credlock(&store, &["token"])
                .env(VAR, "machine-secret-9z")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let tokens: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = finish(c, Duration::from_secs(60));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "one token for all");
    let stats = server.stats();
    assert_eq!(stats["client_credentials_requests"], 1, "{stats}");
    assert_eq!(stats["client_credentials_ok"], 1, "{stats}");
    assert!(!tokens[0].is_empty());
    let stored = Store::new(&store).load().expect("load").expect("stored");
    assert_eq!(stored.access_token().secret(), tokens[0]);
}
