//! The lease: one refresh across "machines" whose locks do not meet, stale leases broken.

use std::time::{Duration, Instant};

use credlock::testing::ReusePolicy;
use credlock::{LeaseRecord, LockMode};

use crate::common::{Bed, sixteen_threads_on_an_expired_session};

#[test]
fn sixteen_threads_with_only_the_lease_send_exactly_one_refresh() {
    let (bed, tokens) = sixteen_threads_on_an_expired_session(LockMode::Lease);
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    let c = bed.server.counters();
    assert_eq!((c.refresh_requests, c.invalid_grant), (1, 0), "{c:?}");
    assert!(
        !credlock::lease_path_for(&bed.path).exists(),
        "the holder removed its lease"
    );
}

#[test]
fn a_lease_left_by_a_killed_holder_on_this_machine_is_broken_at_once() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let mut holder = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn");
    let here = credlock::Holder::this_process();
    let record = LeaseRecord {
        host: here.host,
        pid: holder.id(),
        boot_id: here.boot_id,
        created_ms: now_ms(),
        ttl_ms: 30_000,
        nonce: "killed-holder".into(),
    };
    std::fs::write(credlock::lease_path_for(&bed.path), record.to_json()).expect("lease");
    holder.kill().expect("SIGKILL");
    holder.wait().expect("reap");
    let start = Instant::now();
    let token = bed
        .store()
        .with_lock_mode(LockMode::Lease)
        .access_token()
        .expect("refreshed");
    assert!(token.refreshed());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "not held up by the dead holder's TTL"
    );
}

#[test]
fn a_lease_of_another_machine_is_respected_until_its_ttl_then_broken() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    leave_remote_lease(&bed, 400);
    let start = Instant::now();
    let token = bed
        .store()
        .with_lock_mode(LockMode::Lease)
        .access_token()
        .expect("refreshed");
    let waited = start.elapsed();
    assert!(token.refreshed());
    assert!(
        waited >= Duration::from_millis(300),
        "waited for the remote holder: {waited:?}"
    );
    assert_eq!(bed.server.counters().refresh_requests, 1);
}

#[test]
fn a_lease_held_past_the_timeout_is_a_transient_error_naming_it() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    leave_remote_lease(&bed, 60_000);
    let err = bed
        .store()
        .with_lock_mode(LockMode::Lease)
        .with_lock_timeout(Duration::from_millis(150))
        .access_token()
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("session.json.lease"), "{err}");
    assert_eq!(bed.server.counters().refresh_requests, 0);
}

/// A live lease of a process on another machine, taken just now, for `ttl_ms`.
fn leave_remote_lease(bed: &Bed, ttl_ms: u64) {
    let record = LeaseRecord {
        host: "some-other-machine".into(),
        pid: 4242,
        boot_id: String::new(),
        created_ms: now_ms(),
        ttl_ms,
        nonce: "remote".into(),
    };
    std::fs::write(credlock::lease_path_for(&bed.path), record.to_json()).expect("lease");
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}
