//! A program that logs in with oauth2-rs and keeps the session with credlock (feature
//! `oauth2`): oauth2-rs's token response becomes credlock's `TokenResponse`, which one call
//! stores; from then on credlock refreshes it, once for every process that shares it.
//!
//! It runs against the test kit's fake token server on 127.0.0.1 (no network): the server's
//! answer to the login stands in for what `client.exchange_code(…).request(&http)` returns.
//!
//! ```sh
//! cargo run --example oauth2_glue --features oauth2
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use credlock::{Client, ClientAuth, Store, TokenResponse};
use credlock_test::{FakeServer, HttpServer, ManualClock, TEST_CLIENT_ID};
use oauth2::TokenResponse as _;
use oauth2::basic::BasicTokenResponse;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::starting_now();
    let fake = FakeServer::builder()
        .client_auth(ClientAuth::None)
        .clock(clock.clone())
        .build();
    let http = HttpServer::start(Arc::clone(&fake))?;
    let dir = tempfile::tempdir()?;

    // The login, done with oauth2-rs: its token response, and when it arrived.
    let theirs: BasicTokenResponse = serde_json::from_slice(&fake.seed().to_json())?;
    let received_at = SystemTime::now();
    println!(
        "oauth2-rs got a token response: expires in {:?}, refresh token: {}",
        theirs.expires_in(),
        theirs.refresh_token().is_some()
    );

    // One call from oauth2-rs's response to a saved session. `from_oauth2` counts
    // `expires_in` from `received_at`; `TokenResponse::from(&theirs)` would take "now".
    let store = Store::new(dir.path().join("session.json")).with_clock(clock.clone());
    let client = Client::new(http.token_endpoint(), TEST_CLIENT_ID, ClientAuth::None)?;
    let session =
        store.import_token_response(client, TokenResponse::from_oauth2(&theirs, received_at))?;
    println!(
        "stored; the access token expires at {:?}",
        session.expires_at()
    );

    // Every later call, in this process or another: credlock refreshes when it is due.
    clock.advance(Duration::from_secs(3600));
    let token = store.access_token()?;
    let refreshes = fake.counters().refresh_requests;
    println!(
        "an hour later: a token (refreshed: {}), {refreshes} refresh request(s)",
        token.refreshed()
    );
    // The demo is also a check (CI runs it): the imported session refreshed once.
    if !token.refreshed() || refreshes != 1 {
        return Err("expected the imported session to refresh once".into());
    }
    Ok(())
}
