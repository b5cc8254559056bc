//! How long a tokio runtime stalls while 16 tasks get a token from a token endpoint that takes
//! 800 ms: `AsyncStore` (refresh on the blocking pool, one in flight) against calling the
//! blocking `Store` on the runtime. Also counts refresh requests and lock waits.
//!
//! ```sh
//! cargo bench --bench async_stall --features tokio
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use credlock::{AsyncStore, Event, Store};
use credlock_test::{FakeServer, FakeTransport, ReusePolicy};

const TASKS: usize = 16;
const LATENCY: Duration = Duration::from_millis(800);
const RUNS: usize = 5;

struct Run {
    worst_stall: Duration,
    wall: Duration,
    refreshes: u64,
    lock_waits: usize,
}

fn one_run(off_the_runtime: bool) -> Run {
    let server = FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .latency(LATENCY)
        .build();
    let dir = tempfile::tempdir().expect("tempdir");
    let waits = Arc::new(AtomicUsize::new(0));
    let counted = waits.clone();
    let store = Store::new(dir.path().join("session.json"))
        .with_transport(Arc::new(FakeTransport::new(server.clone())))
        .on_event(move |e| {
            if matches!(e, Event::WaitingForLock { .. }) {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        });
    let session = server
        .seed_session("http://127.0.0.1/token")
        .expect("seed")
        .with_expires_at(SystemTime::now());
    store.save(&session).expect("save");
    let store = AsyncStore::new(store);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let worst = runtime.block_on(async move {
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
        tokio::task::yield_now().await;
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    if off_the_runtime {
                        store.access_token().await
                    } else {
                        // What a program does without an async API: block the runtime.
                        store.store().access_token()
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("token");
        }
        // Let the ticker run once more, so that a stall at the very end is measured too.
        tokio::time::sleep(Duration::from_millis(20)).await;
        ticker.abort();
        *worst.lock().expect("worst")
    });
    Run {
        worst_stall: worst,
        wall: started.elapsed(),
        refreshes: server.counters().refresh_requests,
        lock_waits: waits.load(Ordering::Relaxed),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    println!(
        "async_stall: {TASKS} tasks, token endpoint latency {} ms, current-thread runtime, median of {RUNS} runs",
        LATENCY.as_millis()
    );
    println!(
        "{:<34} {:>14} {:>10} {:>10} {:>11}",
        "", "worst stall", "wall", "refreshes", "lock waits"
    );
    for (name, off) in [
        ("AsyncStore (blocking pool)", true),
        ("Store::access_token on the runtime", false),
    ] {
        let runs: Vec<Run> = (0..RUNS).map(|_| one_run(off)).collect();
        let refreshes: Vec<u64> = runs.iter().map(|r| r.refreshes).collect();
        let waits: Vec<usize> = runs.iter().map(|r| r.lock_waits).collect();
        println!(
            "{:<34} {:>11.1} ms {:>7.0} ms {:>10} {:>11}",
            name,
            median(runs.iter().map(|r| r.worst_stall).collect()).as_secs_f64() * 1e3,
            median(runs.iter().map(|r| r.wall).collect()).as_secs_f64() * 1e3,
            format!("{refreshes:?}"),
            format!("{waits:?}"),
        );
    }
}
