//! `credlock exec`, `token --format header`, the `CREDLOCK_ACCESS_TOKEN` override and the
//! node-local token file (`token --out`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use crate::common::tools::{Backend, run_together, text};
use crate::common::{credlock, run_with_stdin};

fn run(cmd: Command) -> Output {
    run_with_stdin(cmd, b"")
}

fn with_override(mut cmd: Command, token: &str) -> Output {
    cmd.env("CREDLOCK_ACCESS_TOKEN", token);
    run_with_stdin(cmd, b"")
}

#[test]
fn exec_hands_the_token_to_the_command_and_passes_its_exit_code_through() {
    let b = Backend::expired();
    let seen = b.dir.path().join("seen");
    let script = format!("printf %s \"$BEARER_TOKEN\" > '{}'; exit 7", seen.display());
    let out = run(credlock(&b.store, &["exec", "--", "sh", "-c", &script]));
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(b.refreshes(), 1);
    assert_eq!(
        std::fs::read_to_string(&seen).expect("seen"),
        b.stored_token()
    );

    let script = format!("printf %s \"$API_TOKEN\" > '{}'", seen.display());
    let out = run(credlock(
        &b.store,
        &["exec", "--env", "API_TOKEN", "--", "sh", "-c", &script],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&seen).expect("seen"),
        b.stored_token()
    );
    assert!(!text(&out.stdout).contains(&b.stored_token()));
    assert!(!text(&out.stderr).contains(&b.stored_token()));
}

#[test]
fn exec_runs_nothing_without_a_session_and_reports_a_missing_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let script = format!("touch '{}'", marker.display());
    let out = run(credlock(
        &dir.path().join("none.json"),
        &["exec", "--", "sh", "-c", &script],
    ));
    assert_eq!(out.status.code(), Some(3), "login required");
    assert!(!marker.exists(), "the command ran without a token");

    let b = Backend::fresh();
    let out = run(credlock(
        &b.store,
        &["exec", "--", "/nonexistent/credlock-test-command"],
    ));
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("/nonexistent/credlock-test-command"));
    assert!(!text(&out.stderr).contains(&b.access_token()));

    let out = run(credlock(&b.store, &["exec", "--env", "A=B", "--", "true"]));
    assert_eq!(out.status.code(), Some(2), "not a variable name");
}

