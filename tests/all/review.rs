//! Hostile review of the issue-9 fixes: each test here failed on the code it was written
//! against. See the review report for the invariant each one breaks.

use credlock::testing::{Failure, ReusePolicy};
use credlock::{Client, Revocation, Session, TransportError};

use crate::common::{Bed, TOKEN_ENDPOINT, seed_revocable};

/// Invariant 7 (no secret in errors): the refresh path withholds a transport error that
/// quotes a secret sent; the revocation path (`logout --revoke`) does not.
#[test]
fn review_a_revocation_transport_error_quoting_the_refresh_token_is_withheld() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let session = seed_revocable(&bed);
    let rt = session.refresh_token().secret().to_owned();
    bed.server
        .push_failure(Failure::Transport(TransportError::Other(format!(
            "malformed response header near \"token={rt}\""
        ))));
    let err = bed.store().logout(Revocation::Required).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(&rt),
        "the refresh token leaked through a revocation error: {shown}"
    );
}

/// A session file whose endpoint carries user information (written by a credlock from before
/// endpoints were validated, or by hand). `display_url` treats that as a password and hides it
/// in errors, but `Session`'s `Debug` (derived `Client` Debug; also in `NotSaved`'s Debug)
/// and `credlock status` print it.
fn session_with_password_in_endpoint(bed: &Bed) -> (Vec<u8>, &'static str) {
    const PASSWORD: &str = "hunter2-endpoint-pw";
    let session = bed.server.seed_session(TOKEN_ENDPOINT).expect("seed");
    let json = String::from_utf8(session.to_json()).expect("utf8").replace(
        TOKEN_ENDPOINT,
        "https://me:hunter2-endpoint-pw@auth.example.com/token",
    );
    (json.into_bytes(), PASSWORD)
}

#[test]
fn review_a_password_in_a_stored_endpoint_is_not_in_session_debug() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let (bytes, password) = session_with_password_in_endpoint(&bed);
    let session = Session::from_json(&bytes, &bed.path).expect("the file parses");
    let shown = format!("{session:?}");
    assert!(!shown.contains(password), "Debug shows it: {shown}");
}

#[cfg(feature = "cli")]
#[test]
fn review_status_does_not_print_a_password_in_the_stored_endpoint() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let (bytes, password) = session_with_password_in_endpoint(&bed);
    std::fs::write(&bed.path, bytes).expect("write");
    for args in [&["status"][..], &["--json", "status"][..]] {
        let out = crate::common::credlock(&bed.path, args)
            .output()
            .expect("run");
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!shown.contains(password), "{args:?} shows it: {shown}");
    }
}

/// Issue 9 A / invariant 8: "a 2xx that carries a rotated refresh token reaches disk before
/// anything else happens". serde_json refuses some bodies that are JSON by RFC 8259's grammar
/// (a number out of f64 range), or that real servers send (a Latin-1 byte in a vendor field,
/// a deeply nested claim): the whole body is then "not JSON" and the rotated refresh token,
/// already consumed on the server, is dropped; the next call meets invalid_grant and deletes
/// the session.
#[test]
fn review_a_rotated_refresh_token_survives_a_body_serde_json_refuses() {
    let splice = |extra: &'static [u8]| {
        move |m: serde_json::Map<String, serde_json::Value>| {
            let mut body = serde_json::to_vec(&m).expect("json");
            body.pop(); // the closing brace
            body.extend_from_slice(extra);
            body.push(b'}');
            body
        }
    };
    let nested: &'static [u8] = Box::leak(
        format!(r#","claims":{}1{}"#, "[".repeat(200), "]".repeat(200))
            .into_bytes()
            .into_boxed_slice(),
    );
    let cases: [(&str, &'static [u8]); 3] = [
        (
            "a vendor field 1e400 (ext_expires_in)",
            br#","ext_expires_in":1e400"#,
        ),
        ("a Latin-1 byte in a vendor field", b",\"name\":\"Jos\xe9\""),
        ("a claim nested 200 deep", nested),
    ];
    let mut lost = Vec::new();
    for (what, extra) in cases {
        let bed = Bed::new(ReusePolicy::RevokeGrant);
        bed.seed_expired();
        bed.server.reshape_next_success(splice(extra));
        let first = bed.store().access_token();
        let stored = bed.stored().expect("a session is still stored");
        if !bed.server.is_live(stored.refresh_token().secret()) {
            let next = bed.store().access_token();
            lost.push(format!("{what}: first {first:?}, then {next:?}"));
        }
    }
    assert!(
        lost.is_empty(),
        "rotated refresh token dropped:\n{}",
        lost.join("\n")
    );
}

/// Issue 9 G / F: HTTP 408 (Request Timeout) is a transient status (RFC 9110 §15.5.9: the
/// client may repeat the request), but any 4xx without an OAuth body is "log in again"
/// (`needs_login`, exit 3), and the still-valid token of item F is not handed out.
#[test]
fn review_http_408_is_transient_not_log_in_again() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    bed.server.push_failure(Failure::Status {
        status: 408,
        body: String::new(),
        retry_after: None,
    });
    let err = bed.store().access_token().unwrap_err();
    assert!(
        err.is_transient() && !err.needs_login(),
        "408 classified as {}: {err}",
        err.kind()
    );
}

/// Issue 9 H / README: "With `--json`, a failure is one object on stdout too". A usage error
/// that clap detects (an unknown lock mode, a bad flag value) prints clap's text on stderr and
/// nothing on stdout.
#[cfg(feature = "cli")]
#[test]
fn review_json_usage_errors_are_one_object_on_stdout() {
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

/// A 2xx body under the transport's 256 KiB cap is accepted and its unknown fields kept in
/// `extra`, but the session is saved pretty-printed: a vendor field holding a long list (one
/// line and one indentation per element) grows past the 1 MiB a session file may have, so
/// the save succeeds and every later read refuses the file (`NotASessionFile`): the session,
/// rotated refresh token included, can no longer be used. Never logged out, in the issue's
/// words, means the file credlock writes must be one credlock reads.
#[test]
fn review_a_session_credlock_saved_is_one_it_can_read_back() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    bed.server.reshape_next_success(|mut m| {
        let ones = vec![serde_json::json!(1); 110_000];
        m.insert("groups".into(), serde_json::json!({ "ids": [ones] }));
        let body = serde_json::to_vec(&m).expect("json");
        assert!(
            body.len() < 256 * 1024,
            "within the transport's cap: {}",
            body.len()
        );
        body
    });
    bed.store().access_token().expect("refreshed and saved");
    let size = std::fs::metadata(&bed.path).expect("saved").len();
    let reread = bed.store().load();
    assert!(
        matches!(reread, Ok(Some(_))),
        "the saved file ({size} bytes) cannot be read back: {reread:?}"
    );
}

/// Endpoint errors go through `display_url`, which hides user information only after a
/// `://`. A URL typed with one slash (`https:/user:pw@host/…`) is refused, and the refusal
/// quotes the password.
#[test]
fn review_an_endpoint_error_never_quotes_a_password() {
    let url = "https:/me:hunter2-endpoint-pw@auth.example.com/token";
    let err = Client::new(url, "cli", credlock::ClientAuth::None).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2-endpoint-pw"), "{shown}");
}
