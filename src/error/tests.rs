use super::*;

fn session() -> Session {
    let client = crate::session::model::Client::new(
        "https://as.example/t",
        "c",
        crate::session::model::ClientAuth::None,
    )
    .expect("client");
    let response = crate::session::token_response::TokenResponse::from_json(
        br#"{"access_token":"a","refresh_token":"r"}"#,
    )
    .expect("response");
    Session::from_token_response(client, response, std::time::SystemTime::now()).expect("session")
}

/// Error-chain printers (anyhow, eyre, the CLI) print `source()` after `Display`: a
/// `Display` that quotes its source shows the cause twice.
#[test]
fn display_leaves_the_source_to_source() {
    let io = Error::Io {
        action: "write",
        path: PathBuf::from("/s.json"),
        source: std::io::Error::other("disk on fire"),
    };
    let not_saved = Error::NotSaved {
        session: Box::new(session()),
        source: Box::new(io.clone()),
    };
    let incomplete = Error::IncompleteRefresh {
        path: PathBuf::from("/s.json"),
        reason: "no access_token".into(),
        save_error: Some(Box::new(io.clone())),
    };
    for e in [&io, &not_saved, &incomplete] {
        let source = std::error::Error::source(e).map(ToString::to_string);
        assert!(source.is_some(), "{e:?} has a source");
        assert!(!e.to_string().contains("disk on fire"), "{e}");
        assert!(
            e.with_causes().ends_with(": disk on fire"),
            "{}",
            e.with_causes()
        );
    }
}

/// As ureq's `ensure_error_size`: every `Result<_, Error>` carries this much. 80 bytes
/// today (`Rejected`: a path and an `OAuthError`); growing it takes a deliberate change.
#[test]
fn the_error_stays_small() {
    // 80 bytes on Linux; a path is 8 bytes larger on Windows (its OsString keeps a UTF-8 flag).
    let bound = 56 + std::mem::size_of::<std::path::PathBuf>();
    assert!(
        std::mem::size_of::<Error>() <= bound,
        "{} bytes",
        std::mem::size_of::<Error>()
    );
}

#[test]
fn new_errors_clone_and_have_distinct_kinds() {
    let all = [
        Error::LoginDenied {
            description: None,
            via_redirect: false,
        },
        Error::LoginExpired { what: "x".into() },
        Error::LoginStateMismatch,
        Error::LoginRefused {
            endpoint: "e".into(),
            status: 400,
            oauth: None,
        },
        Error::LoginUnavailable {
            endpoint: "e".into(),
            reason: "r".into(),
        },
        Error::LoginInvalidResponse {
            endpoint: "e".into(),
            reason: "r".into(),
        },
        Error::LoginUnsupported {
            issuer: "i".into(),
            reason: "r".into(),
        },
        Error::LoginAborted { reason: "r".into() },
        Error::LoginRequestRejected {
            endpoint: "e".into(),
            status: 400,
            redirect_uri: "http://127.0.0.1:1/callback".into(),
        },
        Error::TransportSetup {
            path: Some(PathBuf::from("/ca.pem")),
            reason: "r".into(),
        },
    ];
    let kinds: std::collections::HashSet<_> = all.iter().map(Error::kind).collect();
    assert_eq!(kinds.len(), all.len());
    for e in &all {
        assert_eq!(e.clone().to_string(), e.to_string());
        let classes = [e.needs_login(), e.is_transient(), e.is_configuration()];
        assert!(
            classes.iter().filter(|c| **c).count() <= 1,
            "{e}: {classes:?}"
        );
    }
}

#[test]
fn question_mark_turns_an_unusable_token_response_into_an_error_that_quotes_nothing() {
    fn import(body: &[u8]) -> Result<crate::session::token_response::TokenResponse, Error> {
        Ok(crate::session::token_response::TokenResponse::from_json(
            body,
        )?)
    }
    let e = import(br#"{"access_token":["sekrit-zz"],"refresh_token":"rt-zz"}"#)
        .expect_err("no string access token");
    assert!(matches!(e, Error::InvalidTokenResponse { .. }), "{e:?}");
    assert_eq!(e.kind(), "invalid_token_response");
    assert_eq!(
        e.to_string(),
        "the token response is unusable (access_token is not a string); nothing was stored"
    );
    assert_eq!(e.clone().to_string(), e.to_string());
    let all = format!("{e} {e:?}");
    assert!(!all.contains("zz"), "{all}");
    assert!(!(e.needs_login() || e.is_transient() || e.is_configuration()));
}

/// A lock held for the whole wait is what a login in progress, or one killed on another
/// machine whose lease has not expired yet, looks like: nothing to call a bug.
#[test]
fn a_lock_timeout_names_the_ordinary_causes_and_never_calls_itself_a_bug() {
    for path in ["/s/session.json.lock", "/s/session.json.lease"] {
        let e = Error::LockTimeout {
            lock_path: PathBuf::from(path),
            waited: std::time::Duration::from_secs(10),
        };
        let text = e.to_string();
        assert!(!text.contains("bug"), "{text}");
        assert!(text.contains("logging in"), "{text}");
        assert!(text.contains("time-to-live"), "{text}");
    }
}

/// `fn main() -> Result<(), Error>` prints the error's `Debug`: it must say what happened
/// (the message and its causes), not just a variant name, and still name no secret.
#[test]
fn debug_says_what_happened_so_an_error_returned_from_main_is_readable() {
    let mismatch = format!("{:?}", Error::LoginStateMismatch);
    assert!(
        mismatch.contains("carried the wrong state") && mismatch.contains("login_state_mismatch"),
        "{mismatch}"
    );
    let not_saved = Error::NotSaved {
        session: Box::new(session()),
        source: Box::new(Error::Io {
            action: "write",
            path: PathBuf::from("/s.json"),
            source: std::io::Error::other("disk on fire"),
        }),
    };
    let shown = format!("{not_saved:?}");
    assert!(shown.contains("disk on fire"), "{shown}");
    // The session's tokens ("a", "r") are not quoted: only the message and its causes.
    assert!(
        !shown.contains("\"a\"") && !shown.contains("\"r\""),
        "{shown}"
    );
}
