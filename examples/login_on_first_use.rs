//! A small program that logs in on first use: it needs an access token, takes it from the
//! stored session when there is one, and otherwise logs the user in (one call:
//! `Store::access_token_or_login`), stores the session, and goes on.
//!
//! Without arguments it tests itself against the test kit's login endpoints on 127.0.0.1 (no
//! network), with a scripted user in place of a person: an approving user gives a token the
//! fake API accepts and a second run uses the stored session without a login; a denying
//! user ends in `LoginDenied` with nothing stored; the browser flow (PKCE, loopback
//! redirect) logs in too. It exits non-zero if any outcome is not the expected one.
//!
//! ```sh
//! cargo run --example login_on_first_use
//! cargo run --example login_on_first_use -- https://id.example.com my-cli ~/.config/my-cli/session.json
//! ```
//!
//! `main` returns `Result<(), credlock::Error>`: an error prints its message.

use std::process::ExitCode;
use std::time::Duration;

use credlock::{AccessToken, ClientAuth, Error, Flow, Login, Prompt, Store};
use credlock_test::{FakeServer, HttpServer, ScriptedUser, TEST_CLIENT_ID};

/// The program's one job with credlock: a token, logging in if that is what it takes.
fn token(store: &Store, login: &Login) -> Result<AccessToken, Error> {
    store.access_token_or_login(login, &mut |prompt| match prompt {
        Prompt::DeviceCode(code) => eprintln!(
            "To sign in, open {} and enter the code {}",
            code.verification_uri, code.user_code
        ),
        Prompt::Url(url) => eprintln!("To sign in, open {url}"),
        _ => {}
    })
}

fn main() -> Result<ExitCode, Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(self_test()),
        [issuer, client_id, session_file] => {
            let login = Login::discover(issuer, client_id.as_str(), ClientAuth::None)?
                .with_scopes(["openid"]);
            let token = token(&Store::new(session_file), &login)?;
            // Never print the token itself: say when it expires.
            let left = token
                .expires_at()
                .and_then(|at| at.duration_since(std::time::SystemTime::now()).ok());
            println!("signed in; the access token is valid for {left:?} more");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("usage: login_on_first_use [ISSUER CLIENT_ID SESSION_FILE]");
            Ok(ExitCode::from(2))
        }
    }
}

/// Runs the program against the test kit and checks each outcome.
fn self_test() -> ExitCode {
    let mut failures = Vec::new();
    let mut check = |ok: bool, what: &str| {
        eprintln!("{} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            failures.push(what.to_owned());
        }
    };
    let server = FakeServer::builder().build();
    let http = match HttpServer::start(server.clone()) {
        Ok(http) => http,
        Err(e) => {
            eprintln!("cannot start the test server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cannot make a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let login = match Login::discover(&http.issuer(), TEST_CLIENT_ID, ClientAuth::None) {
        Ok(login) => login
            .with_scopes(["openid"])
            .with_deadline(Duration::from_secs(30)),
        Err(e) => {
            eprintln!("discovery failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    check(
        login.flow() == Flow::Device,
        "the kit offers the device flow, chosen by default",
    );

    // First use: nothing stored, the user approves.
    let store = Store::new(dir.path().join("session.json"));
    let first = token(&store, &login);
    check(
        first.as_ref().is_ok_and(|t| api_accepts(&http, t)),
        "first use logs in, and the API accepts the token",
    );
    check(server.counters().logins == 1, "one login");
    // Second use: the stored session, no login.
    let second = token(&store, &login);
    check(
        matches!((&first, &second), (Ok(a), Ok(b)) if a.secret() == b.secret()),
        "the next use takes the stored session's token",
    );
    check(server.counters().logins == 1, "no second login");

    // A user who refuses: the login error, nothing stored.
    server.set_user(ScriptedUser::denies());
    let refused = Store::new(dir.path().join("refused.json"));
    let denied = token(&refused, &login);
    check(
        matches!(denied, Err(Error::LoginDenied { .. })),
        "a refusing user ends in LoginDenied",
    );
    check(
        refused.load().is_ok_and(|s| s.is_none()),
        "a refused login stores nothing",
    );

    // The browser flow, with the kit's scripted browser.
    server.set_user(ScriptedUser::approves());
    let browser = server.clone();
    let by_browser = login
        .clone()
        .with_flow(Flow::Browser)
        .with_browser(move |url| browser.open_browser(url));
    let tab = token(&Store::new(dir.path().join("browser.json")), &by_browser);
    check(
        tab.as_ref().is_ok_and(|t| api_accepts(&http, t)),
        "the browser flow logs in, and the API accepts the token",
    );
    check(server.counters().pkce_failures == 0, "PKCE verified");

    if failures.is_empty() {
        eprintln!("login_on_first_use: all checks passed");
        ExitCode::SUCCESS
    } else {
        eprintln!("login_on_first_use: {} check(s) failed", failures.len());
        ExitCode::FAILURE
    }
}

/// Whether the kit's API (`/resource`) accepts `token` over HTTP.
fn api_accepts(http: &HttpServer, token: &AccessToken) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .get(http.resource_url())
        .header("Authorization", format!("Bearer {}", token.secret()))
        .call()
        .is_ok_and(|r| r.status() == 200)
}
