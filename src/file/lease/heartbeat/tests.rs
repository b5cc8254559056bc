use std::time::{Duration, Instant, SystemTime};

use super::super::lease_file::read_record;
use super::super::tests::{foreign, here};
use super::super::*;
use super::BreakLock;
use crate::basics::clock::unix_ms;

#[test]
fn a_lease_is_kept_alive_while_its_critical_section_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json.lease");
    // Renewals every 100 ms: room for a loaded machine's scheduling delays.
    let ttl = Duration::from_millis(300);
    let held = match acquire(&path, ttl, Duration::from_secs(1), &|| None::<()>) {
        Ok(Acquired::Held(h)) => h,
        other => panic!("{other:?}"),
    };
    let fence = held.fence().clone();
    // A critical section four TTLs long: a slow token endpoint, say.
    for _ in 0..12 {
        std::thread::sleep(Duration::from_millis(100));
        let other = std::thread::scope(|s| {
            s.spawn(|| try_acquire(&path, ttl, &here()).expect("io").is_some())
                .join()
                .expect("join")
        });
        assert!(
            !other,
            "another waiter broke a lease whose holder is running"
        );
        fence.still_held().expect("still held");
    }
    drop(held);
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
    assert!(left.is_empty(), "released, nothing left behind: {left:?}");
}

#[test]
fn a_holder_whose_heartbeat_stops_loses_its_lease_after_the_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json.lease");
    let ttl = Duration::from_millis(300);
    let ours = try_acquire(&path, ttl, &here())
        .expect("io")
        .expect("taken");
    let beating = ours.keep_alive();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        try_acquire(&path, ttl, &here()).expect("io").is_none(),
        "renewed past its first TTL"
    );
    // Paused, or killed: no more renewals.
    drop(beating);
    std::thread::sleep(Duration::from_millis(400));
    let theirs = try_acquire(&path, ttl, &here()).expect("io");
    assert!(theirs.is_some(), "broken once a TTL passed without renewal");
    drop(ours);
    assert_eq!(
        read_record(&path).map(|r| r.nonce),
        theirs.as_ref().map(|t| t.nonce.clone()),
        "the old holder's release left the new lease alone"
    );
}

#[test]
fn the_heartbeat_never_writes_back_a_lease_another_process_broke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json.lease");
    let ttl = Duration::from_millis(60);
    let ours = try_acquire(&path, ttl, &here())
        .expect("io")
        .expect("taken");
    let beating = ours.keep_alive();
    {
        // Another process breaks it and takes its own, as breakers do: under the
        // breaker lock.
        let _breaking = loop {
            if let Some(b) = BreakLock::take(&path, ttl, &here()).expect("io") {
                break b;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        std::fs::remove_file(&path).expect("broken");
        let theirs = foreign(unix_ms(SystemTime::now()), 60_000, "theirs");
        std::fs::write(&path, theirs.to_json()).expect("retaken");
    }
    // The heartbeat (every 20 ms) meets the lease gone and stops; waited for with room.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !beating.thread.as_ref().is_some_and(|t| t.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        read_record(&path).map(|r| r.nonce).as_deref(),
        Some("theirs")
    );
    let heartbeat_ended = beating.thread.as_ref().is_some_and(|t| t.is_finished());
    assert!(
        heartbeat_ended,
        "a heartbeat that finds its lease gone stops"
    );
    drop(beating);
    drop(ours);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(names.len(), 1, "no staging file left behind: {names:?}");
}
