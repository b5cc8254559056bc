//! The `credlock` binary as a good Unix tool: closed or full stdout, JSON failures, no files
//! from read-only commands, exit codes of `status`, and `-v` telling what happened.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use credlock::Store;
use credlock_test::{FakeServer, HttpServer, ReusePolicy};

use crate::common::{credlock, finish, run_with_stdin};

fn run(cmd: Command) -> Output {
    run_with_stdin(cmd, b"")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A valid session at `store`, refreshed at `http`'s token endpoint.
fn seed(fake: &FakeServer, http: &HttpServer, store: &std::path::Path) -> credlock::Session {
    let session = fake.seed_session(&http.token_endpoint()).expect("seed");
    Store::new(store).save(&session).expect("save");
    session
}

#[test]
fn a_full_standard_output_is_one_error_line_and_exit_1_not_a_panic() {
    let fake = FakeServer::builder().build();
    let http = HttpServer::start(fake.clone()).expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    seed(&fake, &http, &store);
    for args in [
        &["token"][..],
        &["status"],
        &["token", "--json"],
        &["doctor"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let mut cmd = credlock(&store, args);
        cmd.stdout(full).stderr(Stdio::piped()).stdin(Stdio::null());
        let out = finish(cmd.spawn().expect("spawn"), Duration::from_secs(60));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains("standard output"), "{args:?}: {err}");
    }
}

#[test]
fn a_closed_standard_output_exits_without_a_panic() {
    let fake = FakeServer::builder().build();
    let http = HttpServer::start(fake.clone()).expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    seed(&fake, &http, &store);
    // A reader that is gone before credlock starts: its first write meets EPIPE. (The read
    // end is closed before the spawn, so no child of this process can hold it open.)
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut cmd = credlock(&store, &["status"]);
    cmd.stdout(writer)
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let out = finish(cmd.spawn().expect("spawn"), Duration::from_secs(60));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn json_failures_are_one_object_on_stdout_with_the_same_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    let out = run(credlock(&store, &["token", "--json"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", out.stdout));
    let e = &v["error"];
    assert_eq!(e["kind"], "no_session", "{v}");
    assert_eq!(e["needs_login"], true, "{v}");
    assert_eq!(e["transient"], false, "{v}");
    assert_eq!(e["exit_code"], 3, "{v}");
    assert!(
        e["message"]
            .as_str()
            .expect("message")
            .contains("session.json")
    );

    // A server that cannot be reached: transient, exit 4, in JSON too.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let session = FakeServer::builder()
        .build()
        .seed_session(&format!("http://127.0.0.1:{port}/token"))
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    Store::new(&store).save(&session).expect("save");
    let out = run(credlock(&store, &["token", "--json"]));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["error"]["kind"], "unavailable", "{v}");
    assert_eq!(v["error"]["transient"], true, "{v}");
}

#[test]
fn read_only_and_no_op_commands_create_no_directory_and_no_lock_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("not-yet");
    let store = nested.join("session.json");
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["doctor"],
        &["logout"],
        &["logout", "--revoke"],
        &["token"],
    ] {
        let out = run(credlock(&store, args));
        assert!(!nested.exists(), "{args:?} created {}", nested.display());
        assert!(out.status.code().is_some(), "{args:?}");
    }
    // The directory exists but holds no session: still nothing created in it.
    std::fs::create_dir(&nested).expect("mkdir");
    for args in [&["status"][..], &["doctor"], &["logout"], &["token"]] {
        let _ = run(credlock(&store, args));
        let left: Vec<_> = std::fs::read_dir(&nested)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
}

#[test]
fn status_exits_3_without_a_session_and_reports_the_lock_mode_as_a_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    let out = run(credlock(&store, &["status", "--json"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["present"], false, "{v}");
    assert_eq!(v["lock_mode"], "auto", "{v}");
    assert!(
        v["lock_reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{v}"
    );
    assert_eq!(run(credlock(&store, &["status"])).status.code(), Some(3));
}

#[test]
fn status_of_an_expired_token_says_how_long_ago() {
    let fake = FakeServer::builder().build();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    let session = fake
        .seed_session("http://127.0.0.1:9/token")
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now() - Duration::from_secs(12));
    Store::new(&store).save(&session).expect("save");
    let out = run(credlock(&store, &["status"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("expired 1"), "{text}");
    assert!(text.contains(" s ago"), "{text}");
    assert!(!text.contains("s left"), "no negative time left: {text}");
    let out = run(credlock(&store, &["status", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["expired"], true, "{v}");
}

#[test]
fn verbose_reports_adopting_the_session_another_process_refreshed() {
    // A slow server: the first process holds the lock while it refreshes; the second waits
    // and then uses the first one's session, and with -v it says so.
    let fake = FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .latency(Duration::from_millis(800))
        .build();
    let http = HttpServer::start(fake.clone()).expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    let session = fake
        .seed_session(&http.token_endpoint())
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    Store::new(&store).save(&session).expect("save");
    let mut first = credlock(&store, &["token"]);
    first
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let first = first.spawn().expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fake.counters().refresh_requests == 0 {
        assert!(std::time::Instant::now() < deadline, "no refresh started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = run(credlock(&store, &["-v", "token"]));
    let first = finish(first, Duration::from_secs(60));
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(first.stdout, second.stdout, "the same token");
    assert_eq!(fake.counters().refresh_requests, 1);
    let err = stderr(&second);
    assert!(err.contains("Another process refreshed"), "{err}");
}
