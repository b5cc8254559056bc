//! proptest strategies for credlock's inputs (feature `proptest`).
//!
//! # A consumer's property test
//! Your code calls credlock before every API request. Does it always send a token the server
//! accepts, whatever the clock does and whatever the server throws at it? The fake server,
//! the manual clock, a forced lock mode and filesystem kind, and these strategies let you ask:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use proptest::prelude::*;
//! use credlock::{FsKind, LockMode, Store};
//! use credlock_test::{strategies, FakeServer, FakeTransport, ManualClock, ReusePolicy};
//!
//! /// The consumer's code under test: builds the header for an API call.
//! fn authorization_header(store: &Store) -> Result<String, credlock::Error> {
//!     Ok(format!("Bearer {}", store.access_token()?.secret()))
//! }
//!
//! proptest!(ProptestConfig::with_cases(32), |(
//!     steps in proptest::collection::vec((0u64..7_200, strategies::failure()), 1..8),
//!     auth in strategies::client_auth(),
//! )| {
//!     let clock = ManualClock::starting_now();
//!     let server = FakeServer::builder()
//!         .policy(ReusePolicy::RevokeGrant)
//!         .client_auth(auth)
//!         .clock(clock.clone())
//!         .build();
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = Store::new(dir.path().join("session.json"))
//!         .with_clock(clock.clone())
//!         .with_transport(Arc::new(FakeTransport::new(server.clone())))
//!         .with_lock_mode(LockMode::Auto)
//!         .with_filesystem_kind(FsKind::Local);
//!     store.save(&server.seed_session("http://127.0.0.1/token").unwrap()).unwrap();
//!     for (seconds, failure) in steps {
//!         clock.advance(Duration::from_secs(seconds));
//!         if let Some(f) = failure { server.push_failure(f); }
//!         match authorization_header(&store) {
//!             Ok(h) => prop_assert!(server.is_access_token_valid(h.trim_start_matches("Bearer "))),
//!             // A scripted failure may surface; it must never cost the session.
//!             Err(e) => prop_assert!(!e.needs_login() && store.load().unwrap().is_some(), "{e}"),
//!         }
//!     }
//! });
//! ```

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::server::Failure;
use credlock::Secret;
use credlock::TokenResponse;
use credlock::transport::TransportError;
use credlock::{Client, ClientAuth, Session};

/// Secrets: printable ASCII, including every character that needs form-urlencoding.
pub fn secret() -> impl Strategy<Value = Secret> {
    "[ -~]{1,40}".prop_map(Secret::new)
}

/// Any client authentication method, with arbitrary secrets.
pub fn client_auth() -> impl Strategy<Value = ClientAuth> {
    prop_oneof![
        secret().prop_map(|secret| ClientAuth::Basic { secret }),
        secret().prop_map(|secret| ClientAuth::Post { secret }),
        Just(ClientAuth::None),
    ]
}

fn extra_fields() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map(
        "[a-z_]{1,12}".prop_filter("not a modelled field", |k| {
            !matches!(
                k.as_str(),
                "access_token" | "token_type" | "expires_in" | "refresh_token" | "scope"
            )
        }),
        prop_oneof![
            "[ -~]{0,30}".prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
        ],
        0..4,
    )
    .prop_map(|m| m.into_iter().collect())
}

/// Valid token response bodies (RFC 6749 §5.1), with optional and unknown fields.
pub fn token_response_json() -> impl Strategy<Value = Value> {
    (
        "[ -~]{1,60}",
        prop_oneof![
            Just("Bearer".to_owned()),
            Just("bearer".to_owned()),
            "[A-Za-z]{1,10}"
        ],
        proptest::option::of(0u64..10_000_000),
        proptest::option::of("[ -~]{1,60}"),
        proptest::option::of("[a-z:_ ]{0,40}"),
        extra_fields(),
    )
        .prop_map(|(access, token_type, expires_in, refresh, scope, extra)| {
            let mut m = extra;
            m.insert("access_token".into(), access.into());
            m.insert("token_type".into(), token_type.into());
            if let Some(e) = expires_in {
                m.insert("expires_in".into(), e.into());
            }
            if let Some(r) = refresh {
                m.insert("refresh_token".into(), r.into());
            }
            if let Some(s) = scope {
                m.insert("scope".into(), s.into());
            }
            Value::Object(m)
        })
}

