use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::super::file::read_record;
use super::super::tests::{foreign, here};
use super::super::*;
use crate::clock::unix_ms;
use crate::wait::Acquired;

#[test]
fn the_fence_holds_while_the_lease_is_ours_and_fails_once_it_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json.lease");
    assert_eq!(
        Fence::current(&path).still_held().ok(),
        Some(()),
        "no lease in use"
    );
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
    let fence = Fence::current(&path);
    let before = fence.still_held();
    std::fs::remove_file(&path).expect("broken");
    std::fs::write(
        &path,
        foreign(unix_ms(SystemTime::now()), 30_000, "thief").to_json(),
    )
    .expect("retaken");
    let after = fence.still_held();
    drop(lease);
    assert!(before.is_ok());
    assert!(matches!(after, Err(Error::LeaseLost { .. })), "{after:?}");
    assert_eq!(
        read_record(&path).map(|r| r.nonce).as_deref(),
        Some("thief")
    );
    assert_eq!(Fence::current(&path), Fence::default(), "uninstalled");
    // A lease past its own TTL is lost by our clock, whatever the file says. A running
    // holder's heartbeat would renew it: this one is paused (its fence installed, no
    // heartbeat), as a stopped process's is.
    let b = path.with_extension("b");
    let paused = try_acquire(&b, Duration::from_millis(30), &here())
        .expect("io")
        .expect("taken");
    let lost = {
        let _fenced = FenceInstalled::new(&b, &paused.nonce, Arc::clone(&paused.expires_ms));
        std::thread::sleep(Duration::from_millis(40));
        Fence::current(&b).still_held()
    };
    assert!(matches!(lost, Err(Error::LeaseLost { .. })), "{lost:?}");
    assert_eq!(
        read_record(&b).map(|r| r.nonce),
        Some(paused.nonce.clone()),
        "the file still says ours: only the clock says lost"
    );
}
