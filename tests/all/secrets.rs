//! No secret in any Debug, Display, error or event text, whatever goes wrong.

use std::sync::{Arc, Mutex};

use credlock::Clock as _;
use credlock::testing::{Failure, FakeServer, ManualClock, ReusePolicy};
use credlock::{Client, ClientAuth, Secret, Session, TokenResponse};

use crate::common::Bed;

const CLIENT_SECRET: &str = "client-SECRET-d7e1";

#[test]
fn no_token_or_secret_appears_in_any_text_credlock_produces() {
    let clock = ManualClock::starting_now();
    let server = FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .client_auth(ClientAuth::Basic {
            secret: Secret::new(CLIENT_SECRET),
        })
        .clock(clock.clone())
        .build();
    let bed = Bed::from_parts(clock, server);
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
    texts.push(format!("{:?}", credlock::FormRequest::refresh(&session)));
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
