//! No secret in any Debug, Display, error or event text, whatever goes wrong.

use std::sync::{Arc, Mutex};

use credlock::Clock as _;
use credlock::{Client, ClientAuth, Revocation, Secret, Session, TokenResponse, TransportError};
use credlock_test::{Failure, FakeServer, ManualClock, ReusePolicy};

use crate::common::{Bed, seed_revocable, session_with_password_in_endpoint};

const CLIENT_SECRET: &str = "client-SECRET-d7e1";

#[test]
fn no_token_or_secret_appears_in_any_text_credlock_produces() {
    let bed = Bed::with_client_secret(CLIENT_SECRET);
    let mut texts: Vec<String> = Vec::new();
    let mut secrets: Vec<String> = vec![CLIENT_SECRET.to_owned()];
    let events = Arc::new(Mutex::new(Vec::new()));

    let mut scenario = |failure: Option<Failure>, revoke: bool, corrupt_with_secret: bool| {
        let session = bed.seed_expired();
        secrets.push(session.access_token().secret().to_owned());
        secrets.push(session.refresh_token().secret().to_owned());
        if let Some(id) = session.extra().get("id_token").and_then(|v| v.as_str()) {
            secrets.push(id.to_owned());
        }
        texts.push(format!("{session:?}"));
        if let Some(f) = failure {
            bed.server.push_failure(f);
        }
        if revoke {
            bed.server.revoke_grant_of(session.refresh_token().secret());
        }
        if corrupt_with_secret {
            // A shape error whose serde message would quote the offending string.
            let json = String::from_utf8(bed.bytes()).expect("utf8");
            let broken = json.replace(
                "\"token_type\": \"Bearer\"",
                &format!("\"token_type\": [\"{}\"]", session.refresh_token().secret()),
            );
            std::fs::write(&bed.path, broken).expect("write");
        }
        let sink = Arc::clone(&events);
        let store = bed
            .store()
            .on_event(move |e| sink.lock().expect("lock").push(format!("{e} {e:?}")));
        texts.push(format!("{store:?}"));
        match store.access_token() {
            Ok(t) => {
                secrets.push(t.secret().to_owned());
                texts.push(format!("{t:?}"));
            }
            Err(e) => {
                texts.push(format!("{e} {e:?}"));
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    texts.push(s.to_string());
                    source = s.source();
                }
            }
        }
        if let Some(s) = store.load().ok().flatten() {
            texts.push(format!("{s:?}"));
        }
        if corrupt_with_secret {
            std::fs::remove_file(&bed.path).expect("rm");
        }
    };
    scenario(None, false, false);
    scenario(None, true, false);
    scenario(
        Some(Failure::Status {
            status: 400,
            body: r#"{"error":"invalid_request","error_description":"x"}"#.into(),
            retry_after: None,
        }),
        false,
        false,
    );
    scenario(
        Some(Failure::Status {
            status: 503,
            body: "down".into(),
            retry_after: Some("3".into()),
        }),
        false,
        false,
    );
    scenario(
        Some(Failure::Status {
            status: 200,
            body: r#"{"access_token":["leak-me-4f2a"],"token_type":"Bearer"}"#.into(),
            retry_after: None,
        }),
        false,
        false,
    );
    scenario(None, false, true);
    secrets.push("leak-me-4f2a".into());

    let response = TokenResponse::from_json(br#"{"access_token":"resp-at-9c1","token_type":"Bearer","refresh_token":"resp-rt-9c1","id_token":"resp-id-9c1"}"#)
        .expect("parses");
    secrets.extend(["resp-at-9c1", "resp-rt-9c1", "resp-id-9c1"].map(String::from));
    texts.push(format!("{response:?}"));
    let client = Client::new(
        "https://as.example/t",
        "cli",
        ClientAuth::Post {
            secret: Secret::new(CLIENT_SECRET),
        },
    )
    .expect("client");
    let session = Session::from_token_response(client, response, bed.clock.now()).expect("session");
    texts.push(format!(
        "{:?}",
        credlock::transport::FormRequest::refresh(&session)
    ));
    texts.push(format!("{session:?}"));

    texts.extend(events.lock().expect("lock").iter().cloned());
    assert!(texts.len() > 20, "the scenarios produced text to scan");
    for text in &texts {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "secret {secret:?} leaked in: {text}"
            );
        }
    }
}

/// Every run of `min` characters of `secret`, lowercased.
fn runs(secret: &str, min: usize) -> Vec<String> {
    let chars: Vec<char> = secret.to_lowercase().chars().collect();
    if chars.len() < min {
        return vec![chars.into_iter().collect()];
    }
    chars
        .windows(min)
        .map(|w| w.iter().collect::<String>())
        .collect()
}

/// One way a server may quote a secret.
type Encode = Box<dyn Fn(&str) -> String>;

