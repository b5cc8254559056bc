//! An async service (tokio) that calls an API with credlock's token, and after an HTTP 401
//! asks once for a token refreshed for the rejected one. Every credlock call runs off the
//! runtime; the tasks of this process share one refresh in flight.
//!
//! ```sh
//! cargo run --example async_service --features tokio -- ~/.config/my-cli/session.json https://api.example.com/me
//! ```
//!
//! The HTTP client here is ureq (blocking) on tokio's blocking pool, to keep the example's
//! dependencies to credlock's own; an async client (reqwest, hyper) is used the same way.

use std::sync::Arc;

use credlock::{AccessToken, AsyncStore, Store};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [session_file, url] = args.as_slice() else {
        eprintln!("usage: async_service SESSION_FILE URL");
        std::process::exit(2);
    };
    let store = AsyncStore::new(Store::new(session_file).on_event(|e| eprintln!("credlock: {e}")));
    let url: Arc<str> = Arc::from(url.as_str());
    // Four concurrent requests, as a service handling four calls would make: one refresh at
    // most, shared by all four.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (store, url) = (store.clone(), Arc::clone(&url));
            tokio::spawn(async move { call(&store, &url).await })
        })
        .collect();
    for call in calls {
        println!("HTTP {}", call.await??);
    }
    Ok(())
}

async fn call(
    store: &AsyncStore,
    url: &Arc<str>,
) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    let token = store.access_token().await?;
    let status = get(url, &token).await?;
    if status != 401 {
        return Ok(status);
    }
    let token = store.access_token_after_rejection(token.secret()).await?;
    get(url, &token).await
}

/// GETs `url` with a bearer token; statuses are answers, not errors.
async fn get(
    url: &Arc<str>,
    token: &AccessToken,
) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
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
