//! `credlock login --device` against node-oidc-provider: approve, deny, expire, slow_down.
//! The user's side is a scripted browser on the provider's own pages (`common::idp`).

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::idp::{Browser, Provider, Reply, Stub, device_answer, user_code_in};
use crate::common::{credlock, finish};

/// `credlock <args> --issuer … --client-id cli-device --device --json` with stderr in a file.
pub fn spawn_device(store: &Path, stderr: &Path, issuer: &str, args: &[&str]) -> Child {
    let mut cmd = credlock(store, &["--json"]);
    cmd.args(args)
        .args([
            "--issuer",
            issuer,
            "--client-id",
            "cli-device",
            "--device",
            "--scope",
            "openid",
        ])
        .env_remove("BROWSER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).expect("stderr file"));
    cmd.spawn().expect("spawn credlock")
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn device_login_approved_in_the_browser_saves_a_session_that_refreshes() {
    let p = Provider::start(&["--device-interval", "1", "--access-ttl", "60"]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let err = dir.path().join("stderr");
    let child = spawn_device(&store, &err, &p.issuer, &["login"]);
    let code = user_code_in(&err, Duration::from_secs(20));
    let done = Browser::new().approve_device(&p.issuer, &code, false);
    assert!(done.body.contains("Sign-in Success"), "{}", done.body);
    let out = finish(child, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        std::fs::read_to_string(&err).unwrap()
    );
    let v = json_of(&out);
    assert_eq!(v["logged_in"], true);
    assert_eq!(v["flow"], "device");
    assert_eq!(v["has_id_token"], true);
    assert_eq!(v["scope"], "openid offline_access");
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(stderr.contains(&format!("{}/device", p.issuer)), "{stderr}");
    let session = credlock::Store::new(&store).load().unwrap().expect("saved");
    assert!(
        session
            .id_token()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    assert_eq!(
        session.client().revocation_endpoint(),
        Some(format!("{}/token/revocation", p.issuer).as_str())
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&store).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // The stored session refreshes at the real server.
    let expired = session
        .clone()
        .with_expires_at(std::time::SystemTime::now());
    credlock::Store::new(&store).save(&expired).unwrap();
    let out = finish(
        credlock(&store, &["token"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(p.stats()["refresh_ok"], 1);
    assert_eq!(p.stats()["device_authorizations"], 1);
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn device_login_denied_by_the_user_exits_3_with_login_denied_and_stores_nothing() {
    let p = Provider::start(&["--device-interval", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let err = dir.path().join("stderr");
    let child = spawn_device(&store, &err, &p.issuer, &["login"]);
    let code = user_code_in(&err, Duration::from_secs(20));
    Browser::new().approve_device(&p.issuer, &code, true);
    let out = finish(child, Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        std::fs::read_to_string(&err).unwrap()
    );
    assert_eq!(json_of(&out)["error"]["kind"], "login_denied");
    assert!(!store.exists());
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn device_code_that_expires_unapproved_exits_3_with_login_expired() {
    let p = Provider::start(&["--device-interval", "1", "--device-code-ttl", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let err = dir.path().join("stderr");
    let child = spawn_device(&store, &err, &p.issuer, &["login"]);
    let out = finish(child, Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        std::fs::read_to_string(&err).unwrap()
    );
    let v = json_of(&out);
    assert_eq!(v["error"]["kind"], "login_expired");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    assert!(!store.exists());
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn slow_down_makes_the_client_add_five_seconds_and_the_login_still_succeeds() {
    // The server advertises 1 s but wants 3 s between polls: the second poll gets slow_down,
    // the interval becomes 6 s, and no poll is refused again.
    let p = Provider::start(&["--device-interval", "1", "--device-min-poll", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let err = dir.path().join("stderr");
    let child = spawn_device(&store, &err, &p.issuer, &["login"]);
    let code = user_code_in(&err, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(2500));
    Browser::new().approve_device(&p.issuer, &code, false);
    let out = finish(child, Duration::from_secs(40));
    assert!(
        out.status.success(),
        "{}",
        std::fs::read_to_string(&err).unwrap()
    );
    let stats = p.stats();
    assert_eq!(stats["device_slow_down"], 1, "{stats}");
    assert_eq!(stats["device_grants"], 1, "{stats}");
    assert_eq!(stats["device_polls"], 3, "{stats}");
}

/// Logs in with the device flow at `p` (approving at once) and returns the output and stderr.
fn approved_device_login(p: &Provider, extra: &[&str]) -> (std::process::Output, String, Stored) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let err = dir.path().join("stderr");
    let mut args = vec!["login"];
    args.extend_from_slice(extra);
    let child = spawn_device(&store, &err, &p.issuer, &args);
    let code = user_code_in(&err, Duration::from_secs(20));
    Browser::new().approve_device(&p.issuer, &code, false);
    let out = finish(child, Duration::from_secs(30));
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(out.status.success(), "{stderr}");
    (out, stderr, Stored { dir, store })
}

/// A temp directory and the store in it, kept alive together.
struct Stored {
    #[allow(dead_code)]
    dir: tempfile::TempDir,
    store: std::path::PathBuf,
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn a_revocation_endpoint_given_beside_the_issuer_is_the_one_stored() {
    let p = Provider::start(&["--device-interval", "1", "--revocation", "0"]);
    let given = format!("{}/token/revocation-elsewhere", p.issuer);
    let (_, stderr, at) = approved_device_login(&p, &["--revocation-endpoint", &given]);
    let session = credlock::Store::new(&at.store)
        .load()
        .unwrap()
        .expect("saved");
    assert_eq!(
        session.client().revocation_endpoint(),
        Some(given.as_str()),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot be revoked"), "{stderr}");
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn a_login_at_a_server_without_a_revocation_endpoint_warns_that_logout_cannot_revoke() {
    let p = Provider::start(&["--device-interval", "1", "--revocation", "0"]);
    let (out, stderr, at) = approved_device_login(&p, &[]);
    let session = credlock::Store::new(&at.store)
        .load()
        .unwrap()
        .expect("saved");
    assert_eq!(session.client().revocation_endpoint(), None);
    assert!(
        stderr.contains("cannot be revoked") && stderr.contains("--revocation-endpoint"),
        "{stderr}"
    );
    assert_eq!(json_of(&out)["revocable"], false);
}

/// `credlock <args>` against `stub` with the device flow, stdout piped, stderr in `stderr`.
pub fn spawn_stub_device(store: &Path, stderr: &Path, stub: &Stub, args: &[&str]) -> Child {
    let mut cmd = credlock(store, &["--json"]);
    cmd.args(args)
        .args(stub.device_args())
        .env_remove("BROWSER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).expect("stderr file"));
    cmd.spawn().expect("spawn credlock")
}

/// A login deadline too far to add to the clock is no deadline, not an overflow panic.
#[test]
fn a_login_timeout_of_u64_max_is_no_deadline_and_does_not_panic() {
    let stub = Stub::start(|path| {
        if path == "/device" {
            device_answer("ABCD", 1)
        } else {
            Reply::Json(400, r#"{"error":"access_denied"}"#.into())
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("stderr");
    let child = spawn_stub_device(
        &dir.path().join("session.json"),
        &err,
        &stub,
        &["login", "--login-timeout", &u64::MAX.to_string()],
    );
    let out = finish(child, Duration::from_secs(30));
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(json_of(&out)["error"]["kind"], "login_denied");
    assert_eq!(stub.requests().first().map(String::as_str), Some("/device"));
}

/// The login's deadline bounds each request: a token endpoint that accepts the poll and
/// never answers does not hold a 3 s login past it.
#[test]
fn a_poll_the_server_never_answers_ends_a_3_s_login_in_time() {
    let stub = Stub::start(|path| {
        if path == "/device" {
            device_answer("ABCD", 1)
        } else {
            Reply::Hang
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("stderr");
    let started = std::time::Instant::now();
    let child = spawn_stub_device(
        &dir.path().join("session.json"),
        &err,
        &stub,
        &["login", "--login-timeout", "3"],
    );
    let out = finish(child, Duration::from_secs(90));
    let took = started.elapsed();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(took < Duration::from_secs(10), "a 3 s login took {took:?}");
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(json_of(&out)["error"]["kind"], "login_expired");
    assert!(
        stub.requests().iter().any(|p| p == "/token"),
        "{:?}",
        stub.requests()
    );
}

/// Discovery counts against the login's deadline too.
#[test]
fn a_discovery_the_server_never_answers_ends_a_3_s_login_in_time() {
    let stub = Stub::start(|_| Reply::Hang);
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let mut cmd = credlock(&dir.path().join("session.json"), &["--json", "login"]);
    cmd.args(["--issuer", &stub.base, "--client-id", "cli", "--device"])
        .args(["--login-timeout", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = finish(cmd.spawn().expect("spawn"), Duration::from_secs(150));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "a 3 s login took {took:?}");
    assert!(!out.status.success());
    assert_eq!(stub.requests().len(), 1, "{:?}", stub.requests());
}

/// Waits until `file` contains `text`, failing the test after 20 s.
fn wait_for_text(file: &Path, text: &str) {
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(file)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no {text:?} in {}",
            std::fs::read_to_string(file).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server that shows a code and never approves it.
fn never_approving() -> Stub {
    Stub::start(|path| {
        if path == "/device" {
            device_answer("WXYZ", 1)
        } else {
            Reply::Json(400, r#"{"error":"authorization_pending"}"#.into())
        }
    })
}

/// A login holds its lease with the normal time-to-live, not one stretched over the whole
/// login (the heartbeat keeps a live holder's lease alive), and a login ended by SIGTERM or
/// SIGINT releases the lease at once: another machine need not wait for it to expire.
#[test]
fn a_login_ended_by_a_signal_releases_its_lease_which_has_the_normal_ttl() {
    let stub = never_approving();
    for signal in [rustix::process::Signal::TERM, rustix::process::Signal::INT] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("session.json");
        let lease = crate::common::lease_path(&store);
        let err = dir.path().join("stderr");
        let child = spawn_stub_device(
            &store,
            &err,
            &stub,
            &["--lock", "lease", "login", "--login-timeout", "600"],
        );
        let mut child = crate::common::Reaped(child);
        wait_for_text(&err, "WXYZ");
        let record: Value =
            serde_json::from_slice(&std::fs::read(&lease).expect("the lease while logging in"))
                .expect("lease json");
        assert_eq!(
            record["ttl_ms"],
            credlock::DEFAULT_LEASE_TTL.as_millis() as u64,
            "{record}"
        );
        let pid = rustix::process::Pid::from_raw(child.0.id() as i32).expect("pid");
        rustix::process::kill_process(pid, signal).expect("kill");
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.0.try_wait().expect("try_wait") {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "still running");
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        assert!(!status.success(), "{stderr}");
        assert!(
            !lease.exists(),
            "{signal:?} left the lease behind: {stderr}"
        );
        assert!(!store.exists());
    }
}

/// `credlock --profile work ARGS` with its configuration directory under `home`.
fn in_profile(home: &Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_credlock"));
    c.args(["--profile", "work"])
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("BROWSER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for var in [
        "CREDLOCK_STORE",
        "CREDLOCK_PROFILE",
        "CREDLOCK_LOCK",
        "CREDLOCK_MARGIN",
        "CREDLOCK_FS_KIND",
        "CREDLOCK_ACCESS_TOKEN",
    ] {
        c.env_remove(var);
    }
    c
}

/// Runs `cmd` with stderr in `err`, approving the device code it prints, and returns its output.
fn approved(p: &Provider, mut cmd: std::process::Command, err: &Path) -> std::process::Output {
    cmd.stderr(std::fs::File::create(err).expect("stderr file"));
    let child = cmd.spawn().expect("spawn credlock");
    let code = user_code_in(err, Duration::from_secs(20));
    Browser::new().approve_device(&p.issuer, &code, false);
    let out = finish(child, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        std::fs::read_to_string(err).unwrap()
    );
    out
}

fn stdout_of(cmd: std::process::Command) -> String {
    let out = finish(
        { cmd }.stderr(Stdio::piped()).spawn().expect("spawn"),
        Duration::from_secs(30),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn after_a_device_login_and_a_logout_token_login_with_no_flags_logs_in_again_and_status_names_the_account()
 {
    let p = Provider::start(&["--device-interval", "1"]);
    let home = tempfile::tempdir().unwrap();
    let err = home.path().join("stderr");
    let login = in_profile(
        home.path(),
        &[
            "login",
            "--issuer",
            &p.issuer,
            "--client-id",
            "cli-device",
            "--device",
            "--scope",
            "openid",
        ],
    );
    approved(&p, login, &err);
    let login_said = std::fs::read_to_string(&err).unwrap();
    let store = credlock::session_path_in(&home.path().join("config"), "credlock", Some("work"))
        .expect("path");
    let sub = credlock::Store::new(&store)
        .load()
        .unwrap()
        .expect("saved")
        .unverified_id_token_claims()
        .and_then(|c| c.sub)
        .expect("the ID token names a subject");

    assert!(
        login_said.contains(&format!("logged in as {sub} (unverified)")),
        "{login_said}"
    );
    // Which account: status, status --json and profiles name it.
    let status = stdout_of(in_profile(home.path(), &["status"]));
    assert!(
        status.contains(&format!(
            "account:        {sub} (iss {}; from the ID token, unverified)",
            p.issuer
        )),
        "{status}"
    );
    let v: Value = serde_json::from_str(&stdout_of(in_profile(home.path(), &["status", "--json"])))
        .expect("json");
    assert_eq!(v["account"]["sub"], sub.as_str(), "{v}");
    assert_eq!(v["account"]["iss"], p.issuer.as_str());
    let listing = stdout_of(in_profile(home.path(), &["profiles"]));
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("work") && l.contains(&sub)),
        "{listing}"
    );

    // The login's flags are remembered apart from the session, and survive a logout.
    let settings_path = store.with_file_name("session.settings.json");
    let settings: Value =
        serde_json::from_slice(&std::fs::read(&settings_path).expect("settings")).unwrap();
    assert_eq!(settings["login"]["issuer"], p.issuer.as_str(), "{settings}");
    assert_eq!(settings["login"]["client_id"], "cli-device");
    assert_eq!(settings["login"]["flow"], "device");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&settings_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = finish(
        in_profile(home.path(), &["logout"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    assert!(!store.exists());

    // The kubeconfig's exec entry: nothing but the profile and --login.
    let out = approved(&p, in_profile(home.path(), &["token", "--login"]), &err);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let relogin_said = std::fs::read_to_string(&err).unwrap();
    assert!(
        relogin_said.contains(&format!("credlock: logged in as {sub} (unverified)")),
        "{relogin_said}"
    );
    let session = credlock::Store::new(&store)
        .load()
        .unwrap()
        .expect("saved again");
    assert_eq!(token, session.access_token().secret());
    assert!(!token.is_empty());
    assert_eq!(p.stats()["device_authorizations"], 2);
}

/// `credlock login` on a session kept on Redis: the device login at the real server saves
/// the session on the server (under the guard), it refreshes there, and no output shows the
/// password of the URL.
#[cfg(unix)]
#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn device_login_on_a_redis_store_saves_the_session_on_the_server() {
    const PASSWORD: &str = "pw-login-on-redis";
    let p = Provider::start(&["--device-interval", "1", "--access-ttl", "60"]);
    let redis = crate::common::redis::RedisServer::start(Some(PASSWORD));
    let url = redis.url("device");
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("stderr");
    let mut cmd = credlock(Path::new(&url), &["--json", "login"]);
    cmd.args([
        "--issuer",
        &p.issuer,
        "--client-id",
        "cli-device",
        "--device",
        "--scope",
        "openid",
    ])
    .env("XDG_CONFIG_HOME", dir.path())
    .env_remove("BROWSER")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(std::fs::File::create(&err).expect("stderr file"));
    let child = cmd.spawn().expect("spawn credlock");
    let code = user_code_in(&err, Duration::from_secs(20));
    Browser::new().approve_device(&p.issuer, &code, false);
    let out = finish(child, Duration::from_secs(30));
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(json_of(&out)["logged_in"], true);
    let said = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(!said.contains(PASSWORD), "{said}");
    assert_eq!(redis.cmd(&["EXISTS", "{credlock:device}:session"]), "1");

    let store = credlock::Store::redis(&url).unwrap();
    let session = store.load().unwrap().expect("saved on the server");
    store
        .save(&session.with_expires_at(std::time::SystemTime::now()))
        .unwrap();
    let out = finish(
        credlock(Path::new(&url), &["token"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(p.stats()["refresh_ok"], 1);
}
