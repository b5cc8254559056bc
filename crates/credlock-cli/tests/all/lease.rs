//! The lease between processes: `credlock race-child`s released together. (The lease itself
//! is in the library's `tests/all/lease.rs`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use credlock::internal::LeaseRecord;
use credlock_test::ReusePolicy;

use crate::common::remote_record;

/// The same race between processes: one stale lease, six `credlock race-child --lock lease`
/// released at once against a grant-revoking server over loopback HTTP, each round.
/// `CREDLOCK_BREAK_PROCESS_ROUNDS` sets the rounds (default 200).
#[test]
fn two_hundred_rounds_of_one_stale_lease_and_six_processes_refresh_once_per_round() {
    use credlock_test::{FakeServer, HttpServer};
    let rounds: usize = std::env::var("CREDLOCK_BREAK_PROCESS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        // Wine stops creating processes ("Internal error", 1359) after about a thousand.
        .unwrap_or(if cfg!(windows) { 20 } else { 200 });
    let started = Instant::now();
    for round in 0..rounds {
        let fake = FakeServer::builder()
            .policy(ReusePolicy::RevokeGrant)
            .latency(Duration::from_millis(5))
            .build();
        let http = HttpServer::start(Arc::clone(&fake)).expect("server");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.json");
        let seeded = fake
            .seed_session(&http.token_endpoint())
            .expect("seed")
            .with_expires_at(std::time::SystemTime::now());
        credlock::Store::new(&path).save(&seeded).expect("save");
        let stale = LeaseRecord {
            created_ms: 0,
            ttl_ms: 1,
            ..remote_record("stale", 1)
        };
        std::fs::write(crate::common::lease_path(&path), stale.to_json()).expect("lease");
        let answers = crate::common::released_together(&[(path.as_path(), "lease"); 6]);
        let c = fake.counters();
        let stored = credlock::Store::new(&path)
            .load()
            .expect("load")
            .expect("a session");
        assert!(
            c.refresh_requests == 1
                && c.invalid_grant == 0
                && fake.is_live(stored.refresh_token().secret())
                && answers
                    .iter()
                    .all(|a| a["token"].as_str() == Some(stored.access_token().secret())),
            "round {round}: {c:?}, answers {answers:?}"
        );
    }
    eprintln!(
        "stale-lease break: {rounds} rounds x 6 processes, one refresh each, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
