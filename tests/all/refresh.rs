//! The refresh protocol, one process: upstream's cases, adapted, and error classification.

use std::time::Duration;

use credlock::Clock as _;
use credlock::{Client, ClientAuth, Error, Secret, Session, TokenResponse};
use credlock_test::{Failure, ReusePolicy};

use crate::common::{Bed, TOKEN_ENDPOINT};

/// Failure table: no file
#[test]
fn an_empty_store_has_no_session_and_asks_for_a_login() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    assert!(bed.store().load().expect("load").is_none());
    let err = bed.store().access_token().unwrap_err();
    assert!(matches!(err, Error::NoSession { .. }), "{err:?}");
    assert!(err.needs_login());
    assert!(err.to_string().contains("session.json"));
}

#[test]
fn a_saved_session_round_trips_with_the_fields_it_does_not_model() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let saved = bed.seed();
    let loaded = bed.stored().expect("a session");
    assert_eq!(loaded, saved);
    assert!(loaded.extra().contains_key("id_token"), "id_token survives");
    let json: serde_json::Value = serde_json::from_slice(&bed.bytes()).expect("json");
    assert_eq!(json["version"], 1);
}

#[test]
fn a_valid_session_is_returned_without_a_refresh() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let saved = bed.seed();
    let token = bed.store().access_token().expect("token");
    assert_eq!(token.secret(), saved.access_token().secret());
    assert!(!token.refreshed());
    assert_eq!(bed.server.counters().refresh_requests, 0);
}

#[test]
fn an_expired_session_is_refreshed_with_the_old_token_and_the_rotated_one_is_stored() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let old = bed.seed_expired();
    let token = bed.store().access_token().expect("token");
    assert!(token.refreshed());
    let stored = bed.stored().expect("stored");
    assert_eq!(stored.access_token().secret(), token.secret());
    assert_ne!(stored.refresh_token(), old.refresh_token(), "rotated");
    assert!(bed.server.is_live(stored.refresh_token().secret()));
    assert!(!bed.server.is_live(old.refresh_token().secret()));
    assert_eq!(bed.server.counters().refreshes_ok, 1);
    // The next call finds it fresh: no second request.
    bed.store().access_token().expect("token");
    assert_eq!(bed.server.counters().refresh_requests, 1);
}

#[test]
fn a_session_within_the_margin_is_refreshed_early() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed();
    bed.clock.advance(Duration::from_secs(3600 - 20));
    let token = bed.store().access_token().expect("token");
    assert!(token.refreshed(), "20 s left is inside the 30 s margin");
}

#[test]
fn a_short_lived_token_is_not_refreshed_on_every_call() {
    let bed = Bed::from_parts(
        credlock_test::ManualClock::starting_now(),
        credlock_test::FakeServer::builder()
            .access_ttl(Duration::from_secs(4))
            .build(),
    );
    // The server runs on the system clock here; the store's manual clock starts at the same
    // instant, so a 4 s token is fresh for 3 s (margin capped at a quarter of the lifetime).
    bed.seed();
    let store = bed.store();
    for _ in 0..5 {
        assert!(!store.access_token().expect("token").refreshed());
    }
    assert_eq!(bed.server.counters().refresh_requests, 0);
    bed.clock.advance(Duration::from_millis(3_050));
    assert!(store.access_token().expect("token").refreshed());
}

#[test]
fn a_rate_limit_is_transient_and_keeps_the_session_byte_for_byte() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let before = bed.bytes();
    bed.server.push_failure(Failure::Status {
        status: 429,
        body: String::new(),
        retry_after: Some("7".into()),
    });
    let err = bed.store().access_token().unwrap_err();
    assert!(err.is_transient() && !err.needs_login(), "{err:?}");
    assert!(
        matches!(&err, Error::Unavailable { retry_after: Some(r), .. } if *r == Duration::from_secs(7))
    );
    assert_eq!(bed.bytes(), before);
}

