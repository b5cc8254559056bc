//! A blocking command-line program that calls an API with credlock's token, and after an
//! HTTP 401 asks for a new token once (one refresh however many processes report it).
//!
//! Without arguments it runs against the test kit's fake token server and API on 127.0.0.1
//! (no network): the server's clock runs an hour ahead, so the API rejects a token credlock
//! still thinks valid, and the program recovers with one refresh.
//!
//! ```sh
//! cargo run --example blocking_cli
//! cargo run --example blocking_cli -- ~/.config/my-cli/session.json https://api.example.com/me
//! ```
//!
//! Exit codes follow the `credlock` CLI: 3 means "log in again", 4 "try again later".

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use credlock::{AccessToken, Store};
use credlock_test::{FakeServer, HttpServer, ManualClock};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => demo(),
        [session_file, url] => run(&store(session_file), url),
        _ => {
            eprintln!("usage: blocking_cli [SESSION_FILE URL]");
            ExitCode::from(2)
        }
    }
}

/// The store a real program would use. Events (waiting for the lock, refreshing, adopting a
/// sibling's session) are log lines without secrets; send them to your logger.
fn store(session_file: impl Into<std::path::PathBuf>) -> Store {
    Store::new(session_file).on_event(|event| eprintln!("credlock: {event}"))
}

fn run(store: &Store, url: &str) -> ExitCode {
    match call(store, url) {
        Ok(status) => {
            println!("HTTP {status}");
            if (200..300).contains(&status) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(Failure::Credlock(e)) => {
            eprintln!("error: {}", e.with_causes());
            ExitCode::from(if e.needs_login() {
                3
            } else if e.is_transient() {
                4
            } else {
                1
            })
        }
        Err(Failure::Http(e)) => {
            eprintln!("error: the API could not be reached: {e}");
            ExitCode::from(4)
        }
    }
}

enum Failure {
    Credlock(credlock::Error),
    Http(ureq::Error),
}

/// GETs `url` with a bearer token; after a 401, once more with a token refreshed for it.
fn call(store: &Store, url: &str) -> Result<u16, Failure> {
    // Statuses are answers, not errors: the 401 must be seen to be handled.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |token: &AccessToken| {
        agent
            .get(url)
            .header("Authorization", &format!("Bearer {}", token.secret()))
            .call()
            .map(|response| response.status().as_u16())
            .map_err(Failure::Http)
    };
    let token = store.access_token().map_err(Failure::Credlock)?;
    let status = get(&token)?;
    if status != 401 {
        return Ok(status);
    }
    eprintln!("the API answered 401 to a token that had not expired: asking for a new one");
    // The API rejected a token that had not expired (revoked early, or no expiry known):
    // refresh unless another process already has.
    let token = store
        .access_token_after_rejection(token.secret())
        .map_err(Failure::Credlock)?;
    get(&token)
}

/// The same program against the fake token server and its API, in a temporary directory.
fn demo() -> ExitCode {
    let server_clock = ManualClock::starting_now();
    let fake: Arc<FakeServer> = FakeServer::builder().clock(server_clock.clone()).build();
    let (http, dir) = match (HttpServer::start(Arc::clone(&fake)), tempfile::tempdir()) {
        (Ok(http), Ok(dir)) => (http, dir),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: could not set the demo up: {e}");
            return ExitCode::FAILURE;
        }
    };
    let store = store(dir.path().join("session.json"));
    if let Err(e) = fake
        .seed_session(&http.token_endpoint())
        .and_then(|session| store.save(&session))
    {
        eprintln!(
            "error: could not store the demo session: {}",
            e.with_causes()
        );
        return ExitCode::FAILURE;
    }
    // The server's clock is an hour ahead: its access token has expired there, not here.
    server_clock.advance(Duration::from_secs(3600));
    let code = run(&store, &http.resource_url());
    let refreshes = fake.counters().refresh_requests;
    println!("refresh requests: {refreshes}");
    // The demo is also a check (CI runs it): one refresh, after the 401.
    if refreshes != 1 {
        eprintln!("error: expected exactly one refresh");
        return ExitCode::FAILURE;
    }
    code
}
