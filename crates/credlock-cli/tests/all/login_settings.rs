//! The login settings a profile remembers beside its session (`session.settings.json`):
//! `login` and `token --login` use them when no flags are given, `logout` keeps them, and the
//! end of a session (a logout, a grant the server refused) is recorded there for `status`.
//! The full cycle against node-oidc-provider is in `login_device`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::tools::{seed_at, text};
use crate::common::{credlock, run_with_stdin};

fn settings_path(store: &Path) -> PathBuf {
    store.with_file_name("session.settings.json")
}

fn write_settings(store: &Path, settings: &Value) {
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
    std::fs::write(settings_path(store), settings.to_string()).unwrap();
}

fn read_settings(store: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(settings_path(store)).expect("settings file"))
        .expect("settings json")
}

/// The authorization URL a paste login prints (stdin is empty, so it stops right after).
fn printed_url(stderr: &str) -> &str {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("http://") || l.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL printed: {stderr}"))
}

#[test]
fn token_login_with_no_flags_uses_the_remembered_client_endpoints_flow_and_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    write_settings(
        &store,
        &json!({"login": {
            "token_endpoint": "http://127.0.0.1:9/token",
            "authorization_endpoint": "http://127.0.0.1:9/authorize",
            "client_id": "remembered-cli",
            "client_auth": "none",
            "scopes": ["openid", "profile"],
            "flow": "paste",
            "login_hint": "jane@example.com",
            "params": [["acr_values", "mfa"]],
        }}),
    );
    let out = run_with_stdin(credlock(&store, &["token", "--login"]), b"");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("needs --client-id"), "{stderr}");
    let url = printed_url(&stderr);
    for part in [
        "http://127.0.0.1:9/authorize?",
        "client_id=remembered-cli",
        "scope=openid+profile",
        "login_hint=jane%40example.com",
        "acr_values=mfa",
    ] {
        assert!(url.contains(part), "{part} missing from {url}");
    }
    // A flag given wins over the remembered value, alone.
    let out = run_with_stdin(
        credlock(&store, &["login", "--login-hint", "joe@example.com"]),
        b"",
    );
    let stderr = text(&out.stderr);
    let url = printed_url(&stderr);
    assert!(url.contains("login_hint=joe%40example.com"), "{url}");
    assert!(url.contains("client_id=remembered-cli"), "{url}");
    // A login that did not succeed remembers nothing new.
    assert_eq!(
        read_settings(&store)["login"]["login_hint"],
        "jane@example.com"
    );
}

#[test]
fn prompt_login_hint_and_param_reach_the_authorization_url() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let out = run_with_stdin(
        credlock(
            &store,
            &[
                "login",
                "--paste",
                "--token-endpoint",
                "http://127.0.0.1:9/token",
                "--authorization-endpoint",
                "http://127.0.0.1:9/authorize",
                "--client-id",
                "cli",
                "--prompt",
                "select_account",
                "--login-hint",
                "jane@example.com",
                "--param",
                "acr_values=mfa",
                "--param",
                "hd=example.com",
            ],
        ),
        b"",
    );
    let stderr = text(&out.stderr);
    let url = printed_url(&stderr);
    for part in [
        "prompt=select_account",
        "login_hint=jane%40example.com",
        "acr_values=mfa",
        "hd=example.com",
    ] {
        assert!(url.contains(part), "{part} missing from {url}");
    }
    let out = run_with_stdin(
        credlock(&store, &["login", "--client-id", "x", "--param", "novalue"]),
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    for (param, says) in [
        ("client_secret=s3cret-zz", "--client-secret-env"),
        (
            "redirect_uri=https://evil.example/",
            "credlock sends redirect_uri itself",
        ),
    ] {
        let out = run_with_stdin(
            credlock(
                &store,
                &[
                    "login",
                    "--issuer",
                    "http://127.0.0.1:9",
                    "--client-id",
                    "x",
                    "--param",
                    param,
                ],
            ),
            b"",
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("s3cret-zz"), "{stderr}");
    }
    assert!(!settings_path(&store).exists());
}

#[test]
fn unreadable_settings_stop_a_login_that_needs_them_and_not_one_given_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    std::fs::write(settings_path(&store), b"{not json").unwrap();
    let out = run_with_stdin(credlock(&store, &["token", "--login"]), b"");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("session.settings.json") && stderr.contains("fix or delete"),
        "{stderr}"
    );
    let out = run_with_stdin(
        credlock(
            &store,
            &[
                "login",
                "--paste",
                "--token-endpoint",
                "http://127.0.0.1:9/token",
                "--authorization-endpoint",
                "http://127.0.0.1:9/authorize",
                "--client-id",
                "cli",
            ],
        ),
        b"",
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("fix or delete"),
        "{stderr}"
    );
    assert!(printed_url(&stderr).contains("client_id=cli"), "{stderr}");
}

#[test]
fn a_login_with_nothing_remembered_and_no_client_id_says_the_flags_are_remembered_after_one_login()
{
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let out = run_with_stdin(credlock(&store, &["token", "--login"]), b"");
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--client-id") && stderr.contains("remembers no login"),
        "{stderr}"
    );
}

#[test]
fn logout_keeps_the_login_settings_and_status_says_when_and_why_the_session_ended() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let (_fake, _http, _) = seed_at(&store, false);
    let remembered =
        json!({"client_id": "kept-cli", "client_auth": "none", "issuer": "https://id.example"});
    write_settings(&store, &json!({ "login": remembered }));
    let out = run_with_stdin(credlock(&store, &["logout"]), b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!store.exists());
    let settings = read_settings(&store);
    assert_eq!(settings["login"], remembered, "{settings}");
    assert!(
        settings["last_session_end"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("credlock logout")),
        "{settings}"
    );
    let out = run_with_stdin(credlock(&store, &["status"]), b"");
    assert_eq!(out.status.code(), Some(3));
    let human = text(&out.stdout);
    assert!(
        human.contains("session ended:  20") && human.contains("logged out with `credlock logout`"),
        "{human}"
    );
    assert!(
        human.contains("login settings: remembered (client kept-cli at https://id.example)"),
        "{human}"
    );
    let out = run_with_stdin(credlock(&store, &["status", "--json"]), b"");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        v["last_session_end"]["at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z')),
        "{v}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(settings_path(&store))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_grant_the_server_refused_is_recorded_and_status_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("session.json");
    let (fake, _http, session) = seed_at(&store, true);
    assert!(fake.revoke_grant_of(session.refresh_token().secret()));
    let out = run_with_stdin(credlock(&store, &["token"]), b"");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(!store.exists(), "the dead session was deleted");
    let out = run_with_stdin(credlock(&store, &["status", "--json"]), b"");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["present"], false);
    assert_eq!(
        v["last_session_end"]["reason"], "the server refused the refresh token (invalid_grant)",
        "{v}"
    );
    let out = run_with_stdin(credlock(&store, &["status"]), b"");
    assert!(
        text(&out.stdout).contains("the server refused the refresh token (invalid_grant)"),
        "{}",
        text(&out.stdout)
    );
}
