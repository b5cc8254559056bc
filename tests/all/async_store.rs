//! `AsyncStore`: never blocks the runtime, one refresh in flight per process, cancellation
//! safe, and one error for every task that waited for a failed refresh.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use credlock::{AsyncStore, Error, Event};
use credlock_test::{Failure, ReusePolicy};

use crate::common::Bed;

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Sixteen tasks on one current-thread runtime need a token while the token endpoint takes
/// 800 ms. A ticker on the same runtime measures how late it runs: a refresh on the runtime
/// would stall it for the whole 800 ms.
#[test]
fn sixteen_tasks_share_one_refresh_and_the_runtime_never_stalls() {
    let bed = Bed::with_latency(ReusePolicy::RevokeGrant, Duration::from_millis(800));
    bed.seed_expired();
    let waits = Arc::new(AtomicUsize::new(0));
    let counted = waits.clone();
    let store = AsyncStore::new(bed.store().on_event(move |e| {
        if matches!(e, Event::WaitingForLock { .. }) {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    }));
    let runtime = current_thread_runtime();
    let (tokens, worst_stall) = crate::common::within(Duration::from_secs(60), move || {
        runtime.block_on(async move {
            let worst = Arc::new(Mutex::new(Duration::ZERO));
            let ticker = {
                let worst = worst.clone();
                tokio::spawn(async move {
                    let period = Duration::from_millis(5);
                    loop {
                        let asked = Instant::now();
                        tokio::time::sleep(period).await;
                        let late = asked.elapsed().saturating_sub(period);
                        let mut w = worst.lock().expect("worst");
                        *w = (*w).max(late);
                    }
                })
            };
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move { store.access_token().await })
                })
                .collect();
            let mut tokens = Vec::new();
            for t in tasks {
                tokens.push(t.await.expect("task").expect("token"));
            }
            // Let the ticker run once more, so that a stall at the very end is measured too.
            tokio::time::sleep(Duration::from_millis(20)).await;
            ticker.abort();
            let worst = *worst.lock().expect("worst");
            (tokens, worst)
        })
    });
    // Generous: a blocked runtime would be late by the whole 800 ms.
    assert!(
        worst_stall < Duration::from_millis(300),
        "the runtime stalled for {worst_stall:?}"
    );
    assert_eq!(bed.server.counters().refresh_requests, 1);
    assert!(tokens.iter().all(|t| t.secret() == tokens[0].secret()));
    assert_eq!(
        tokens.iter().filter(|t| t.refreshed()).count(),
        16,
        "one shared refresh"
    );
    assert_eq!(
        waits.load(Ordering::Relaxed),
        0,
        "single-flight: no task queued on the file lock"
    );
}

#[test]
fn every_task_waiting_for_a_failed_refresh_gets_its_error_and_one_request_is_sent() {
    let bed = Bed::with_latency(ReusePolicy::RevokeGrant, Duration::from_millis(200));
    bed.seed_expired();
    bed.server.push_failure(Failure::Status {
        status: 503,
        body: String::new(),
        retry_after: None,
    });
    let store = AsyncStore::new(bed.store());
    let runtime = current_thread_runtime();
    let results = crate::common::within(Duration::from_secs(60), move || {
        runtime.block_on(async move {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move { store.access_token().await })
                })
                .collect();
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.expect("task"));
            }
            results
        })
    });
    assert_eq!(bed.server.counters().refresh_requests, 1);
    for r in results {
        assert!(
            matches!(&r, Err(e @ Error::Unavailable { .. }) if e.is_transient()),
            "{r:?}"
        );
    }
}

#[test]
fn a_dropped_future_leaves_no_lock_held_and_its_refresh_is_not_lost() {
    let bed = Bed::with_latency(ReusePolicy::RevokeGrant, Duration::from_millis(400));
    bed.seed_expired();
    let store = AsyncStore::new(bed.store());
    let runtime = current_thread_runtime();
    let again = store.clone();
    let token = crate::common::within(Duration::from_secs(60), move || {
        runtime.block_on(async move {
            // Given up after 50 ms: the refresh is in flight on the blocking pool.
            let gave_up =
                tokio::time::timeout(Duration::from_millis(50), store.access_token()).await;
            assert!(gave_up.is_err(), "the refresh takes 400 ms");
            again.access_token().await
        })
    });
    let token = token.expect("token");
    assert_eq!(
        bed.server.counters().refresh_requests,
        1,
        "no second refresh"
    );
    assert_eq!(
        bed.stored().expect("session").access_token().secret(),
        token.secret(),
        "the refresh the dropped task started was saved"
    );
    // The lock is free: a blocking store with a short timeout saves at once.
    let session = bed.stored().expect("session");
    bed.store()
        .with_lock_timeout(Duration::from_millis(100))
        .save(&session)
        .expect("the lock is not held");
}

#[test]
fn a_minimum_validity_is_refreshed_once_on_the_blocking_pool() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed();
    bed.clock.advance(Duration::from_secs(2700)); // 900 s left
    let store = AsyncStore::new(bed.store());
    let want = Duration::from_secs(1200);
    let (first, second) = current_thread_runtime().block_on(async {
        let first = store.access_token_valid_for(want).await.expect("refreshed");
        let second = store.access_token_valid_for(want).await.expect("fresh");
        (first, second)
    });
    assert!(first.refreshed() && !second.refreshed());
    assert_eq!(first.secret(), second.secret());
    assert_eq!(bed.server.counters().refresh_requests, 1);
}