#[test]
fn server_errors_and_network_failures_are_transient_and_keep_the_session() {
    for failure in [
        Failure::Status {
            status: 500,
            body: "oops".into(),
            retry_after: None,
        },
        Failure::Status {
            status: 503,
            body: String::new(),
            retry_after: Some("120".into()),
        },
        Failure::Transport(credlock::TransportError::Connect(
            "connection refused".into(),
        )),
        Failure::Transport(credlock::TransportError::Timeout("global".into())),
    ] {
        let bed = Bed::new(ReusePolicy::RevokeGrant);
        bed.seed_expired();
        let before = bed.bytes();
        bed.server.push_failure(failure.clone());
        let err = bed.store().access_token().unwrap_err();
        assert!(err.is_transient(), "{failure:?} gave {err:?}");
        assert_eq!(bed.bytes(), before, "{failure:?} changed the store");
    }
}

/// Failure-table row "408, 425, 429, 5xx" (`Unavailable`, transient): HTTP 408 (Request
/// Timeout) is one the client may repeat (RFC 9110 §15.5.9), not the "log in again"
/// (`needs_login`, exit 3) of another 4xx without an OAuth body, so that the row "transient
/// failure while the stored access token has not expired" can still hand that token out.
#[test]
fn http_408_from_the_token_endpoint_is_transient_not_log_in_again() {
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

/// Failure table: 401, or 4xx `invalid_client` / `unauthorized_client` / `unsupported_grant_type`
#[test]
fn invalid_client_is_a_configuration_error_and_keeps_the_session() {
    let clock = credlock_test::ManualClock::starting_now();
    let server = credlock_test::FakeServer::builder()
        .client_auth(ClientAuth::Basic {
            secret: Secret::new("right"),
        })
        .clock(clock.clone())
        .build();
    let bed = Bed::from_parts(clock, server);
    let client = Client::new(
        TOKEN_ENDPOINT,
        credlock_test::TEST_CLIENT_ID,
        ClientAuth::Basic {
            secret: Secret::new("wrong"),
        },
    )
    .expect("client");
    let session =
        Session::from_token_response(client, bed.server.seed(), bed.clock.now()).expect("session");
    bed.store().save(&session).expect("save");
    bed.clock.advance(Duration::from_secs(3600));
    let before = bed.bytes();
    let err = bed.store().access_token().unwrap_err();
    assert!(
        matches!(&err, Error::Rejected { status: 401, oauth: Some(o), .. } if o.code == credlock::OAuthErrorCode::InvalidClient),
        "{err:?}"
    );
    assert!(err.is_configuration() && !err.needs_login() && !err.is_transient());
    assert!(
        err.to_string().contains("check the client's configuration"),
        "{err}"
    );
    assert_eq!(bed.bytes(), before);
}

#[test]
fn basic_and_post_client_authentication_both_refresh() {
    for auth in [
        ClientAuth::Basic {
            secret: Secret::new("p@ss:w/rd+%&=?"),
        },
        ClientAuth::Post {
            secret: Secret::new("p@ss:w/rd+%&=?"),
        },
        ClientAuth::None,
    ] {
        let clock = credlock_test::ManualClock::starting_now();
        let server = credlock_test::FakeServer::builder()
            .client_auth(auth.clone())
            .clock(clock.clone())
            .build();
        let bed = Bed::from_parts(clock, server);
        bed.seed_expired();
        let token = bed.store().access_token();
        assert!(token.is_ok_and(|t| t.refreshed()), "{}", auth.method_name());
    }
}

#[test]
fn a_token_response_without_refresh_token_cannot_start_a_session() {
    let client = Client::new(TOKEN_ENDPOINT, "cli", ClientAuth::None).expect("client");
    let response =
        TokenResponse::from_json(br#"{"access_token":"a","token_type":"Bearer","expires_in":60}"#)
            .expect("parses");
    let err =
        Session::from_token_response(client, response, std::time::SystemTime::now()).unwrap_err();
    assert!(matches!(err, Error::MissingRefreshToken));
    assert!(err.is_configuration() && !err.needs_login());
}

#[test]
fn unusable_success_responses_store_nothing() {
    for body in [
        "<html>hello</html>",
        r#"{"token_type":"Bearer"}"#,
        r#"{"access_token":""}"#,
        r#"{"access_token":5,"token_type":"Bearer"}"#,
        r#"[{"access_token":"a"}]"#,
        r#"{"error":"invalid_grant"}"#,
    ] {
        let bed = Bed::new(ReusePolicy::RevokeGrant);
        bed.seed_expired();
        let before = bed.bytes();
        bed.server.push_failure(Failure::Status {
            status: 200,
            body: body.into(),
            retry_after: None,
        });
        let err = bed.store().access_token().unwrap_err();
        assert!(
            matches!(err, Error::InvalidResponse { .. }),
            "{body}: {err:?}"
        );
        assert!(!err.needs_login());
        assert_eq!(bed.bytes(), before, "{body}");
    }
}

/// Failure table: 3xx (not followed)
#[test]
fn a_redirect_is_not_followed_and_keeps_the_session() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let before = bed.bytes();
    bed.server.push_failure(Failure::Status {
        status: 302,
        body: String::new(),
        retry_after: None,
    });
    let err = bed.store().access_token().unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert_eq!(bed.bytes(), before);
}

/// Failure table: token endpoint is plain `http://` to a non-loopback host
#[test]
fn a_plain_http_endpoint_that_is_not_loopback_gets_no_request() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let edited = String::from_utf8(bed.bytes())
        .expect("utf8")
        .replace(TOKEN_ENDPOINT, "http://auth.example.com/token");
    std::fs::write(&bed.path, edited).expect("edit");
    let err = bed.store().access_token().unwrap_err();
    assert!(matches!(err, Error::InsecureEndpoint { .. }), "{err:?}");
    assert_eq!(bed.server.counters().refresh_requests, 0);
}

