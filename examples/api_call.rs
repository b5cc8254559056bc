//! A blocking command-line program that calls an API with credlock's token, and after an
//! HTTP 401 asks for a new token once (one refresh however many processes report it).
//!
//! ```sh
//! cargo run --example api_call -- ~/.config/my-cli/session.json https://api.example.com/me
//! ```
//!
//! Exit codes follow the `credlock` CLI: 3 means "log in again", 4 "try again later".

use std::process::ExitCode;

use credlock::{AccessToken, Store};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [session_file, url] = args.as_slice() else {
        eprintln!("usage: api_call SESSION_FILE URL");
        return ExitCode::from(2);
    };
    // Events (waiting for the lock, refreshing, adopting a sibling's session) are log lines
    // without secrets; a real program would send them to its logger.
    let store = Store::new(session_file).on_event(|event| eprintln!("credlock: {event}"));
    match call(&store, url) {
        Ok(status) => {
            println!("HTTP {status}");
            ExitCode::SUCCESS
        }
        Err(Failure::Credlock(e)) => {
            eprintln!("error: {e}");
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
    // The API rejected a token that had not expired (revoked early, or no expiry known):
    // refresh unless another process already has.
    let token = store
        .access_token_after_rejection(token.secret())
        .map_err(Failure::Credlock)?;
    get(&token)
}
