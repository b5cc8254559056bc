//! Configuration errors (a client the server rejects, a token response without a refresh
//! token, a malformed or insecure endpoint) are their own class: a new login would not fix
//! them, so they are not "log in again", and the CLI exits 5 for them.

use std::process::Output;
use std::sync::Arc;

use credlock::Store;
use credlock_test::{Failure, FakeServer, HttpServer};

use crate::common::{credlock, run_with_stdin};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn import(path: &std::path::Path, endpoint: &str, body: &[u8]) -> Output {
    run_with_stdin(
        credlock(
            path,
            &["import", "--token-endpoint", endpoint, "--client-id", "cli"],
        ),
        body,
    )
}

const RESPONSE: &[u8] =
    br#"{"access_token":"a-1","token_type":"Bearer","expires_in":60,"refresh_token":"r-1"}"#;

/// Failure table: endpoint malformed (does not parse, not absolute, no host, user info)
#[test]
fn a_malformed_endpoint_is_refused_at_import_as_a_usage_error_with_the_right_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    for (url, reason) in [
        ("https://auth example.com/token", "not a valid URL"),
        ("https://", "not a valid URL"),
        ("https:///token", "not a valid URL"),
        ("auth.example.com/token", "not a valid URL"),
        ("https://user:pw@auth.example.com/token", "credentials"),
    ] {
        // Refused before stdin is read: give it none, or writing it could hit a closed pipe.
        let out = import(&path, url, b"");
        assert_eq!(out.status.code(), Some(2), "{url}: {}", stderr(&out));
        assert!(stderr(&out).contains(reason), "{url}: {}", stderr(&out));
        assert!(!stderr(&out).contains("pw@"), "{url}: {}", stderr(&out));
        assert!(!path.exists(), "{url}: nothing stored");
    }
    let out = import(&path, "http://auth.example.com/token", b"");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("must use https"), "{}", stderr(&out));
    for good in [
        "https://auth.example.com:8443/oauth/token?tenant=a",
        "HTTPS://AUTH.EXAMPLE.COM/token",
        "http://[::1]:8080/token",
    ] {
        let out = import(&path, good, RESPONSE);
        assert_eq!(out.status.code(), Some(0), "{good}: {}", stderr(&out));
    }
}

/// Failure table: token response without `refresh_token` (import, login)
#[test]
fn a_token_response_without_a_refresh_token_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let out = import(
        &path,
        "https://auth.example.com/token",
        br#"{"access_token":"a-1","token_type":"Bearer"}"#,
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("offline_access"), "{}", stderr(&out));
}

#[test]
fn a_client_the_server_rejects_is_exit_code_5_and_keeps_the_session() {
    for body in [
        r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
        r#"{"error":"unauthorized_client"}"#,
    ] {
        let fake = FakeServer::builder().build();
        let http = HttpServer::start(Arc::clone(&fake)).expect("server");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.json");
        let session = fake
            .seed_session(&http.token_endpoint())
            .expect("seed")
            .with_expires_at(std::time::SystemTime::now());
        Store::new(&path).save(&session).expect("save");
        let before = std::fs::read(&path).expect("read");
        fake.push_failure(Failure::Status {
            status: 401,
            body: body.into(),
            retry_after: None,
        });
        let out = run_with_stdin(credlock(&path, &["token"]), b"");
        assert_eq!(out.status.code(), Some(5), "{body}: {}", stderr(&out));
        assert!(!stderr(&out).contains("log in again"), "{}", stderr(&out));
        assert_eq!(std::fs::read(&path).expect("read"), before, "kept");
    }
}

#[test]
fn the_help_text_documents_every_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_with_stdin(credlock(&dir.path().join("s.json"), &["--help"]), b"");
    let help = String::from_utf8_lossy(&out.stdout);
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 "] {
        assert!(
            help.contains(&format!("  {code}")),
            "exit code {code} in {help}"
        );
    }
    assert!(help.contains("configuration"), "{help}");
}

/// A password in an endpoint URL is user information however it is written: unencoded `?`,
/// `#` or `/` in it do not end it for the purpose of hiding it. It never reaches stdout or
/// stderr, with `--json` or without, from `import` or from `login --issuer`.
#[test]
fn a_password_in_an_endpoint_url_never_appears_in_any_output_of_import_or_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    for url in [
        "https://user:pw?SECRET@idp.example/token",
        "https://user:123?SECRET@idp.example/token",
        "https://user:pw#SECRET@idp.example/token",
        "https://user:12/SECRET@idp.example/token",
        "https://user:SECRET@idp.example/token",
        "https://user:pw?SECRET@idp.example/token?tenant=a",
    ] {
        for json in [false, true] {
            let mut import_args = vec!["import", "--token-endpoint", url, "--client-id", "cli"];
            let mut login_args = vec!["login", "--issuer", url, "--client-id", "cli", "--paste"];
            if json {
                import_args.push("--json");
                login_args.push("--json");
            }
            for args in [import_args, login_args] {
                let out = run_with_stdin(credlock(&path, &args), b"");
                let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
                assert!(!out.status.success(), "{args:?}");
                assert!(!all.contains("SECRET"), "{args:?}: {all}");
                assert!(all.contains("[redacted]"), "{args:?}: {all}");
                assert!(!path.exists(), "{args:?}: nothing stored");
            }
        }
    }
}