/// Failure table: refresh succeeded, save failed (disk full, permissions, path replaced)
#[test]
fn a_refresh_that_cannot_be_saved_hands_back_the_new_session() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let path = bed.path.clone();
    bed.server.on_refresh(move |_| {
        // Something replaces the file with a directory while the request is in flight: the
        // save must refuse to replace it, and the caller still gets the new token.
        std::fs::remove_file(&path).expect("rm");
        std::fs::create_dir(&path).expect("mkdir");
    });
    let err = bed.store().access_token().unwrap_err();
    let Error::NotSaved { session, source } = err else {
        panic!("expected NotSaved, got {err:?}");
    };
    assert!(
        matches!(*source, Error::NotASessionFile { .. }),
        "{source:?}"
    );
    assert!(
        bed.server
            .is_access_token_valid(session.access_token().secret())
    );
    assert!(bed.path.is_dir(), "the directory was not replaced");
    assert!(bed.stray_files().is_empty(), "{:?}", bed.stray_files());
}

/// A change to a session file's JSON.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

/// Failure table: file does not parse after re-reads
#[test]
fn a_corrupt_session_file_names_the_missing_or_mistyped_field_and_no_value() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let session = bed.seed();
    let good: serde_json::Value = serde_json::from_slice(&bed.bytes()).expect("json");
    let rt = session.refresh_token().secret().to_owned();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "refresh_token",
            Box::new(|v| drop(v.as_object_mut().expect("obj").remove("refresh_token"))),
        ),
        (
            "obtained_at_ms",
            Box::new(|v| v["obtained_at_ms"] = "soon".into()),
        ),
        (
            "client.token_endpoint",
            Box::new(|v| {
                drop(
                    v["client"]
                        .as_object_mut()
                        .expect("obj")
                        .remove("token_endpoint"),
                )
            }),
        ),
        (
            "client.auth.method",
            Box::new(|v| v["client"]["auth"]["method"] = "kerberos".into()),
        ),
        (
            "token_type",
            Box::new({
                let rt = rt.clone();
                move |v| v["token_type"] = serde_json::json!([rt.clone()])
            }),
        ),
    ];
    for (field, edit) in cases {
        let mut v = good.clone();
        edit(&mut v);
        std::fs::write(&bed.path, serde_json::to_vec(&v).expect("json")).expect("write");
        let err = bed.store().load().expect_err("corrupt");
        assert!(matches!(err, Error::Corrupt { .. }), "{field}: {err:?}");
        let text = format!("{err} {err:?}");
        assert!(text.contains(field), "{field} is not named: {text}");
        assert!(!text.contains(&rt), "{field}: {text}");
    }
}

