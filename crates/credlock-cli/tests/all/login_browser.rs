//! `credlock login --browser` and `--paste` against node-oidc-provider: success, wrong
//! state, the user cancelling, the deadline. `$BROWSER` is a script that records the URL; the
//! test then plays the user on the provider's own pages (`common::idp`).

use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::idp::{Browser, Page, Provider, recording_browser, wait_for_file};
use crate::common::{credlock, finish};

fn spawn_browser(dir: &Path, issuer: &str, extra: &[&str]) -> (Child, std::path::PathBuf) {
    let store = dir.join("session.json");
    let (script, url_file) = recording_browser(dir);
    let mut cmd = credlock(&store, &["--json", "login", "--browser"]);
    cmd.args([
        "--issuer",
        issuer,
        "--client-id",
        "cli-native",
        "--scope",
        "openid",
    ])
    .args(extra)
    .env("BROWSER", &script)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    (cmd.spawn().expect("spawn credlock"), url_file)
}

/// Signs in from the authorization URL up to the redirect back to the loopback.
fn sign_in_to_redirect(b: &mut Browser, issuer: &str, url: &str) -> String {
    let first = b.get(url);
    let last: Page = b.sign_in(first, issuer, false);
    let to = last.location.expect("a redirect back to the client");
    assert!(to.contains("/callback?"), "{to}");
    to
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {:?} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url.split_once('?')?.1.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == name).then(|| credlock::internal::form_urldecode(v).unwrap_or_default())
    })
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn browser_login_with_pkce_and_loopback_redirect_saves_the_session() {
    let p = Provider::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (child, url_file) = spawn_browser(dir.path(), &p.issuer, &[]);
    let url = wait_for_file(&url_file, Duration::from_secs(20));
    assert_eq!(
        query_param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(
        query_param(&url, "redirect_uri")
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    let mut b = Browser::new();
    let callback = sign_in_to_redirect(&mut b, &p.issuer, &url);
    let landing = b.get(&callback);
    assert_eq!(landing.status, 200);
    assert!(landing.body.contains("Signed in"), "{}", landing.body);
    let out = finish(child, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["logged_in"], true);
    assert_eq!(v["flow"], "browser");
    assert_eq!(v["has_id_token"], true);
    assert_eq!(v["scope"], "openid offline_access");
    assert_eq!(p.stats()["code_grants"], 1);
    // The redirect was accepted once: the listener is gone.
    assert!(std::net::TcpStream::connect(callback.split('/').nth(2).unwrap()).is_err());
    let out = finish(
        credlock(&dir.path().join("session.json"), &["token"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(20),
    );
    assert!(out.status.success());
}

/// Any web page can send a request to the loopback port: a forged redirect gets an error
/// page and exchanges nothing, and the login goes on to the real one.
#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn a_redirect_with_the_wrong_state_gets_an_error_page_and_the_real_one_still_logs_in() {
    let p = Provider::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (child, url_file) = spawn_browser(dir.path(), &p.issuer, &[]);
    let url = wait_for_file(&url_file, Duration::from_secs(20));
    let mut b = Browser::new();
    let callback = sign_in_to_redirect(&mut b, &p.issuer, &url);
    let state = query_param(&callback, "state").unwrap();
    let forged = callback.replace(&format!("state={state}"), "state=forged-state");
    let landing = b.get(&forged);
    assert_eq!(landing.status, 400);
    assert_eq!(
        p.stats()["code_grants"],
        0,
        "nothing exchanged for the forgery"
    );
    let landing = b.get(&callback);
    assert!(landing.body.contains("Signed in"), "{}", landing.body);
    let out = finish(child, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_of(&out)["logged_in"], true);
    assert_eq!(p.stats()["code_grants"], 1);
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn the_user_cancelling_at_the_login_page_exits_3_with_login_denied() {
    let p = Provider::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (child, url_file) = spawn_browser(dir.path(), &p.issuer, &[]);
    let url = wait_for_file(&url_file, Duration::from_secs(20));
    let mut b = Browser::new();
    let first = b.get(&url);
    let login_page = b.follow(first, &p.issuer);
    let abort = login_page
        .body
        .split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|h| h.ends_with("/abort"))
        .unwrap_or_else(|| panic!("no abort link: {}", login_page.body))
        .to_owned();
    let abort = crate::common::idp::absolute(&login_page.url, &abort);
    let redirected = b.get(&abort);
    let back = b.follow(redirected, &p.issuer);
    let callback = back.location.expect("redirect to the client");
    assert_eq!(
        query_param(&callback, "error").as_deref(),
        Some("access_denied")
    );
    b.get(&callback);
    let out = finish(child, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(json_of(&out)["error"]["kind"], "login_denied");
    assert!(!dir.path().join("session.json").exists());
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn a_browser_that_never_comes_back_ends_at_the_deadline_with_login_expired() {
    let p = Provider::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (child, _url_file) = spawn_browser(dir.path(), &p.issuer, &["--login-timeout", "2"]);
    let out = finish(child, Duration::from_secs(30));
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(json_of(&out)["error"]["kind"], "login_expired");
    assert!(!dir.path().join("session.json").exists());
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn paste_login_reads_the_redirect_url_from_stdin() {
    let p = Provider::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let err = dir.path().join("stderr");
    let mut child = credlock(&store, &["--json", "login", "--paste"])
        .args([
            "--issuer",
            &p.issuer,
            "--client-id",
            "cli-native",
            "--scope",
            "openid",
        ])
        .env_remove("BROWSER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let url = loop {
        let text = std::fs::read_to_string(&err).unwrap_or_default();
        if let Some(u) = text.lines().map(str::trim).find(|l| l.starts_with("http")) {
            break u.to_owned();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no URL: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        query_param(&url, "redirect_uri").as_deref(),
        Some("http://127.0.0.1/callback")
    );
    let callback = sign_in_to_redirect(&mut Browser::new(), &p.issuer, &url);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{callback}").unwrap();
    drop(stdin);
    let out = finish(child, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        std::fs::read_to_string(&err).unwrap()
    );
    let v = json_of(&out);
    assert_eq!(v["flow"], "paste");
    assert_eq!(v["logged_in"], true);
    assert_eq!(p.stats()["code_grants"], 1);
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn a_server_that_requires_a_nonce_with_openid_accepts_the_browser_login() {
    // Glewlwyd's rule, played by the test server: `openid` without `nonce` is refused even
    // for response_type=code. node-oidc-provider puts the nonce into the id_token.
    let p = Provider::start(&["--require-nonce", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let (child, url_file) = spawn_browser(dir.path(), &p.issuer, &[]);
    let url = wait_for_file(&url_file, Duration::from_secs(20));
    let nonce = query_param(&url, "nonce").expect("a nonce with scope openid");
    let mut b = Browser::new();
    let callback = sign_in_to_redirect(&mut b, &p.issuer, &url);
    b.get(&callback);
    let out = finish(child, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let session = credlock::Store::new(dir.path().join("session.json"))
        .load()
        .unwrap()
        .expect("saved");
    let payload = session
        .id_token()
        .expect("id_token")
        .split('.')
        .nth(1)
        .unwrap();
    let claims = String::from_utf8(base64url_decode(payload)).unwrap();
    assert!(
        claims.contains(&format!("\"nonce\":\"{nonce}\"")),
        "{claims}"
    );
}

fn base64url_decode(s: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => continue,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push(u8::try_from((bits >> n) & 0xff).unwrap());
        }
    }
    out
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn an_authorization_request_refused_outright_fails_within_seconds_naming_the_causes() {
    // An unknown client: node-oidc-provider shows an error page (HTTP 400) and never
    // redirects, as Glewlwyd does for an unregistered redirect URI.
    let p = Provider::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let store = dir.path().join("session.json");
    let (script, url_file) = recording_browser(dir.path());
    let child = credlock(&store, &["--json", "login", "--browser"])
        .args(["--issuer", &p.issuer, "--client-id", "no-such-client"])
        .args(["--scope", "openid", "--login-timeout", "60"])
        .env("BROWSER", &script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, Duration::from_secs(90));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let v = json_of(&out);
    assert_eq!(v["error"]["kind"], "login_request_rejected", "{v}");
    assert_eq!(out.status.code(), Some(5), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    for cause in ["--port", "client id", "scope"] {
        assert!(message.contains(cause), "{cause} not in: {message}");
    }
    assert!(!url_file.exists(), "the browser was not opened");
    assert!(!store.exists());
}

/// Any local process can connect to the loopback port: one that trickles a byte at a time
/// neither holds a 3 s login past its deadline nor keeps the browser's redirect out.
#[test]
fn a_client_trickling_bytes_to_the_loopback_port_does_not_hold_a_3_s_login_past_its_deadline() {
    // The authorization endpoint answers the pre-flight look with a page (a login page would
    // be HTML; any 200 lets the browser open); nothing else is ever approved.
    let stub = crate::common::idp::Stub::start(|path| {
        if path.starts_with("/auth") {
            crate::common::idp::Reply::Json(200, "{}".into())
        } else {
            crate::common::idp::Reply::Json(400, r#"{"error":"invalid_request"}"#.into())
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (script, url_file) = recording_browser(dir.path());
    let mut cmd = credlock(
        &dir.path().join("session.json"),
        &["--json", "login", "--browser"],
    );
    cmd.args(["--token-endpoint", &format!("{}/token", stub.base)])
        .args(["--authorization-endpoint", &format!("{}/auth", stub.base)])
        .args(["--client-id", "cli", "--login-timeout", "3"])
        .env("BROWSER", &script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn credlock");
    let url = wait_for_file(&url_file, Duration::from_secs(20));
    let redirect = query_param(&url, "redirect_uri").expect("redirect_uri");
    let port = redirect
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let mut slow = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect");
    let trickler = std::thread::spawn(move || {
        for b in b"GET /callback?state=x HTTP/1.1\r\n"
            .iter()
            .cycle()
            .take(100)
        {
            if slow.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let out = finish(child, Duration::from_secs(60));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "a 3 s login took {took:?}");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_of(&out)["error"]["kind"], "login_expired");
    drop(trickler);
}

/// `credlock --json login ARGS` at `store` with `$BROWSER` recording into `recorder_dir`.
fn spawn_login(store: &Path, recorder_dir: &Path, args: &[&str]) -> (Child, std::path::PathBuf) {
    std::fs::create_dir_all(recorder_dir).unwrap();
    let (script, url_file) = recording_browser(recorder_dir);
    let mut cmd = credlock(store, &["--json", "login"]);
    cmd.args(args)
        .env("BROWSER", &script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    (cmd.spawn().expect("spawn credlock"), url_file)
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn the_login_hint_reaches_the_server_and_a_remembered_prompt_login_signs_in_again_a_signed_in_browser()
 {
    let p = Provider::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let (child, url_file) = spawn_login(
        &store,
        &dir.path().join("first"),
        &[
            "--browser",
            "--issuer",
            &p.issuer,
            "--client-id",
            "cli-native",
            "--scope",
            "openid",
            "--login-hint",
            "jane@example.com",
        ],
    );
    let url = wait_for_file(&url_file, Duration::from_secs(20));
    assert_eq!(
        query_param(&url, "login_hint").as_deref(),
        Some("jane@example.com")
    );
    let mut b = Browser::new();
    let first = b.get(&url);
    let login_page = b.follow(first, &p.issuer);
    // node-oidc-provider's login page fills the login field in from login_hint.
    assert!(
        login_page.body.contains("value=\"jane@example.com\""),
        "{}",
        login_page.body
    );
    let callback = b
        .sign_in(login_page, &p.issuer, false)
        .location
        .expect("a redirect back to the client");
    b.get(&callback);
    let out = finish(child, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same, signed-in browser: a login with only --prompt asks for the sign-in again
    // (the rest of the flags are remembered), and keeps the refresh token ("consent").
    let (child, url_file) = spawn_login(
        &store,
        &dir.path().join("second"),
        &["--prompt", "login consent"],
    );
    let url = wait_for_file(&url_file, Duration::from_secs(20));
    assert_eq!(
        query_param(&url, "client_id").as_deref(),
        Some("cli-native")
    );
    assert_eq!(
        query_param(&url, "login_hint").as_deref(),
        Some("jane@example.com")
    );
    assert_eq!(
        query_param(&url, "prompt").as_deref(),
        Some("login consent")
    );
    let first = b.get(&url);
    let page = b.follow(first, &p.issuer);
    assert!(
        page.body.contains("name=\"password\""),
        "a signed-in browser was not asked to sign in again: {}",
        page.body
    );
    let callback = b
        .sign_in(page, &p.issuer, false)
        .location
        .expect("a redirect back to the client");
    b.get(&callback);
    let out = finish(child, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["flow"], "browser");
    assert_eq!(v["account"]["sub"], "user-1", "{v}");
    let settings: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("session.settings.json")).unwrap())
            .unwrap();
    assert_eq!(settings["login"]["prompt"], "login consent", "{settings}");
    assert_eq!(settings["login"]["login_hint"], "jane@example.com");
}

/// Runs `credlock --json login ARGS` at `store` as a paste login the test completes in its own
/// browser, with `env` set; returns the output.
fn paste_login(
    p: &Provider,
    store: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let err = store.with_file_name("paste-stderr");
    let mut cmd = credlock(store, &["--json", "login"]);
    cmd.args(args)
        .env_remove("BROWSER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let url = loop {
        let text = std::fs::read_to_string(&err).unwrap_or_default();
        if let Some(u) = text.lines().map(str::trim).find(|l| l.starts_with("http")) {
            break u.to_owned();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no URL: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let callback = sign_in_to_redirect(&mut Browser::new(), &p.issuer, &url);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{callback}").unwrap();
    drop(stdin);
    let out = finish(child, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        std::fs::read_to_string(&err).unwrap()
    );
    out
}

#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn a_confidential_client_is_remembered_by_its_secret_variable_and_a_login_with_no_flags_uses_it() {
    let p = Provider::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let secret = [("CLI_POST_SECRET", "post-secret-1")];
    paste_login(
        &p,
        &store,
        &[
            "--paste",
            "--issuer",
            &p.issuer,
            "--client-id",
            "cli-post",
            "--client-secret-env",
            "CLI_POST_SECRET",
            "--client-auth",
            "post",
            "--scope",
            "openid",
        ],
        &secret,
    );
    let raw = std::fs::read_to_string(dir.path().join("session.settings.json")).unwrap();
    assert!(!raw.contains("post-secret-1"), "{raw}");
    let settings: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(settings["login"]["client_secret_env"], "CLI_POST_SECRET");
    assert_eq!(settings["login"]["client_auth"], "post");
    assert_eq!(settings["login"]["flow"], "paste");

    let out = paste_login(&p, &store, &[], &secret);
    assert_eq!(json_of(&out)["client_id"], "cli-post");
    assert_eq!(p.stats()["code_grants"], 2);
    // The remembered method is the one the session refreshes with.
    let session = credlock::Store::new(&store).load().unwrap().expect("saved");
    assert_eq!(session.client().auth().method_name(), "client_secret_post");
}