#[test]
fn the_header_format_is_ready_for_curl() {
    let b = Backend::fresh();
    let out = run(credlock(&b.store, &["token", "--format", "header"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("Authorization: Bearer {}\n", b.access_token())
    );
}

#[test]
fn the_override_is_printed_without_touching_any_store_and_status_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("sub").join("session.json");
    let out = with_override(credlock(&store, &["token"]), "ci-token-1");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ci-token-1\n");
    let out = with_override(
        credlock(&store, &["token", "--format", "header"]),
        "ci-token-1",
    );
    assert_eq!(text(&out.stdout), "Authorization: Bearer ci-token-1\n");
    let out = with_override(
        credlock(&store, &["token", "--format", "exec-credential"]),
        "ci-token-1",
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"]["token"], "ci-token-1");
    assert!(v["status"].get("expirationTimestamp").is_none());
    assert!(!dir.path().join("sub").exists(), "the store was touched");

    let b = Backend::fresh();
    let out = with_override(credlock(&b.store, &["status"]), "ci-token-1");
    assert!(
        text(&out.stdout).contains("CREDLOCK_ACCESS_TOKEN"),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains("ci-token-1"));
    let out = with_override(credlock(&b.store, &["status", "--json"]), "ci-token-1");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["access_token_override"], true);
    assert!(!text(&out.stdout).contains("ci-token-1"));
    assert_eq!(b.refreshes(), 0);
}

fn token_file_state(path: &Path) -> (String, u64, SystemTime) {
    let m = std::fs::metadata(path).expect("token file");
    assert_eq!(m.mode() & 0o777, 0o600, "token file mode");
    (
        std::fs::read_to_string(path).expect("read"),
        m.ino(),
        m.modified().expect("mtime"),
    )
}

/// `--out` never names the session or one of its sidecars, however the path is spelled: the
/// bare access token written over the session loses the refresh token, and a new inode
/// renamed over the lock file breaks mutual exclusion.
#[test]
fn token_out_refuses_the_session_file_and_its_lock_file_as_a_usage_error() {
    let b = Backend::fresh();
    let out = run(credlock(&b.store, &["token"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lock = b.dir.path().join("session.json.lock");
    let lock_inode = std::fs::metadata(&lock).expect("lock file").ino();
    let session = std::fs::read(&b.store).expect("session");
    let sub = b.dir.path().join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    for target in [
        b.store.clone(),
        sub.join("../session.json"),
        lock.clone(),
        b.dir.path().join("session.json.lease"),
        b.dir.path().join("session.json.lease.break"),
        b.dir.path().join("session.json.login-ended"),
        b.dir.path().join("session.settings.json"),
        b.dir.path().join(".session.json.abc123.tmp"),
    ] {
        let out = run(credlock(
            &b.store,
            &["token", "--out", target.to_str().expect("utf-8")],
        ));
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {}",
            target.display(),
            text(&out.stderr)
        );
        let name = target
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(text(&out.stderr).contains(&name), "{}", text(&out.stderr));
        assert!(!text(&out.stderr).contains(&b.access_token()));
    }
    assert_eq!(std::fs::read(&b.store).expect("session"), session);
    assert_eq!(std::fs::metadata(&lock).expect("lock").ino(), lock_inode);
    for absent in [
        "session.json.lease",
        "session.settings.json",
        ".session.json.abc123.tmp",
    ] {
        assert!(!b.dir.path().join(absent).exists(), "{absent} was written");
    }
}

#[test]
fn the_token_file_is_written_atomically_once_per_token_and_rewritten_after_a_refresh() {
    let b = Backend::fresh();
    let file = b.dir.path().join("bt");
    let out = run(credlock(
        &b.store,
        &["token", "--out", file.to_str().expect("utf-8")],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "the token went to stdout too");
    let first = token_file_state(&file);
    assert_eq!(first.0, format!("{}\n", b.access_token()));

    std::thread::sleep(Duration::from_millis(20));
    let out = run(credlock(
        &b.store,
        &["token", "--out", file.to_str().expect("utf-8")],
    ));
    assert!(out.status.success());
    assert_eq!(
        token_file_state(&file),
        first,
        "an unchanged token rewrote the file"
    );

    // The session expires: the next call refreshes and replaces the file by a rename.
    let expired = b.session.clone().with_expires_at(SystemTime::now());
    credlock::Store::new(&b.store).save(&expired).expect("save");
    let out = run(credlock(
        &b.store,
        &["token", "--out", file.to_str().expect("utf-8")],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let second = token_file_state(&file);
    assert_eq!(second.0, format!("{}\n", b.stored_token()));
    assert_ne!(second.1, first.1, "not replaced by a rename");
    assert_eq!(b.refreshes(), 1);
    let strays: Vec<_> = std::fs::read_dir(b.dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().starts_with(".bt"))
        .collect();
    assert!(strays.is_empty(), "temp files left: {strays:?}");
}

/// The token file is written as the session is (`credlock::internal::write_private_file`):
/// a symbolic link at its path is not followed or replaced (a link planted there would send
/// the token wherever it points) but refused, and the link and its target stay as they were.
#[test]
fn a_token_file_that_is_a_symbolic_link_is_refused_and_neither_the_link_nor_its_target_changes() {
    let b = Backend::fresh();
    let target = b.dir.path().join("elsewhere");
    std::fs::write(&target, "not a token\n").expect("write");
    let file = b.dir.path().join("bt");
    std::os::unix::fs::symlink(&target, &file).expect("symlink");
    let out = run(credlock(
        &b.store,
        &["token", "--out", file.to_str().expect("utf-8")],
    ));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(
        !stderr.contains(&b.access_token()),
        "the token in the error"
    );
    assert!(
        std::fs::symlink_metadata(&file)
            .expect("lstat")
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "not a token\n"
    );
}

/// Rewrites the session at `store` as obtained `age` ago and expiring `left` from now (the
/// lifetime is what caps `--min-valid`).
fn age_session(store: &Path, age: Duration, left: Duration) {
    let ms = |t: SystemTime| {
        u64::try_from(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .expect("after 1970")
                .as_millis(),
        )
        .expect("ms")
    };
    let now = SystemTime::now();
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store).expect("read session")).expect("json");
    v["obtained_at_ms"] = ms(now - age).into();
    v["expires_at_ms"] = ms(now + left).into();
    // The file keeps its mode (0600): written in place.
    std::fs::write(store, v.to_string()).expect("write session");
}

/// A `--min-valid` too large to add to the clock is an answer, never an overflow panic.
#[test]
fn a_min_valid_of_u64_max_does_not_panic() {
    let b = Backend::fresh();
    let out = run(credlock(
        &b.store,
        &["token", "--min-valid", &u64::MAX.to_string()],
    ));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(101), "{}", text(&out.stderr));
}

#[test]
fn min_valid_refreshes_once_for_many_jobs_only_when_less_is_left() {
    let b = Backend::fresh();
    // Ten minutes left of a token obtained an hour ago (so --min-valid 900 is not capped).
    age_session(
        &b.store,
        Duration::from_secs(3600),
        Duration::from_secs(600),
    );
    let file = b.dir.path().join("bt");
    let out_arg = file.to_str().expect("utf-8");
    let out = run(credlock(
        &b.store,
        &["token", "--out", out_arg, "--min-valid", "300"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(b.refreshes(), 0, "ten minutes left is more than five");

    let jobs = (0..6)
        .map(|_| credlock(&b.store, &["token", "--out", out_arg, "--min-valid", "900"]))
        .collect();
    for out in run_together(jobs, Duration::from_secs(60)) {
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_eq!(
        b.refreshes(),
        1,
        "six jobs wanting fifteen minutes: one refresh"
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        format!("{}\n", b.stored_token())
    );
}

#[test]
fn the_default_token_file_follows_the_bearer_token_discovery_convention() {
    let b = Backend::fresh();
    let runtime = b.dir.path().join("run");
    std::fs::create_dir(&runtime).expect("mkdir");
    let mut cmd = credlock(&b.store, &["token", "--out"]);
    cmd.env("XDG_RUNTIME_DIR", &runtime);
    let out = run(cmd);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let uid = std::fs::metadata(b.dir.path()).expect("dir").uid();
    let expected = runtime.join(format!("bt_u{uid}"));
    assert_eq!(
        std::fs::read_to_string(&expected).expect("default token file"),
        format!("{}\n", b.access_token())
    );
}

/// A valid token is still a valid token on every path that can refresh: a refresh forced by
/// `--min-valid` that fails for a reason that may pass hands out the stored token, which has
/// not expired, with a warning (README, "What it guarantees").
///
/// Failure table: transient failure (`Unavailable`, `LockTimeout`) while the stored access token has not expired (inside the margin, or short of `access_token_valid_for`'s minimum)
#[test]
fn min_valid_with_the_token_endpoint_down_hands_out_the_unexpired_token_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    let (fake, http, session) = crate::common::tools::seed_at(&store, false);
    drop(http); // the token endpoint is down: connection refused
    age_session(&store, Duration::from_secs(7200), Duration::from_secs(3600));
    let token = session.access_token().secret().to_owned();
    let file = dir.path().join("bt");
    let out = run(credlock(
        &store,
        &[
            "token",
            "--out",
            file.to_str().expect("utf-8"),
            "--min-valid",
            "3700",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&file).expect("token file"),
        format!("{token}\n")
    );
    assert!(
        text(&out.stderr).contains("has not expired"),
        "no warning: {}",
        text(&out.stderr)
    );
    let out = run(credlock(&store, &["token", "--min-valid", "3700"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{token}\n"));
    assert!(!text(&out.stderr).contains(&token));
    assert_eq!(fake.counters().refresh_requests, 0, "the server was down");
    assert_eq!(crate::common::tools::stored_token(&store), token);
}

/// One refresh per expiry whatever the flags: a `--min-valid` longer than the tokens the
/// server issues is capped at three quarters of the token's lifetime (`--help`), so a fresh
/// token is not refreshed again on every call.
#[test]
fn min_valid_longer_than_the_token_lifetime_refreshes_once_not_on_every_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    let fake = credlock_test::FakeServer::builder()
        .access_ttl(Duration::from_secs(600))
        .build();
    let http = credlock_test::HttpServer::start(std::sync::Arc::clone(&fake)).expect("server");
    let session = fake
        .seed_session(&http.token_endpoint())
        .expect("seed")
        .with_expires_at(SystemTime::now());
    credlock::Store::new(&store).save(&session).expect("save");
    let mut last = None;
    for _ in 0..5 {
        let out = run(credlock(&store, &["token", "--min-valid", "900"]));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        last = Some(out);
    }
    assert_eq!(
        fake.counters().refresh_requests,
        1,
        "600 s tokens, --min-valid 900, five calls"
    );
    let last = last.expect("ran");
    assert!(
        text(&last.stderr).contains("600 s"),
        "the warning names the server's token lifetime: {}",
        text(&last.stderr)
    );
}

/// The reader's path without `XDG_RUNTIME_DIR` (cron, batch) is the bearer token discovery
/// fallback, `/tmp/bt_u<uid>` (not `$TMPDIR`), and `--profile NAME` appends `-NAME` (README,
/// "Batch jobs").
#[test]
fn without_xdg_runtime_dir_the_token_file_is_tmp_bt_uid_and_a_profile_appends_its_name() {
    let b = Backend::fresh();
    let config = tempfile::tempdir().expect("config");
    let tmpdir = tempfile::tempdir().expect("TMPDIR");
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("time")
        .subsec_nanos();
    let profile = format!("outtest{}x{nanos}", std::process::id());
    let profile_store = config
        .path()
        .join("credlock")
        .join("profiles")
        .join(&profile)
        .join("session.json");
    credlock::Store::new(&profile_store)
        .save(&b.session)
        .expect("save");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_credlock"));
    crate::common::clear_credlock_env(&mut cmd);
    cmd.args(["--profile", &profile, "token", "--out"])
        .env("XDG_CONFIG_HOME", config.path())
        .env("TMPDIR", tmpdir.path())
        .env_remove("XDG_RUNTIME_DIR");
    let out = run(cmd);
    let uid = rustix::process::getuid().as_raw();
    let expected = Path::new("/tmp").join(format!("bt_u{uid}-{profile}"));
    let written = std::fs::read_to_string(&expected);
    let _ = std::fs::remove_file(&expected);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        written.expect("the token file at /tmp/bt_u<uid>-<profile>"),
        format!("{}\n", b.access_token())
    );
    assert_eq!(
        std::fs::read_dir(tmpdir.path()).expect("TMPDIR").count(),
        0,
        "written under $TMPDIR"
    );
}

/// A token file that another user owns (planted in `/tmp` before us, say) is neither
/// trusted nor replaced: the error names its owner and what to do. Needs root to give a file
/// away; skipped otherwise.
#[test]
fn a_token_file_owned_by_another_user_is_refused_naming_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: giving a file to another user (uid 65534) needs root");
        return;
    }
    let b = Backend::fresh();
    let file = b.dir.path().join("bt");
    for planted in [format!("{}\n", b.access_token()), "theirs\n".to_owned()] {
        std::fs::write(&file, &planted).expect("plant");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::chown(&file, Some(65534), Some(65534)).expect("chown");
        let out = run(credlock(
            &b.store,
            &["token", "--out", file.to_str().expect("utf-8")],
        ));
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("uid 65534"), "{stderr}");
        assert!(stderr.contains("--out FILE"), "says what to do: {stderr}");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), planted);
        assert_eq!(std::fs::metadata(&file).expect("meta").uid(), 65534);
    }
}