/// Failure table: 2xx with an unusable `expires_in`
#[test]
fn an_unreadable_expires_in_counts_as_five_minutes_and_a_missing_one_as_no_expiry() {
    for (value, lifetime) in [
        (serde_json::json!("soon"), Some(300)),
        (serde_json::json!(-1), Some(300)),
        (serde_json::json!(1e300), Some(300)),
        (serde_json::json!("3600.0"), Some(3600)),
        (serde_json::Value::Null, None),
    ] {
        let bed = Bed::new(ReusePolicy::RevokeGrant);
        bed.seed_expired();
        let v = value.clone();
        bed.server.reshape_next_success(move |mut m| {
            m.insert("expires_in".into(), v);
            serde_json::to_vec(&m).expect("json")
        });
        let token = bed.store().access_token().expect("refreshed");
        let ms = |t: Option<std::time::SystemTime>| {
            t.map(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .expect("after 1970")
                    .as_millis()
            })
        };
        let expected = ms(lifetime.map(|s| bed.clock.now() + Duration::from_secs(s)));
        assert_eq!(ms(token.expires_at()), expected, "{value}");
        assert_eq!(
            ms(bed.stored().expect("stored").expires_at()),
            expected,
            "{value}"
        );
        if lifetime == Some(300) {
            // Refreshed again once the five minutes (less the capped margin) are up.
            bed.clock.advance(Duration::from_secs(299));
            assert!(
                bed.store().access_token().expect("token").refreshed(),
                "{value}"
            );
        }
    }
}

/// Failure table: 2xx with a new `refresh_token` but no usable `access_token`
#[test]
fn a_success_with_a_new_refresh_token_but_no_access_token_saves_the_refresh_token_first() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let old = bed.seed_expired();
    bed.server.reshape_next_success(|mut m| {
        m.remove("access_token");
        serde_json::to_vec(&m).expect("json")
    });
    let err = bed.store().access_token().expect_err("no access token");
    assert!(
        matches!(
            &err,
            Error::IncompleteRefresh {
                save_error: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient() && !err.needs_login() && !err.is_configuration());
    assert!(err.to_string().contains("saved"), "{err}");
    let stored = bed.stored().expect("kept");
    assert_ne!(stored.refresh_token(), old.refresh_token());
    assert!(bed.server.is_live(stored.refresh_token().secret()));
    assert!(
        !bed.store().is_fresh(&stored),
        "the access token is marked expired"
    );
    let token = bed.store().access_token().expect("the next call refreshes");
    assert!(token.refreshed());
    assert_eq!(bed.server.counters().grants_revoked, 0);
}

/// Invariant 8 ("a 2xx that carries a rotated refresh token reaches disk before anything
/// else happens") and the failure-table row "2xx that serde_json refuses as a whole". serde_json refuses some bodies that are JSON by RFC 8259's grammar
/// (a number out of f64 range), or that real servers send (a Latin-1 byte in a vendor field,
/// a deeply nested claim): the whole body is then "not JSON" and the rotated refresh token,
/// already consumed on the server, is dropped; the next call meets invalid_grant and deletes
/// the session.
#[test]
fn a_rotated_refresh_token_survives_a_body_serde_json_refuses() {
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