/// Failure table: server text echoing a secret sent, in any encoding, any 8-character run
#[test]
fn a_secret_echoed_in_any_encoding_never_reaches_an_error() {
    use credlock::internal::{base64, form_urlencode};
    const SECRET: &str = "cs+/0==Zq;x y@K9~ab";
    let clock = ManualClock::starting_now();
    let server = FakeServer::builder()
        .client_auth(ClientAuth::Basic {
            secret: Secret::new(SECRET),
        })
        .clock(clock.clone())
        .build();
    let bed = Bed::from_parts(clock, server);
    let pair = format!(
        "{}:{}",
        credlock_test::TEST_CLIENT_ID,
        form_urlencode(SECRET)
    );
    let basic = base64(pair.as_bytes());
    let b64url = |s: &str| {
        base64(s.as_bytes())
            .replace('+', "-")
            .replace('/', "_")
            .trim_end_matches('=')
            .to_owned()
    };
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let html = |s: &str| {
        s.chars()
            .map(|c| format!("&#{};", u32::from(c)))
            .collect::<String>()
    };
    let json_u = |s: &str| {
        s.chars()
            .map(|c| format!("\\u{:04x}", u32::from(c)))
            .collect::<String>()
    };
    let encodings: Vec<(&str, Encode)> = vec![
        ("raw", Box::new(|s| s.to_owned())),
        ("form-encoded", Box::new(form_urlencode)),
        (
            "form-encoded, lowercase escapes",
            Box::new(|s| form_urlencode(s).to_lowercase()),
        ),
        (
            "percent-encoded, %20",
            Box::new(|s| form_urlencode(s).replace('+', "%20")),
        ),
        (
            "percent-decoded from form",
            Box::new(|s| form_urlencode(s).replace("%2B", "+")),
        ),
        (
            "double percent-encoded",
            Box::new(|s| form_urlencode(&form_urlencode(s))),
        ),
        ("base64", Box::new(|s| base64(s.as_bytes()))),
        (
            "base64 after one byte",
            Box::new(|s| base64(format!("x{s}").as_bytes())),
        ),
        ("base64url", Box::new(b64url)),
        ("hex", Box::new(hex)),
        ("html entities", Box::new(html)),
        ("literal \\u escapes", Box::new(json_u)),
        ("uppercased", Box::new(|s| s.to_uppercase())),
        (
            "cut short",
            Box::new(|s| s.chars().skip(2).take(9).collect()),
        ),
        (
            "the first eight characters",
            Box::new(|s| s.chars().take(8).collect()),
        ),
    ];
    let mut failures = Vec::new();
    for (what, encode) in &encodings {
        for target in ["refresh token", "client secret", "basic header"] {
            for (field, in_code) in [("error_description", false), ("error", true)] {
                let session = bed.seed_expired();
                let rt = session.refresh_token().secret().to_owned();
                let mut watched = runs(&rt, 8);
                watched.extend(runs(SECRET, 8));
                watched.extend(runs(&form_urlencode(SECRET), 8));
                watched.extend(runs(&basic, 8));
                let echoed = match target {
                    "refresh token" => encode(&rt),
                    "client secret" => encode(SECRET),
                    _ => encode(&format!("Basic {basic}")),
                };
                let echo = format!("bad {echoed}.");
                let body = if in_code {
                    serde_json::json!({"error": echo}).to_string()
                } else {
                    serde_json::json!({
                        "error": "invalid_request",
                        "error_description": echo,
                        "error_uri": echo,
                    })
                    .to_string()
                };
                bed.server.push_failure(Failure::Status {
                    status: 400,
                    body,
                    retry_after: None,
                });
                let err = bed.store().access_token().expect_err("rejected");
                let text = format!("{err} {err:?}").to_lowercase();
                if let Some(run) = watched.iter().find(|r| text.contains(r.as_str())) {
                    failures.push(format!("{what} {target} in {field}: {run:?} leaked"));
                }
                std::fs::remove_file(&bed.path).expect("rm");
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Invariant 7 (no secret in errors): a transport error that quotes the refresh token sent is
/// withheld on the revocation path (`logout --revoke`) as on the refresh path.
#[test]
fn a_revocation_transport_error_quoting_the_refresh_token_is_withheld() {
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

#[test]
fn a_password_in_a_stored_endpoint_is_not_in_session_debug() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let (bytes, password) = session_with_password_in_endpoint(&bed);
    let session = Session::from_json(&bytes, &bed.path).expect("the file parses");
    let shown = format!("{session:?}");
    assert!(!shown.contains(password), "Debug shows it: {shown}");
}

/// Invariant 7: endpoint errors go through `display_url`, which hides user information only
/// after a `://`. A URL typed with one slash (`https:/user:pw@host/…`) is refused, and the
/// refusal must not quote the password.
#[test]
fn an_endpoint_error_never_quotes_a_password() {
    let url = "https:/me:hunter2-endpoint-pw@auth.example.com/token";
    let err = Client::new(url, "cli", credlock::ClientAuth::None).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2-endpoint-pw"), "{shown}");
}
