//! The CLI on a session kept on Redis: `--store redis://:PASSWORD@127.0.0.1:PORT/0?key=NAME`
//! anywhere a file path goes, a real `redis-server` per test, the fake token server over
//! loopback HTTP (revoking the grant on any reuse of a refresh token).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use credlock::Store;
use credlock_test::{FakeServer, HttpServer, ReusePolicy};

use crate::common::redis::RedisServer;
use crate::common::{credlock, finish, released_together, run_with_stdin};

const PASSWORD: &str = "pw-Kx7-cli-never-shown";

fn fake(latency: Duration) -> Arc<FakeServer> {
    FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .latency(latency)
        .build()
}

fn run(cmd: std::process::Command) -> std::process::Output {
    run_with_stdin(cmd, b"")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Lets the stored session's access token expire (as time passing would).
fn expire(url: &str) {
    let store = Store::redis(url).expect("url");
    let session = store.load().expect("load").expect("stored");
    store
        .save(&session.with_expires_at(SystemTime::now()))
        .expect("save");
}

/// The "done when": 96 `credlock` processes, released at one instant on an expired
/// session kept on Redis, make one refresh per round; every process of a round gets the same
/// token; the grant stays alive across three rounds.
#[test]
fn ninety_six_processes_on_a_redis_store_make_one_refresh_per_round_and_the_grant_lives() {
    let redis = RedisServer::start(Some(PASSWORD));
    let url = redis.url("fleet-96");
    let fake = fake(Duration::from_millis(100));
    let http = HttpServer::start(fake.clone()).expect("token server");
    let seeded = fake
        .seed_session(&http.token_endpoint())
        .expect("seed")
        .with_expires_at(SystemTime::now());
    Store::redis(&url)
        .expect("url")
        .save(&seeded)
        .expect("save");
    let store = Path::new(&url);
    for round in 1..=3u64 {
        let started = Instant::now();
        let racers = vec![(store, "auto"); 96];
        let answers = released_together(&racers);
        let tokens: Vec<&str> = answers
            .iter()
            .map(|a| {
                a["token"]
                    .as_str()
                    .unwrap_or_else(|| panic!("round {round}: {a}"))
            })
            .collect();
        assert!(tokens.iter().all(|t| *t == tokens[0]), "round {round}");
        let refreshed = answers.iter().filter(|a| a["refreshed"] == true).count();
        assert_eq!(refreshed, 1, "round {round}");
        let c = fake.counters();
        assert_eq!((c.refresh_requests, c.invalid_grant), (round, 0), "{c:?}");
        assert!(fake.is_access_token_valid(tokens[0]));
        eprintln!(
            "round {round}: 96 processes, {} refresh request(s) in all, {:?}",
            c.refresh_requests,
            started.elapsed()
        );
        expire(&url);
    }
    let stored = Store::redis(&url)
        .expect("url")
        .load()
        .expect("load")
        .expect("kept");
    assert!(fake.is_live(stored.refresh_token().secret()));
    assert_eq!(fake.counters().grants_revoked, 0);
}

/// With Redis stopped, `credlock token` exits 4 (try again later) and sends nothing; after a
/// restart the AOF brings the session back and it refreshes. The password is in no output.
#[test]
fn with_redis_stopped_credlock_token_exits_4_and_after_a_restart_it_refreshes() {
    let mut redis = RedisServer::start(Some(PASSWORD));
    let url = redis.url("restart");
    let fake = fake(Duration::ZERO);
    let http = HttpServer::start(fake.clone()).expect("token server");
    let seeded = fake
        .seed_session(&http.token_endpoint())
        .expect("seed")
        .with_expires_at(SystemTime::now());
    Store::redis(&url)
        .expect("url")
        .save(&seeded)
        .expect("save");
    redis.stop();
    for json in [false, true] {
        let args: &[&str] = if json {
            &["--json", "token"]
        } else {
            &["token"]
        };
        let out = run(credlock(Path::new(&url), args));
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        assert!(!text(&out).contains(PASSWORD), "{}", text(&out));
        assert!(text(&out).contains("unavailable"), "{}", text(&out));
    }
    assert_eq!(fake.counters().refresh_requests, 0);
    redis.restart();
    let out = run(credlock(Path::new(&url), &["token"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(fake.counters().refresh_requests, 1);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(fake.is_access_token_valid(&token));
}

/// Every command on a Redis store: `import` (the key chosen by `--profile`, the password from
/// `REDISCLI_AUTH`), `token` and its formats, `status` and `doctor` (which say the server
/// persists writes, and that replication is asynchronous), `exec`, `logout --revoke`. No
/// output shows the password.
#[test]
fn every_command_works_on_a_redis_store_and_none_shows_the_password() {
    let redis = RedisServer::start(Some(PASSWORD));
    let fake = fake(Duration::ZERO);
    let http = HttpServer::start(fake.clone()).expect("token server");
    let config = tempfile::tempdir().expect("config dir");
    let bare = format!("redis://127.0.0.1:{}/0", redis.port);
    let cmd = |args: &[&str]| {
        let mut c = credlock(Path::new(&bare), &["--profile", "team"]);
        c.args(args)
            .env("REDISCLI_AUTH", PASSWORD)
            .env("XDG_CONFIG_HOME", config.path())
            .env("HOME", config.path());
        c
    };
    let mut outputs = Vec::new();

    let mut response: serde_json::Value =
        serde_json::from_slice(&fake.seed().to_json()).expect("json");
    response["expires_in"] = 0.into();
    let out = run_with_stdin(
        cmd(&[
            "import",
            "--token-endpoint",
            &http.token_endpoint(),
            "--client-id",
            credlock_test::TEST_CLIENT_ID,
            "--revocation-endpoint",
            &http.revocation_endpoint(),
        ]),
        response.to_string().as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out));
    outputs.push(text(&out));
    assert_eq!(redis.cmd(&["EXISTS", "{credlock:team}:session"]), "1");

    let out = run(cmd(&["--json", "token"]));
    assert!(out.status.success(), "{}", text(&out));
    let token: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(token["refreshed"], true);
    outputs.push(text(&out));
    let access = token["access_token"].as_str().expect("token").to_owned();

    let out = run(cmd(&["token", "--format", "header"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&access),
        "{}",
        text(&out)
    );
    outputs.push(text(&out));

    let out = run(cmd(&[
        "exec",
        "--",
        "sh",
        "-c",
        "test -n \"$BEARER_TOKEN\" && echo ran",
    ]));
    assert!(out.status.success(), "{}", text(&out));
    outputs.push(text(&out));

    let out = run(cmd(&["--json", "status"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["server_persistence"], "aof", "{status}");
    // The guard is the server's key, not a lock on a local file.
    assert!(
        status["lock_reason"]
            .as_str()
            .is_some_and(|r| r.contains("guard key on the Redis server")),
        "{status}"
    );
    assert_eq!(status["filesystem"], "unknown", "{status}");
    assert_eq!(
        status["store"],
        format!("redis://127.0.0.1:{}/0?key=team", redis.port)
    );
    outputs.push(text(&out));

    let out = run(cmd(&["doctor"]));
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("append-only file is on"), "{said}");
    assert!(said.contains("replication is asynchronous"), "{said}");
    outputs.push(said);

    let out = run(cmd(&["logout", "--revoke"]));
    assert!(out.status.success(), "{}", text(&out));
    outputs.push(text(&out));
    assert_eq!(redis.cmd(&["EXISTS", "{credlock:team}:session"]), "0");
    assert_eq!(fake.counters().grants_revoked, 1);
    let out = run(cmd(&["status"]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    // Remembered on this machine, in the configuration directory.
    assert!(
        text(&out).contains("logged out with `credlock logout --revoke`"),
        "{}",
        text(&out)
    );
    outputs.push(text(&out));

    for said in &outputs {
        assert!(!said.contains(PASSWORD), "{said}");
    }
    // Nothing was written beside the working directory as if the URL were a path.
    assert!(!Path::new("redis:").exists());
}

/// A URL naming a key and a profile naming another is a usage error, and a URL that does not
/// parse is one too, neither quoting the password.
#[test]
fn a_bad_redis_store_url_is_a_usage_error_that_does_not_quote_the_password() {
    for (url, profile) in [
        (
            format!("redis://:{PASSWORD}@127.0.0.1:1/0?key=a"),
            Some("b"),
        ),
        (format!("redis://:{PASSWORD}@127.0.0.1:port/0?key=a"), None),
        (format!("redis://:{PASSWORD}@127.0.0.1:1/0?key={{a}}"), None),
    ] {
        let mut c = credlock(Path::new(&url), &["token"]);
        if let Some(p) = profile {
            c.args(["--profile", p]);
        }
        let out = finish(
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn"),
            Duration::from_secs(30),
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(!text(&out).contains(PASSWORD), "{}", text(&out));
    }
}

/// The helpers too: `git-credential` answers the token of a session on Redis, and
/// `docker-credential-credlock` takes the Redis URL from `CREDLOCK_STORE` (the key from the
/// URL, else `CREDLOCK_PROFILE`).
#[test]
fn the_git_and_docker_helpers_answer_from_a_redis_store() {
    let redis = RedisServer::start(Some(PASSWORD));
    let fake = fake(Duration::ZERO);
    let http = HttpServer::start(fake.clone()).expect("token server");
    let url = redis.url("ci");
    let seeded = fake
        .seed_session(&http.token_endpoint())
        .expect("seed")
        .with_expires_at(SystemTime::now());
    Store::redis(&url)
        .expect("url")
        .save(&seeded)
        .expect("save");

    let out = run_with_stdin(
        credlock(
            Path::new(&url),
            &["git-credential", "--host", "git.example.com", "get"],
        ),
        b"protocol=https\nhost=git.example.com\n\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let stored = Store::redis(&url)
        .expect("url")
        .load()
        .expect("load")
        .expect("kept");
    let token = stored.access_token().secret().to_owned();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("password={token}")),
        "{}",
        text(&out)
    );

    let bare = format!("redis://:{PASSWORD}@127.0.0.1:{}/0", redis.port);
    let mut docker = std::process::Command::new(env!("CARGO_BIN_EXE_docker-credential-credlock"));
    docker
        .arg("get")
        .env("CREDLOCK_STORE", &bare)
        .env("CREDLOCK_PROFILE", "ci")
        .env("CREDLOCK_DOCKER_REGISTRIES", "registry.example.com")
        .env_remove("CREDLOCK_ACCESS_TOKEN");
    let out = run_with_stdin(docker, b"registry.example.com\n");
    assert!(out.status.success(), "{}", text(&out));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["Secret"], token.as_str());
    assert!(!text(&out).contains(PASSWORD));
    assert_eq!(fake.counters().refresh_requests, 1);
}

/// `rediss://`: the connection is TLS, and the server's certificate is checked against the
/// roots the HTTP transport trusts. With the test CA in `SSL_CERT_FILE` the session is
/// reached and refreshed; with the platform's roots alone, the same URL is a configuration
/// error (exit 5) that says the certificate is not trusted, and nothing is sent.
///
/// Failure table: `rediss://` server whose certificate the roots do not trust
#[test]
fn rediss_uses_tls_with_the_roots_of_the_http_transport() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let pki = tempfile::tempdir().expect("tempdir");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    leaf.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    let path = |name: &str| pki.path().join(name);
    std::fs::write(path("ca.pem"), ca_cert.pem()).expect("write");
    std::fs::write(path("cert.pem"), cert.pem()).expect("write");
    std::fs::write(path("key.pem"), key.serialize_pem()).expect("write");

    let redis = RedisServer::start_tls(&path("cert.pem"), &path("key.pem"));
    let tls_port = redis.tls.as_ref().expect("tls").0;
    let fake = fake(Duration::ZERO);
    let http = HttpServer::start(fake.clone()).expect("token server");
    let seeded = fake
        .seed_session(&http.token_endpoint())
        .expect("seed")
        .with_expires_at(SystemTime::now());
    Store::redis(&redis.url("tls"))
        .expect("url")
        .save(&seeded)
        .expect("save over TCP");
    let url = format!("rediss://127.0.0.1:{tls_port}/0?key=tls");

    let mut untrusted = credlock(Path::new(&url), &["token"]);
    untrusted
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    let out = run(untrusted);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("TLS"), "{}", text(&out));
    assert_eq!(fake.counters().refresh_requests, 0);

    let mut trusted = credlock(Path::new(&url), &["token"]);
    trusted.env("SSL_CERT_FILE", path("ca.pem"));
    let out = run(trusted);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(fake.counters().refresh_requests, 1);
    let stored = Store::redis(&redis.url("tls"))
        .expect("url")
        .load()
        .expect("load")
        .expect("kept");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        stored.access_token().secret()
    );
}

/// A store URL's scheme is read as URLs are, whatever its case (`REDIS://`), and `valkey://`
/// is `redis://`; a `--store` that is a URL of a scheme credlock does not know is refused,
/// unquoted, rather than taken for a file path (which would create files named after the
/// URL, password and all, and print it).
#[test]
fn a_store_url_of_any_case_is_a_server_and_one_of_an_unknown_scheme_is_refused_unquoted() {
    let redis = RedisServer::start(Some(PASSWORD));
    let fake = fake(Duration::ZERO);
    let seeded = fake.seed_session("http://127.0.0.1:1/token").expect("seed");
    Store::redis(&redis.url("cased"))
        .expect("url")
        .save(&seeded)
        .expect("save");
    let cwd = tempfile::tempdir().expect("cwd");
    let config = tempfile::tempdir().expect("config dir");
    let in_cwd = |url: &str, args: &[&str]| {
        let mut c = credlock(Path::new(url), args);
        c.current_dir(cwd.path())
            .env("XDG_CONFIG_HOME", config.path())
            .env("HOME", config.path());
        run(c)
    };
    for scheme in ["REDIS", "Redis", "valkey", "VALKEY"] {
        let url = format!(
            "{scheme}://:{PASSWORD}@127.0.0.1:{}/0?key=cased",
            redis.port
        );
        let out = in_cwd(&url, &["token"]);
        assert!(out.status.success(), "{scheme}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            seeded.access_token().secret()
        );
    }
    for url in [
        format!("http://:{PASSWORD}@127.0.0.1:{}/0?key=cased", redis.port),
        format!("memcached://:{PASSWORD}@127.0.0.1:{}/0", redis.port),
    ] {
        let out = in_cwd(&url, &["token"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(!text(&out).contains(PASSWORD), "{}", text(&out));
    }
    let left: Vec<_> = std::fs::read_dir(cwd.path()).expect("cwd").collect();
    assert!(left.is_empty(), "files made of a URL: {left:?}");
}
