//! Real processes, real HTTP (ureq), real locks: exactly one refresh for eight processes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use credlock::Store;

use crate::common::Reaped;
use credlock_test::{FakeServer, HttpServer, ReusePolicy};

const CHILD_ENV: &str = "CREDLOCK_TEST_CHILD_STORE";
const GO_ENV: &str = "CREDLOCK_TEST_CHILD_GO";

#[test]
fn eight_processes_on_one_expired_session_send_exactly_one_refresh() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        return child_process(path.into());
    }
    let fake = FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .latency(Duration::from_millis(20))
        .build();
    let http = HttpServer::start(fake.clone()).expect("start the token server");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let go = dir.path().join("go");
    let seeded = fake
        .seed_session(&http.token_endpoint())
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    Store::new(&path).save(&seeded).expect("save");

    let exe = std::env::current_exe().expect("test binary");
    let mut children: Vec<Reaped> = (0..8)
        .map(|_| {
            Reaped(
                Command::new(&exe)
                    .args([
                        "--exact",
                        "processes::eight_processes_on_one_expired_session_send_exactly_one_refresh",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_ENV, &path)
                    .env(GO_ENV, &go)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn"),
            )
        })
        .collect();
    std::fs::write(&go, b"").expect("start them together");

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tokens = Vec::new();
    for child in &mut children {
        loop {
            if child.0.try_wait().expect("wait").is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "a child hung");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut out = String::new();
        std::io::Read::read_to_string(child.0.stdout.as_mut().expect("stdout"), &mut out)
            .expect("read");
        let token = out
            .lines()
            .find_map(|l| l.split_once("TOKEN ").map(|(_, t)| t))
            .unwrap_or_else(|| panic!("a child failed: {out}"))
            .to_owned();
        tokens.push(token);
    }
    assert_eq!(tokens.len(), 8);
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    let c = fake.counters();
    assert_eq!(c.refresh_requests, 1, "{c:?}");
    assert_eq!(c.invalid_grant, 0, "{c:?}");
    let stored = Store::new(&path).load().expect("load").expect("stored");
    assert_eq!(stored.access_token().secret(), tokens[0]);
    assert!(fake.is_live(stored.refresh_token().secret()));
}

/// The child half (the same test, re-run with the store in the environment): waits for the
/// start signal, asks for a token, prints it.
fn child_process(path: std::path::PathBuf) {
    let go = std::path::PathBuf::from(std::env::var_os(GO_ENV).expect("go file"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !go.exists() {
        assert!(Instant::now() < deadline, "no start signal");
        std::thread::sleep(Duration::from_millis(1));
    }
    let token = Store::new(path).access_token().expect("a token");
    println!("TOKEN {}", token.secret());
}
