//! A session from a token response in one call: `Store::import_json` and
//! `Store::import_token_response` save under the lock, atomically, and hand back the session.

use std::time::Duration;

use credlock::{Client, ClientAuth, Clock, Error, Secret, TokenResponse};
use credlock_test::ReusePolicy;

use crate::common::{Bed, TOKEN_ENDPOINT};

const BODY: &[u8] = br#"{"access_token":"at-imported","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-imported","scope":"openid","id_token":"idtok"}"#;

fn client() -> Client {
    Client::new(TOKEN_ENDPOINT, "cli", ClientAuth::None).expect("loopback http")
}

#[test]
fn an_imported_body_is_saved_and_returned_with_its_expiry_counted_by_the_store_clock() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let session = bed.store().import_json(client(), BODY).expect("imported");
    let now = bed.clock.now();
    let obtained = session.obtained_at();
    assert!(
        obtained <= now && now < obtained + Duration::from_millis(1),
        "obtained at the store clock's now (in whole ms)"
    );
    assert_eq!(
        session.expires_at(),
        Some(obtained + Duration::from_secs(3600))
    );
    assert_eq!(session.id_token(), Some("idtok"));
    assert_eq!(bed.stored(), Some(session));
    assert!(bed.stray_files().is_empty(), "{:?}", bed.stray_files());
    #[cfg(unix)]
    assert_eq!(bed.store().file_mode(), Some(0o600));
}

#[test]
fn an_import_replaces_the_stored_session_and_the_next_token_is_its_own() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed();
    let response = TokenResponse::builder(Secret::new("at-built"))
        .refresh_token(Secret::new("rt-built"))
        .expires_in(Duration::from_secs(600))
        .build();
    let session = bed
        .store()
        .import_token_response(client(), response)
        .expect("imported");
    assert_eq!(session.refresh_token().secret(), "rt-built");
    let token = bed.store().access_token().expect("a token");
    assert_eq!(token.secret(), "at-built");
    assert_eq!(bed.server.counters().refresh_requests, 0);
}

#[test]
fn an_import_waits_for_the_lock_and_hands_the_session_back_when_it_cannot_save() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let seeded = bed.seed();
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(crate::common::lock_path(&bed.path))
        .expect("the lock file a save created");
    let mut holder = fd_lock::RwLock::new(lock);
    let _held = holder.try_write().expect("hold the lock");
    let err = bed
        .store()
        .with_lock_timeout(Duration::from_millis(100))
        .import_json(client(), BODY)
        .expect_err("the lock is held");
    let Error::NotSaved { session, source } = &err else {
        panic!("expected NotSaved, got {err:?}");
    };
    assert_eq!(session.access_token().secret(), "at-imported");
    assert!(matches!(**source, Error::LockTimeout { .. }), "{source:?}");
    assert_eq!(
        bed.stored(),
        Some(seeded),
        "the stored session is untouched"
    );
}

#[test]
fn an_unusable_body_or_one_without_a_refresh_token_stores_nothing() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let store = bed.store();
    let err = store
        .import_json(client(), br#"<html>at-secret</html>"#)
        .expect_err("not JSON");
    assert!(matches!(err, Error::InvalidTokenResponse { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("at-secret"));
    let err = store
        .import_json(client(), br#"{"access_token":"at-1","expires_in":60}"#)
        .expect_err("no refresh token");
    assert!(matches!(err, Error::MissingRefreshToken), "{err:?}");
    assert!(err.is_configuration());
    assert!(!bed.path.exists());
    assert_eq!(bed.stored(), None);
}

#[cfg(feature = "oauth2")]
#[test]
fn an_oauth2_response_received_ten_minutes_ago_is_stored_with_the_fifty_it_has_left() {
    use oauth2::basic::{BasicTokenResponse, BasicTokenType};
    use oauth2::{AccessToken, EmptyExtraTokenFields, RefreshToken};

    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let mut theirs = BasicTokenResponse::new(
        AccessToken::new("at-oauth2".into()),
        BasicTokenType::Bearer,
        EmptyExtraTokenFields {},
    );
    theirs.set_expires_in(Some(&Duration::from_secs(3600)));
    theirs.set_refresh_token(Some(RefreshToken::new("rt-oauth2".into())));
    let received_at = std::time::SystemTime::now() - Duration::from_secs(600);
    let response = TokenResponse::from_oauth2(&theirs, received_at);
    let session = bed
        .store()
        .import_token_response(client(), response)
        .expect("imported");
    let left = session
        .expires_at()
        .and_then(|at| at.duration_since(session.obtained_at()).ok())
        .expect("an expiry after the import");
    assert!(
        (2_998..=3_000).contains(&left.as_secs()),
        "{left:?} left of 3600 s received 600 s ago"
    );
    assert_eq!(
        bed.stored().map(|s| s.token_type().to_owned()),
        Some("Bearer".into())
    );
}

#[test]
fn an_import_without_an_access_token_is_refused_and_keeps_the_stored_session() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let seeded = bed.seed();
    let response = TokenResponse::builder(Secret::new(""))
        .refresh_token(Secret::new("rt-built"))
        .expires_in(Duration::from_secs(600))
        .build();
    let e = bed
        .store()
        .import_token_response(client(), response)
        .expect_err("an empty access token is not a session");
    assert!(matches!(e, Error::InvalidTokenResponse { .. }), "{e:?}");
    assert_eq!(bed.stored(), Some(seeded));
}