/// Parsed valid token responses.
pub fn token_response() -> impl Strategy<Value = TokenResponse> {
    token_response_json().prop_filter_map("parses", |v| {
        TokenResponse::from_json(v.to_string().as_bytes()).ok()
    })
}

/// Hostile or broken token endpoint bodies: not JSON, the wrong shape, missing or mistyped
/// fields, huge or negative numbers, error bodies, deep nesting, random bytes.
///
/// Served with [`crate::FakeServer::reshape_next_success`], such a body models an
/// **unrecoverable server**: the server has already rotated the refresh token when it sends
/// the broken answer, so a body the client cannot use leaves it holding a dead refresh token.
/// The session cannot be refreshed again: the next refresh gets `invalid_grant` (unless a
/// [`crate::ReusePolicy::Grace`] still accepts the old token) and a login is needed
/// ([`credlock::Error::needs_login`]). A property built on the pair should expect that, never a
/// silent recovery; for a failure the client recovers from, script a
/// [`crate::Failure`] instead (nothing is rotated).
pub fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        Just(b"<html><body>Sign in</body></html>".to_vec()),
        Just(b"null".to_vec()),
        Just(b"[]".to_vec()),
        Just(br#"{"access_token":null,"token_type":"Bearer"}"#.to_vec()),
        Just(br#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#.to_vec()),
        Just(br#"{"access_token":"a","token_type":"Bearer","expires_in":1e400}"#.to_vec()),
        Just(br#"{"error":"invalid_grant"}"#.to_vec()),
        (1usize..200)
            .prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
        token_response_json()
            .prop_flat_map(|v| {
                let keys: Vec<String> = v
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                (
                    Just(v),
                    proptest::sample::select(keys),
                    prop_oneof![
                        Just(Value::Null),
                        Just(json!(42)),
                        Just(json!(["x"])),
                        Just(json!({"nested": true})),
                    ],
                )
            })
            .prop_map(|(mut v, key, replacement)| {
                v[key.as_str()] = replacement;
                v.to_string().into_bytes()
            }),
    ]
}

/// Sessions for a client at `token_endpoint` (which must be https or loopback http).
pub fn session(token_endpoint: &str) -> impl Strategy<Value = Session> + use<> {
    let endpoint = token_endpoint.to_owned();
    (
        client_auth(),
        "[A-Za-z0-9._-]{1,20}",
        token_response_json(),
        "[ -~]{1,60}",
        0u64..4_000_000_000_000,
    )
        .prop_filter_map(
            "a valid session",
            move |(auth, client_id, mut body, refresh, now_ms)| {
                body["refresh_token"] = refresh.into();
                let client = Client::new(endpoint.clone(), client_id, auth).ok()?;
                let response = TokenResponse::from_json(body.to_string().as_bytes()).ok()?;
                let now =
                    std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(now_ms);
                Session::from_token_response(client, response, now).ok()
            },
        )
}

/// `None` (the server behaves) or a scripted failure that must never cost the session:
/// 429, 5xx, garbage, a timeout, a refused connection.
pub fn failure() -> impl Strategy<Value = Option<Failure>> {
    prop_oneof![
        3 => Just(None),
        1 => prop_oneof![Just(429u16), Just(500), Just(502), Just(503)].prop_map(|status| Some(Failure::Status {
            status,
            body: String::new(),
            retry_after: None,
        })),
        1 => hostile_body()
            // A scripted answer rotates nothing, so it must not carry a refresh token: a real
            // 2xx with one has rotated, and credlock stores it.
            .prop_filter("neither a token nor an error", |b| {
                !b.windows(5).any(|w| w == b"error")
                    && !b.windows(13).any(|w| w == b"refresh_token")
                    && TokenResponse::from_json(b).is_err()
            })
            .prop_map(|b| Some(Failure::Status {
                status: 200,
                body: String::from_utf8_lossy(&b).into_owned(),
                retry_after: None,
            })),
        1 => Just(Some(Failure::Transport(TransportError::Timeout("scripted".into())))),
        1 => Just(Some(Failure::Transport(TransportError::Connect("scripted".into())))),
    ]
}
