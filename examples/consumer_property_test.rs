//! A consumer's property test: does my code always send a token the server accepts, whatever
//! the clock does and whatever the server throws at it?
//!
//! It uses credlock's test kit (the crate `credlock-test` with its feature `proptest`): a fake
//! token server that rotates refresh tokens and revokes the grant on reuse, a manual clock,
//! and strategies for server failures. It needs `credlock-test`, `tempfile` and `proptest` as
//! your dev-dependencies.
//!
//! ```sh
//! cargo run --example consumer_property_test
//! ```

use std::sync::Arc;
use std::time::Duration;

use credlock::{FsKind, Store};
use credlock_test::{FakeServer, FakeTransport, ManualClock, ReusePolicy, strategies};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The consumer's code under test: the header for an API call.
fn authorization_header(store: &Store) -> Result<String, credlock::Error> {
    Ok(format!("Bearer {}", store.access_token()?.secret()))
}

fn main() {
    let steps = proptest::collection::vec((0u64..7_200, strategies::failure()), 1..12);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        // An example has no source tree to persist failing cases into.
        failure_persistence: None,
        ..Config::default()
    });
    let verdict = runner.run(&(steps, strategies::client_auth()), |(steps, auth)| {
        let clock = ManualClock::starting_now();
        let server = FakeServer::builder()
            .policy(ReusePolicy::RevokeGrant)
            .client_auth(auth)
            .clock(clock.clone())
            .build();
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let store = Store::new(dir.path().join("session.json"))
            .with_clock(clock.clone())
            .with_transport(Arc::new(FakeTransport::new(server.clone())))
            .with_filesystem_kind(FsKind::Local);
        let session = server
            .seed_session("http://127.0.0.1/token")
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        store
            .save(&session)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (seconds, failure) in steps {
            clock.advance(Duration::from_secs(seconds));
            if let Some(f) = failure {
                server.push_failure(f);
            }
            match authorization_header(&store) {
                Ok(h) => {
                    prop_assert!(server.is_access_token_valid(h.trim_start_matches("Bearer ")));
                }
                // A scripted failure may surface; it must never cost the session.
                Err(e) => {
                    let kept = store.load().ok().flatten().is_some();
                    prop_assert!(!e.needs_login() && kept, "{e}");
                }
            }
        }
        Ok(())
    });
    match verdict {
        Ok(()) => println!("64 cases passed"),
        Err(e) => {
            eprintln!("property failed: {e}");
            std::process::exit(1);
        }
    }
}
