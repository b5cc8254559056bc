//! An async service (tokio) that calls an API with credlock's token, and after an HTTP 401
//! asks once for a token refreshed for the rejected one. Every credlock call runs off the
//! runtime; the tasks of this process share one refresh in flight.
//!
//! Without arguments it runs against the test kit's fake token server and API on 127.0.0.1
//! (no network): the server's clock runs an hour ahead, so the API rejects the four tasks'
//! token, and one refresh serves all four.
//!
//! ```sh
//! cargo run --example async_service --features tokio
//! cargo run --example async_service --features tokio -- ~/.config/my-cli/session.json https://api.example.com/me
//! ```
//!
//! The HTTP client here is ureq (blocking) on tokio's blocking pool, to keep the example's
//! dependencies to credlock's own; an async client (reqwest, hyper) is used the same way.

use std::sync::Arc;
use std::time::Duration;

use credlock::{AccessToken, AsyncStore, Store};
use credlock_test::{FakeServer, HttpServer, ManualClock};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => demo().await,
        [session_file, url] => serve(&async_store(session_file), url).await,
        _ => {
            eprintln!("usage: async_service [SESSION_FILE URL]");
            std::process::exit(2);
        }
    }
}

fn async_store(session_file: impl Into<std::path::PathBuf>) -> AsyncStore {
    AsyncStore::new(Store::new(session_file).on_event(|e| eprintln!("credlock: {e}")))
}

/// Four concurrent requests, as a service handling four calls would make: one refresh at
/// most, shared by all four.
async fn serve(store: &AsyncStore, url: &str) -> Result<(), BoxError> {
    let url: Arc<str> = Arc::from(url);
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (store, url) = (store.clone(), Arc::clone(&url));
            tokio::spawn(async move { call(&store, &url).await })
        })
        .collect();
    for call in calls {
        let status = call.await??;
        println!("HTTP {status}");
        if !(200..300).contains(&status) {
            return Err(format!("the API answered {status}").into());
        }
    }
    Ok(())
}

async fn call(store: &AsyncStore, url: &Arc<str>) -> Result<u16, BoxError> {
    let token = store.access_token().await?;
    let status = get(url, &token).await?;
    if status != 401 {
        return Ok(status);
    }
    // The API rejected a token that had not expired (revoked early, or no expiry known):
    // a refresh for it, shared with the other tasks that report the same token.
    let token = store.access_token_after_rejection(token.secret()).await?;
    get(url, &token).await
}

/// GETs `url` with a bearer token; statuses are answers, not errors.
async fn get(url: &Arc<str>, token: &AccessToken) -> Result<u16, BoxError> {
    let (url, header) = (Arc::clone(url), format!("Bearer {}", token.secret()));
    let status = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        agent
            .get(&*url)
            .header("Authorization", &header)
            .call()
            .map(|r| r.status().as_u16())
    })
    .await??;
    Ok(status)
}

/// The same service against the fake token server and its API, in a temporary directory.
async fn demo() -> Result<(), BoxError> {
    let server_clock = ManualClock::starting_now();
    let fake = FakeServer::builder().clock(server_clock.clone()).build();
    let http = HttpServer::start(Arc::clone(&fake))?;
    let dir = tempfile::tempdir()?;
    let store = Store::new(dir.path().join("session.json"));
    store.save(&fake.seed_session(&http.token_endpoint())?)?;
    // The server's clock is an hour ahead: its access token has expired there, not here.
    server_clock.advance(Duration::from_secs(3600));
    serve(&AsyncStore::new(store), &http.resource_url()).await?;
    let refreshes = fake.counters().refresh_requests;
    println!("refresh requests: {refreshes}");
    // The demo is also a check (CI runs it): four rejected calls, one refresh.
    if refreshes != 1 {
        return Err(format!("expected one refresh for the four calls, saw {refreshes}").into());
    }
    Ok(())
}
