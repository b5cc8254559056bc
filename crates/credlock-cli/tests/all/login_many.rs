//! One login for many callers, end to end: eight `credlock token --login` processes on an
//! empty store, one scripted approval, one device authorization, one token for all.

use std::time::{Duration, Instant};

use crate::common::Reaped;
use crate::common::idp::{Browser, Provider, Reply, Stub, device_answer};
use crate::login_device::{spawn_device, spawn_stub_device};

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn eight_processes_needing_a_login_cause_one_login_and_print_the_same_token() {
    let p = Provider::start(&["--device-interval", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let mut children = Vec::new();
    let mut stderrs = Vec::new();
    for i in 0..8 {
        let err = dir.path().join(format!("stderr-{i}"));
        children.push(Reaped(spawn_device(
            &store,
            &err,
            &p.issuer,
            &["token", "--login"],
        )));
        stderrs.push(err);
    }
    // Exactly one process shows a code; give the others time to (wrongly) start their own.
    let start = Instant::now();
    let code = loop {
        let codes: Vec<String> = stderrs
            .iter()
            .filter_map(|e| {
                let text = std::fs::read_to_string(e).unwrap_or_default();
                text.lines()
                    .find_map(|l| l.split("enter the code ").nth(1))
                    .map(|c| c.trim().to_owned())
            })
            .collect();
        if !codes.is_empty() {
            std::thread::sleep(Duration::from_secs(2));
            break codes[0].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no process showed a code"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Browser::new().approve_device(&p.issuer, &code, false);
    let readers: Vec<_> = children
        .iter_mut()
        .map(|r| {
            let mut stdout = r.0.stdout.take().expect("stdout");
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
                buf
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, r) in children.iter_mut().enumerate() {
        let status = loop {
            if let Some(status) = r.0.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "process {i} did not finish");
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(&stderrs[i]).unwrap_or_default();
        assert!(status.success(), "process {i}: {stderr}");
    }
    let mut tokens = Vec::new();
    for reader in readers {
        let out = reader.join().expect("reader");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["saved"], true);
        tokens.push(v["access_token"].as_str().expect("token").to_owned());
    }
    assert!(tokens.iter().all(|t| t == &tokens[0]), "{tokens:?}");
    let shown = stderrs
        .iter()
        .filter(|e| {
            std::fs::read_to_string(e)
                .unwrap_or_default()
                .contains("enter the code")
        })
        .count();
    assert_eq!(shown, 1, "exactly one process logged in");
    let stats = p.stats();
    assert_eq!(stats["device_authorizations"], 1, "{stats}");
    assert_eq!(stats["device_grants"], 1, "{stats}");
    assert_eq!(stats["refresh_ok"], 0, "{stats}");
}

/// `token --login` that does log in still hands the token out as asked: with `--out FILE`
/// it goes to the file (0600), and stdout carries only the `--json` report, no token.
#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn a_token_login_that_logs_in_writes_the_token_file_it_was_asked_for() {
    let p = Provider::start(&["--device-interval", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let file = dir.path().join("bt");
    let err = dir.path().join("stderr");
    let child = spawn_device(
        &store,
        &err,
        &p.issuer,
        &["token", "--login", "--out", file.to_str().unwrap()],
    );
    let code = crate::common::idp::user_code_in(&err, Duration::from_secs(20));
    Browser::new().approve_device(&p.issuer, &code, false);
    let out = crate::common::finish(child, Duration::from_secs(30));
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(out.status.success(), "{stderr}");
    let token = credlock::Store::new(&store)
        .load()
        .unwrap()
        .expect("saved")
        .access_token()
        .secret()
        .to_owned();
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["written"], true, "{v}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&token));
}

/// An explicit `credlock login` logs in even when a routine refresh saves a rotated session
/// while it waits for the guards: adopting it would hand back the very session the user asked
/// to replace (say, to get a scope it lacks).
#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn an_explicit_login_is_not_replaced_by_a_refresh_saved_while_it_waited() {
    let p = Provider::start(&["--device-interval", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let client = credlock::Client::new(
        format!("{}/token", p.issuer),
        "cli-device",
        credlock::ClientAuth::None,
    )
    .unwrap();
    let stored = |rt: &str| {
        let body = format!(
            r#"{{"access_token":"at-{rt}","token_type":"Bearer","expires_in":3600,"refresh_token":"{rt}"}}"#
        );
        credlock::Session::from_token_response(
            client.clone(),
            credlock::TokenResponse::from_json(body.as_bytes()).unwrap(),
            std::time::SystemTime::now(),
        )
        .unwrap()
    };
    credlock::Store::new(&store)
        .save(&stored("rt-old"))
        .unwrap();

    // Another process holds the lock (a refresh in progress) when the login starts.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(crate::common::lock_path(&store))
        .unwrap();
    let mut holder = fd_lock::RwLock::new(lock);
    let guard = holder.try_write().unwrap();
    let err = dir.path().join("stderr");
    let child = spawn_device(&store, &err, &p.issuer, &["login"]);
    std::thread::sleep(Duration::from_millis(500));
    // The refresh saves its rotated session, then releases the lock.
    credlock::Store::new(&store)
        .with_lock_mode(credlock::LockMode::Off)
        .save(&stored("rt-rotated"))
        .unwrap();
    drop(guard);

    let code = crate::common::idp::user_code_in(&err, Duration::from_secs(20));
    Browser::new().approve_device(&p.issuer, &code, false);
    let out = crate::common::finish(child, Duration::from_secs(30));
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["logged_in"], true, "{v}");
    let now = credlock::Store::new(&store).load().unwrap().expect("saved");
    assert_ne!(now.refresh_token().secret(), "rt-rotated");
    assert_eq!(p.stats()["device_grants"], 1);
}

/// Four processes need a login and the server never approves: one code is shown, the
/// others report how that login ended instead of prompting again, and every process ends
/// within its own deadline (waiting counts against it).
#[test]
fn a_login_that_expires_ends_every_waiter_with_it_and_no_one_prompts_again() {
    let stub = Stub::start(|path| {
        if path == "/device" {
            device_answer("NOPE", 1)
        } else {
            Reply::Json(400, r#"{"error":"authorization_pending"}"#.into())
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let started = Instant::now();
    let mut children = Vec::new();
    let mut stderrs = Vec::new();
    for i in 0..4 {
        let err = dir.path().join(format!("stderr-{i}"));
        children.push(Reaped(spawn_stub_device(
            &store,
            &err,
            &stub,
            &["token", "--login", "--login-timeout", "6"],
        )));
        stderrs.push(err);
    }
    for (i, r) in children.iter_mut().enumerate() {
        let status = loop {
            if let Some(status) = r.0.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "process {i} did not finish"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(&stderrs[i]).unwrap_or_default();
        assert_eq!(status.code(), Some(3), "process {i}: {stderr}");
    }
    let took = started.elapsed();
    let shown: Vec<String> = stderrs
        .iter()
        .map(|e| std::fs::read_to_string(e).unwrap_or_default())
        .filter(|t| t.contains("enter the code"))
        .collect();
    assert_eq!(shown.len(), 1, "codes shown: {shown:?}");
    assert!(took < Duration::from_secs(12), "6 s logins took {took:?}");
    assert_eq!(
        stub.requests().iter().filter(|p| *p == "/device").count(),
        1,
        "{:?}",
        stub.requests()
    );
    assert!(!store.exists());
}
