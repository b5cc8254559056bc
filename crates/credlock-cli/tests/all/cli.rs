//! The `credlock` binary as a user drives it: exit codes, output, no secrets, the race demo.

use std::process::{Command, Output};

use credlock::Store;
use credlock_test::{FakeServer, HttpServer, ReusePolicy};

use crate::common::{credlock, run_with_stdin};

fn run(cmd: Command) -> Output {
    run_with_stdin(cmd, b"")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn the_race_demo_with_the_lock_sends_one_refresh_and_keeps_the_session_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(credlock(
        &dir.path().join("unused.json"),
        &["race", "--processes", "8", "--rounds", "2", "--json"],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json(&out);
    assert_eq!(r["refresh_requests"], 2, "{r}");
    assert_eq!(r["invalid_grant_responses"], 0, "{r}");
    assert_eq!(r["processes_ok"], 16, "{r}");
    assert_eq!(r["processes_failed"], 0, "{r}");
    assert_eq!(r["distinct_access_tokens"], 2, "{r}");
    assert_eq!(r["session_alive"], true, "{r}");
    assert_eq!(r["store_parses"], true, "{r}");
    assert_eq!(r["lock_mode"], "auto");
    assert_eq!(r["server_policy"], "revoke-grant");
    for key in ["wall_ms", "p50_ms", "p99_ms", "processes", "rounds"] {
        assert!(r[key].is_number(), "{key} in {r}");
    }
}

#[test]
fn without_the_lock_a_rejecting_server_is_survived_by_the_fallback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(credlock(
        &dir.path().join("unused.json"),
        &[
            "race",
            "--compare",
            "--server",
            "reject-only",
            "--processes",
            "8",
            "--latency-ms",
            "50",
            "--json",
        ],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = json(&out);
    let off = &rows[1];
    assert_eq!(off["lock_mode"], "off", "{rows}");
    assert_eq!(off["processes_failed"], 0, "{off}");
    assert_eq!(off["session_alive"], true, "{off}");
    assert_eq!(off["store_parses"], true, "{off}");
    assert!(
        off["refresh_requests"].as_u64().expect("n") > 1,
        "the processes did race: {off}"
    );
}

#[test]
fn without_the_lock_a_grant_revoking_server_logs_everybody_out_and_the_demo_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(credlock(
        &dir.path().join("unused.json"),
        &[
            "race",
            "--compare",
            "--processes",
            "8",
            "--latency-ms",
            "100",
        ],
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the auto row holds: {text}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("DEAD"), "{text}");
    assert!(text.contains("This is why the lock exists"), "{text}");
}

#[test]
fn import_token_status_logout_round_trip_with_exit_codes_and_no_secrets() {
    let fake = FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .build();
    let http = HttpServer::start(fake.clone()).expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("nested").join("session.json");

    let out = run(credlock(&store, &["token"]));
    assert_eq!(out.status.code(), Some(3), "no session: login required");
    assert!(String::from_utf8_lossy(&out.stderr).contains("session.json"));

    let login = fake.seed();
    let mut response: serde_json::Value = serde_json::from_slice(&login.to_json()).expect("json");
    response["expires_in"] = 0.into(); // already expired: the first `token` refreshes
    let token_endpoint = http.token_endpoint();
    let revocation_endpoint = http.revocation_endpoint();
    let out = run_with_stdin(
        credlock(
            &store,
            &[
                "import",
                "--token-endpoint",
                &token_endpoint,
                "--client-id",
                credlock_test::TEST_CLIENT_ID,
                "--revocation-endpoint",
                &revocation_endpoint,
            ],
        ),
        response.to_string().as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(credlock(&store, &["token", "--json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = json(&out);
    assert_eq!(t["refreshed"], true);
    assert_eq!(t["token_type"], "Bearer");
    assert!(t["expires_at"].as_str().expect("rfc3339").ends_with('Z'));
    let access = t["access_token"].as_str().expect("token").to_owned();
    assert!(fake.is_access_token_valid(&access));

    let out = run(credlock(&store, &["token"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{access}\n"),
        "plain output is the token and a newline"
    );
    assert_eq!(fake.counters().refresh_requests, 1);

    // An API answered 401 to that token: report it; twice, as two processes would.
    let mut fresh = Vec::new();
    for _ in 0..2 {
        let out = run_with_stdin(
            credlock(&store, &["token", "--rejected-on-stdin"]),
            format!("{access}\n").as_bytes(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fresh.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    assert_ne!(fresh[0], access, "a new token after the rejection");
    assert_eq!(
        fresh[0], fresh[1],
        "the second report found it already replaced"
    );
    assert!(fake.is_access_token_valid(&fresh[0]));
    assert_eq!(
        fake.counters().refresh_requests,
        2,
        "one refresh for both reports"
    );
    let access = fresh[0].clone();

    let stored = Store::new(&store).load().expect("load").expect("session");
    let secrets = [
        access.clone(),
        stored.refresh_token().secret().to_owned(),
        login.refresh_token().expect("rt").secret().to_owned(),
    ];
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["doctor"],
        &["doctor", "--json"],
    ] {
        let out = run(credlock(&store, args));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for s in &secrets {
            assert!(
                !all.contains(s.as_str()),
                "{args:?} printed a secret: {all}"
            );
        }
    }
    let status = json(&run(credlock(&store, &["status", "--json"])));
    assert_eq!(status["present"], true);
    // Windows has no mode bits: the profile directory's ACL protects the file.
    let expected_mode = if cfg!(unix) {
        "0600".into()
    } else {
        serde_json::Value::Null
    };
    assert_eq!(status["file_mode"], expected_mode);
    assert_eq!(status["client_id"], credlock_test::TEST_CLIENT_ID);
    assert_eq!(status["token_endpoint"], token_endpoint.as_str());
    assert_eq!(status["has_refresh_token"], true);
    assert_eq!(status["protection"], "none");
    assert!(
        status["lock_mode"]
            .as_str()
            .expect("lock")
            .starts_with("auto")
    );
    let doctor = json(&run(credlock(&store, &["doctor", "--json"])));
    let names: Vec<&str> = doctor["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["check"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["store", "protection", "permissions", "lock", "filesystem"]
    );
    assert_eq!(doctor["protection"], "none");

    let out = run(credlock(&store, &["logout", "--revoke", "--json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = json(&out);
    assert_eq!(l["deleted"], true);
    assert_eq!(l["revoked"], true);
    assert!(
        !fake.is_live(stored.refresh_token().secret()),
        "revoked at the server"
    );
    assert_eq!(run(credlock(&store, &["token"])).status.code(), Some(3));
}

#[test]
fn a_server_that_cannot_be_reached_is_exit_code_4_and_keeps_the_session() {
    let fake = FakeServer::builder().build();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let session = fake
        .seed_session(&format!("http://127.0.0.1:{port}/token"))
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    Store::new(&store).save(&session).expect("save");
    let before = std::fs::read(&store).expect("read");
    let out = run(credlock(&store, &["token"]));
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("session.json"), "{stderr}");
    assert_eq!(std::fs::read(&store).expect("read"), before);
}

#[test]
fn usage_errors_are_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s.json");
    assert_eq!(
        run(credlock(&store, &["--lock", "sideways", "token"]))
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(credlock(&store, &["frobnicate"])).status.code(),
        Some(2)
    );
    let out = run(credlock(
        &store,
        &[
            "import",
            "--token-endpoint",
            "https://as.example/t",
            "--client-id",
            "c",
            "--auth",
            "basic",
        ],
    ));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's "With `--json`, a failure is one object on stdout too", for usage errors too:
/// one that clap detects (an unknown lock mode, a bad flag value) must not leave clap's text
/// on stderr as the only answer.
#[test]
fn usage_errors_with_json_are_one_object_on_stdout() {
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

/// A mistyped `CREDLOCK_FS_KIND` is not silently replaced by detection (which could leave a
/// `nolock` NFS home without its lease): every command refuses it as a usage error that
/// lists the kinds (docs/filesystems.md, "Override"); `cifs` is the documented alias of `smb`.
#[test]
fn an_unknown_credlock_fs_kind_is_a_usage_error_that_lists_the_kinds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    for args in [
        &["token"][..],
        &["status"],
        &["doctor"],
        &["token", "--json"],
    ] {
        let mut cmd = credlock(&store, args);
        cmd.env("CREDLOCK_FS_KIND", "nfs-nolok");
        let out = run(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("CREDLOCK_FS_KIND") && stderr.contains("nfs-nolok"),
            "{stderr}"
        );
        assert!(
            stderr.contains("nfs-nolock, smb"),
            "lists the kinds: {stderr}"
        );
        if args.contains(&"--json") {
            assert_eq!(json(&out)["error"]["kind"], "usage");
        }
    }
    let mut status = credlock(&store, &["status", "--json"]);
    status.env("CREDLOCK_FS_KIND", "cifs");
    assert_eq!(json(&run(status))["filesystem"], "smb");
}

/// Failure table: locks do not reach other machines (detected), mode `auto`
#[test]
fn on_a_filesystem_whose_locks_do_not_cross_machines_auto_adds_the_lease_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    let mut status = credlock(&store, &["status", "--json"]);
    status.env("CREDLOCK_FS_KIND", "nfs-nolock");
    let s = json(&run(status));
    assert_eq!(s["filesystem"], "nfs-nolock");
    assert_eq!(s["lock_mode"], "auto", "{s}");
    assert_eq!(s["lock_degraded"], false, "the lease guards it: {s}");
    let reason = s["lock_reason"].as_str().expect("reason");
    assert!(reason.contains("lease"), "{reason}");

    let mut race = credlock(&store, &["race", "--processes", "8", "--json"]);
    race.env("CREDLOCK_FS_KIND", "nfs-nolock");
    let r = json(&run(race));
    assert_eq!(
        (
            r["refresh_requests"].as_u64(),
            r["invalid_grant_responses"].as_u64()
        ),
        (Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(r["processes_failed"], 0, "{r}");
    assert_eq!(r["session_alive"], true, "{r}");

    let mut race = credlock(
        &store,
        &["--lock", "lease", "race", "--processes", "8", "--json"],
    );
    race.env("CREDLOCK_FS_KIND", "local");
    let r = json(&run(race));
    assert_eq!(r["lock_mode"], "lease");
    assert_eq!(
        (
            r["refresh_requests"].as_u64(),
            r["processes_failed"].as_u64()
        ),
        (Some(1), Some(0)),
        "{r}"
    );
}

/// Where the lease is in force (`auto` on a filesystem whose locks stay on one machine, or
/// `--lock lease` anywhere), a refresh is guarded across machines: it says nothing on stderr
/// without `-v` (a kubectl plugin or git helper would put it in the user's terminal), `-v`
/// names the lease, and `status`/`doctor` call the protection healthy, with what it relies
/// on (clocks within the lease's tolerance).
#[test]
fn a_refresh_guarded_by_the_lease_is_silent_without_verbose_and_doctor_calls_it_ok() {
    for (mode, kind) in [
        ("auto", "nfs-nolock"),
        ("auto", "smb"),
        ("auto", "fuse"),
        ("lease", "nfs-nolock"),
        ("lease", "local"),
    ] {
        for verbose in [false, true] {
            let fake = FakeServer::builder().build();
            let http = HttpServer::start(fake.clone()).expect("server");
            let dir = tempfile::tempdir().expect("tempdir");
            let store = dir.path().join("session.json");
            let session = fake
                .seed_session(&http.token_endpoint())
                .expect("seed")
                .with_expires_at(std::time::SystemTime::now());
            Store::new(&store).save(&session).expect("save");
            let mut args = vec!["--lock", mode, "token"];
            if verbose {
                args.push("-v");
            }
            let mut cmd = credlock(&store, &args);
            cmd.env("CREDLOCK_FS_KIND", kind);
            let out = run(cmd);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{mode} on {kind}: {stderr}");
            assert_eq!(fake.counters().refresh_requests, 1, "{mode} on {kind}");
            if verbose {
                assert!(
                    stderr.contains("lease") && !stderr.contains("warning"),
                    "{mode} on {kind}, -v names the lease: {stderr}"
                );
            } else {
                assert_eq!(stderr, "", "{mode} on {kind}: nothing on stderr");
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("session.json");
        let mut status = credlock(&store, &["--lock", mode, "status", "--json"]);
        status.env("CREDLOCK_FS_KIND", kind);
        let s = json(&run(status));
        assert_eq!(s["lock_degraded"], false, "{mode} on {kind}: {s}");
        let mut doctor = credlock(&store, &["--lock", mode, "doctor", "--json"]);
        doctor.env("CREDLOCK_FS_KIND", kind);
        let d = json(&run(doctor));
        let fs = d["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["check"] == "filesystem"))
            .unwrap_or_else(|| panic!("a filesystem check: {d}"));
        assert_eq!(fs["level"], "ok", "{mode} on {kind}: {fs}");
        let detail = fs["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("lease") && detail.contains("clock"),
            "{mode} on {kind}, says what the lease relies on: {detail}"
        );
        assert!(!detail.contains("degraded"), "{detail}");
    }
}

/// Locks off, or an advisory lock alone where locks do not cross machines, really can let two
/// machines refresh at once: `doctor` warns, and says what to do.
#[test]
fn doctor_warns_where_no_guard_reaches_other_machines_and_names_the_fix() {
    for (mode, kind) in [("advisory", "nfs-nolock"), ("off", "local")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("session.json");
        let mut status = credlock(&store, &["--lock", mode, "status", "--json"]);
        status.env("CREDLOCK_FS_KIND", kind);
        assert_eq!(
            json(&run(status))["lock_degraded"],
            true,
            "{mode} on {kind}"
        );
        let mut doctor = credlock(&store, &["--lock", mode, "doctor", "--json"]);
        doctor.env("CREDLOCK_FS_KIND", kind);
        let d = json(&run(doctor));
        let fs = d["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["check"] == "filesystem"))
            .unwrap_or_else(|| panic!("a filesystem check: {d}"));
        assert_eq!(fs["level"], "warn", "{mode} on {kind}: {fs}");
        let detail = fs["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("--lock auto") || detail.contains("--lock lease"),
            "{mode} on {kind}, names the fix: {detail}"
        );
    }
}

#[test]
fn a_refresh_token_refused_with_invalid_grant_is_reported_once() {
    let fake = FakeServer::builder().build();
    let http = HttpServer::start(fake.clone()).expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    let session = fake
        .seed_session(&http.token_endpoint())
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    Store::new(&store).save(&session).expect("save");
    fake.revoke_grant_of(session.refresh_token().secret());
    let out = run(credlock(&store, &["token"]));
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one message for one refusal: {stderr}");
    assert!(
        lines[0].contains("log in again") && lines[0].contains("the stale session was removed"),
        "{stderr}"
    );
    assert!(!store.exists());
}

#[test]
fn a_token_endpoint_beside_an_issuer_is_a_usage_error_not_silently_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(credlock(
        &dir.path().join("session.json"),
        &[
            "login",
            "--issuer",
            "http://127.0.0.1:9",
            "--token-endpoint",
            "http://127.0.0.1:9/token",
            "--client-id",
            "c",
            "--device",
        ],
    ));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not both"), "{stderr}");
}

/// Every `CREDLOCK_*` variable the CLI reads counts as unset when it is empty: the defaults
/// apply, nothing is a usage error.
#[test]
fn an_empty_credlock_variable_is_the_same_as_an_unset_one() {
    let fake = FakeServer::builder().build();
    let http = HttpServer::start(std::sync::Arc::clone(&fake)).expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s.json");
    let session = fake
        .seed_session(&http.token_endpoint())
        .expect("seed session");
    Store::new(&store).save(&session).expect("save");
    for var in [
        "CREDLOCK_PROFILE",
        "CREDLOCK_LOCK",
        "CREDLOCK_MARGIN",
        "CREDLOCK_ACCESS_TOKEN",
        "CREDLOCK_FS_KIND",
        "CREDLOCK_PEAK_RSS",
    ] {
        let mut cmd = credlock(&store, &["token"]);
        cmd.env(var, "");
        let out = run(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{var}=: {stderr}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            session.access_token().secret(),
            "{var}="
        );
        assert!(stderr.is_empty(), "{var}=: {stderr}");
    }
    // An empty CREDLOCK_STORE (and CREDLOCK_PROFILE) falls back to the default file.
    let home = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_credlock"));
    cmd.arg("status")
        .env("CREDLOCK_STORE", "")
        .env("CREDLOCK_PROFILE", "")
        .env("XDG_CONFIG_HOME", home.path())
        .env("HOME", home.path())
        .env_remove("CREDLOCK_ACCESS_TOKEN");
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "no session at the default: {stderr}"
    );
}

/// `credlock token` run while the test holds the session's lock for `held`, with `args`
/// before `token`: its stderr, after it succeeded.
fn token_behind_a_held_lock(held: std::time::Duration, args: &[&str]) -> String {
    let fake = FakeServer::builder().build();
    let http = HttpServer::start(std::sync::Arc::clone(&fake)).expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s.json");
    let session = fake
        .seed_session(&http.token_endpoint())
        .expect("seed session")
        .with_expires_at(std::time::SystemTime::now());
    Store::new(&store).save(&session).expect("save");
    let lock_path = crate::common::lock_path(&store);
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .expect("open lock file");
    let mut holder = fd_lock::RwLock::new(lock);
    let guard = holder.try_write().expect("hold the lock");
    let mut full = args.to_vec();
    full.push("token");
    let child = credlock(&store, &full)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(held);
    drop(guard);
    let out = crate::common::finish(child, std::time::Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

/// Waiting for the lock is normal under contention: a short wait is silent (a kubectl or git
/// user must not see a line at every expiry); one of a second or more is said once, and
/// `-v` says every wait.
#[test]
fn a_short_lock_wait_is_silent_a_long_one_is_said_once_and_verbose_says_every_wait() {
    let short = token_behind_a_held_lock(std::time::Duration::from_millis(300), &[]);
    assert!(!short.contains("waiting for file lock"), "{short}");
    let verbose = token_behind_a_held_lock(std::time::Duration::from_millis(300), &["-v"]);
    assert_eq!(
        verbose.matches("Blocking waiting for file lock").count(),
        1,
        "{verbose}"
    );
    let long = token_behind_a_held_lock(std::time::Duration::from_millis(1800), &[]);
    assert_eq!(long.matches("waiting for file lock").count(), 1, "{long}");
}

/// `token --login` with the login flags a kubeconfig or a script gives: explicit endpoints,
/// the paste flow (which would print its URL on stderr if a login started).
fn token_login(store: &std::path::Path, extra: &[&str]) -> Command {
    let mut args = vec![
        "token",
        "--login",
        "--client-id",
        "cli",
        "--token-endpoint",
        "https://as.example/token",
        "--authorization-endpoint",
        "https://as.example/authorize",
        "--paste",
    ];
    args.extend(extra);
    let mut cmd = credlock(store, &args);
    cmd.env_remove("KUBERNETES_EXEC_INFO");
    cmd
}

/// `token --login` is `token` when no login is needed: `--format`, `--out` and `--json`
/// shape the output exactly as they do without `--login`.
#[test]
fn token_login_honours_format_and_out_when_the_session_is_valid() {
    let fake = FakeServer::builder().build();
    let http = HttpServer::start(std::sync::Arc::clone(&fake)).expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s.json");
    let session = fake
        .seed_session(&http.token_endpoint())
        .expect("seed session");
    Store::new(&store).save(&session).expect("save");
    let token = session.access_token().secret().to_owned();

    let out = run(token_login(&store, &["--format", "exec-credential"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["kind"], "ExecCredential", "{v}");
    assert_eq!(v["status"]["token"], token.as_str());

    let out = run(token_login(&store, &["--format", "header"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("Authorization: Bearer {token}")
    );

    let file = dir.path().join("token.txt");
    let out = run(token_login(
        &store,
        &["--out", file.to_str().expect("utf-8")],
    ));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("token file").trim(),
        token
    );
}

/// With `CREDLOCK_ACCESS_TOKEN` set, the store is not used: `token --login` hands out the
/// override in the format asked for and starts no login, even with no session stored.
#[test]
fn token_login_with_the_ci_override_starts_no_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("none.json");
    for (extra, expected) in [
        (vec![], "ci-token".to_owned()),
        (
            vec!["--format", "header"],
            "Authorization: Bearer ci-token".to_owned(),
        ),
    ] {
        let mut cmd = token_login(&store, &extra);
        cmd.env("CREDLOCK_ACCESS_TOKEN", "ci-token");
        let out = run(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
        assert!(
            !stderr.contains("open this URL"),
            "a login started: {stderr}"
        );
    }
    assert!(!store.exists());
}

/// `exec` without `--` before its command is a usage error whose text shows where the
/// command goes (`credlock exec [OPTIONS] -- COMMAND ARGS…`), not only "unexpected argument".
#[test]
fn exec_without_the_double_dash_suggests_where_the_command_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("none.json");
    for (args, command) in [
        (&["exec", "sh", "-c", "true"][..], "sh"),
        (&["exec", "--env", "TOKEN", "sh", "-c", "true"][..], "sh"),
        (&["--json", "exec", "printenv"][..], "printenv"),
    ] {
        let out = run(credlock(&store, args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("credlock exec [OPTIONS] -- COMMAND ARGS"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("credlock exec -- {command}")),
            "{args:?}, names the fix with its command: {stderr}"
        );
    }
    assert!(!store.exists());
}

/// Client authentication is one option with one name on `import` and `login`,
/// `--client-auth` (basic, post or none), with `--auth` accepted as its alias on both; a
/// `--client-secret-env` without it means basic on both (it used to be ignored by `import`).
#[test]
fn client_auth_and_auth_are_one_option_on_import_and_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let response =
        br#"{"access_token":"a","refresh_token":"r","token_type":"Bearer","expires_in":3600}"#;
    for (flags, expected) in [
        (&["--client-auth", "post"][..], "client_secret_post"),
        (&["--auth", "post"][..], "client_secret_post"),
        (&[][..], "client_secret_basic"),
        (&["--client-auth", "basic"][..], "client_secret_basic"),
    ] {
        let store = dir.path().join(format!("{}.json", flags.join("_")));
        let mut import = credlock(
            &store,
            &[
                "import",
                "--token-endpoint",
                "https://as.example/t",
                "--client-id",
                "c",
                "--client-secret-env",
                "CREDLOCK_TEST_CLIENT_SECRET",
            ],
        );
        import
            .args(flags)
            .env("CREDLOCK_TEST_CLIENT_SECRET", "s3cret");
        let out = run_with_stdin(import, response);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = json(&run(credlock(&store, &["status", "--json"])));
        assert_eq!(status["client_auth"], expected, "{flags:?}");
    }
    let store = dir.path().join("public.json");
    let mut import = credlock(
        &store,
        &[
            "import",
            "--token-endpoint",
            "https://as.example/t",
            "--client-id",
            "c",
            "--auth",
            "none",
        ],
    );
    import.env_remove("CREDLOCK_TEST_CLIENT_SECRET");
    assert_eq!(run_with_stdin(import, response).status.code(), Some(0));
    let status = json(&run(credlock(&store, &["status", "--json"])));
    assert_eq!(status["client_auth"], "none");

    // login takes both names too: parsing passes, and the login stops at the secret missing
    // from the environment (a usage error of credlock's, before anything is sent).
    for name in ["--auth", "--client-auth"] {
        let mut login = credlock(
            &dir.path().join("login.json"),
            &[
                "login",
                "--issuer",
                "https://as.example",
                "--client-id",
                "c",
                name,
                "post",
                "--client-secret-env",
                "CREDLOCK_TEST_UNSET_SECRET",
                "--paste",
            ],
        );
        login.env_remove("CREDLOCK_TEST_UNSET_SECRET");
        let out = run(login);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains("CREDLOCK_TEST_UNSET_SECRET is not set"),
            "{name}: {stderr}"
        );
    }
}

/// Every `CREDLOCK_*` name quoted in `dir`'s Rust files, recursively.
fn credlock_variables_in(dir: &std::path::Path, found: &mut std::collections::BTreeSet<String>) {
    for entry in std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry"))
    {
        let path = entry.path();
        if path.is_dir() {
            credlock_variables_in(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read");
            for (at, _) in text.match_indices("\"CREDLOCK_") {
                let name: String = text[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                if text[at + 1 + name.len()..].starts_with('"') {
                    found.insert(name);
                }
            }
        }
    }
}

/// The suite's `credlock()` clears every `CREDLOCK_*` variable the library and the binaries
/// read (found in their sources), so that one set in the shell that runs the tests (an
/// access-token override, a profile, a keychain timeout) cannot change what a test sees.
#[test]
fn the_suites_credlock_command_clears_every_credlock_variable_the_code_reads() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut read = std::collections::BTreeSet::new();
    credlock_variables_in(&root.join("src"), &mut read);
    credlock_variables_in(&root.join("crates/credlock-cli/src"), &mut read);
    assert!(read.contains("CREDLOCK_STORE"), "{read:?}");
    let cmd = credlock(std::path::Path::new("unused.json"), &["status"]);
    let cleared: std::collections::BTreeSet<String> = cmd
        .get_envs()
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    let missing: Vec<&String> = read.difference(&cleared).collect();
    assert!(
        missing.is_empty(),
        "common::credlock() leaves {missing:?} to the caller's environment"
    );
}
