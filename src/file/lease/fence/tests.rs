use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::super::lease_file::read_record;
use super::super::tests::{foreign, here};
use super::super::*;
use crate::basics::clock::unix_ms;
use crate::basics::wait::Acquired;

#[test]
fn the_fence_holds_while_the_lease_is_ours_and_fails_once_it_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json.lease");
    let held = |path: &std::path::Path, ttl| match acquire(
        path,
        ttl,
        Duration::from_secs(1),
        &|| None::<()>,
    ) {
        Ok(Acquired::Held(h)) => h,
        other => panic!("{other:?}"),
    };
    let lease = held(&path, Duration::from_secs(30));
    let before = lease.fence().still_held();
    std::fs::remove_file(&path).expect("broken");
    std::fs::write(
        &path,
        foreign(unix_ms(SystemTime::now()), 30_000, "thief").to_json(),
    )
    .expect("retaken");
    let after = lease.fence().still_held();
    drop(lease);
    assert!(before.is_ok());
    assert!(matches!(after, Err(Error::LeaseLost { .. })), "{after:?}");
    assert_eq!(
        read_record(&path).map(|r| r.nonce).as_deref(),
        Some("thief")
    );
    // A lease past its own TTL is lost by our clock, whatever the file says. A running
    // holder's heartbeat would renew it: this one is paused (a fence, no heartbeat), as a
    // stopped process's is.
    let b = path.with_extension("b");
    let paused = try_acquire(&b, Duration::from_millis(30), &here())
        .expect("io")
        .expect("taken");
    let fence = Fence::new(&b, &paused.nonce, Arc::clone(&paused.expires_ms));
    std::thread::sleep(Duration::from_millis(40));
    let lost = fence.still_held();
    assert!(matches!(lost, Err(Error::LeaseLost { .. })), "{lost:?}");
    assert_eq!(
        read_record(&b).map(|r| r.nonce),
        Some(paused.nonce.clone()),
        "the file still says ours: only the clock says lost"
    );
}

#[test]
fn each_held_lease_fences_its_own_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.lease"), dir.path().join("b.lease"));
    let take = |path: &std::path::Path| match acquire(
        path,
        Duration::from_secs(30),
        Duration::from_secs(1),
        &|| None::<()>,
    ) {
        Ok(Acquired::Held(h)) => h,
        other => panic!("{other:?}"),
    };
    let (lease_a, lease_b) = (take(&a), take(&b));
    std::fs::remove_file(&a).expect("a broken");
    assert!(matches!(
        lease_a.fence().still_held(),
        Err(Error::LeaseLost { lease_path }) if lease_path == a
    ));
    assert!(lease_b.fence().still_held().is_ok(), "b is still ours");
}
