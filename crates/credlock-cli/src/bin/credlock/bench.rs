//! `credlock bench`: the hot path, durable saves, race scaling and memory, in one run.
//!
//! Timings alternate between the two sides of each comparison in small batches, and the
//! report quotes medians of per-operation times, so a noisy neighbour slows both sides alike.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use credlock::{LockMode, Session, Store};
use credlock_test::{FakeServer, HttpServer, ReusePolicy};
use serde_json::json;

use crate::race::{self, RaceArgs, percentile};
use crate::{Failure, Global, Outcome};

/// Arguments of `credlock bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Batches per comparison (each batch: 200 reads, or 5 saves, per side).
    #[arg(long, default_value_t = 60)]
    batches: usize,
    /// Race sizes (processes) for the scaling curve.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    race_sizes: Vec<usize>,
    /// Rounds per race size.
    #[arg(long, default_value_t = 5)]
    race_rounds: usize,
    /// Server latency for the races, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
}

fn other(e: impl std::fmt::Display) -> Failure {
    Failure::Other(e.to_string())
}

/// Median per-operation time (ns) of `batch`-sized runs of each closure, interleaved.
fn compare(batches: usize, batch: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for i in 0..batches {
        let run = |f: &mut dyn FnMut(), out: &mut Vec<f64>| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            out.push(t.elapsed().as_nanos() as f64 / batch as f64);
        };
        // Alternate which side goes first, so neither always runs on a warmer cache.
        if i % 2 == 0 {
            run(&mut a, &mut ta);
            run(&mut b, &mut tb);
        } else {
            run(&mut b, &mut tb);
            run(&mut a, &mut ta);
        }
    }
    ta.sort_by(f64::total_cmp);
    tb.sort_by(f64::total_cmp);
    (percentile(&ta, 0.5), percentile(&tb, 0.5))
}

/// `credlock bench`
pub fn run(g: &Global, args: &BenchArgs) -> Outcome {
    let fake = FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .build();
    let http = HttpServer::start(fake.clone()).map_err(other)?;
    let dir = tempfile::tempdir().map_err(other)?;
    let path = dir.path().join("session.json");
    let store = Store::new(&path);
    let session = fake.seed_session(&http.token_endpoint()).map_err(other)?;
    store.save(&session).map_err(other)?;

    // Memory first, before this process has many children: peak RSS of `credlock token`.
    let rss_hot = peak_rss_of_token(&path)?;
    let expired_path = dir.path().join("expired.json");
    Store::new(&expired_path)
        .save(
            &fake
                .seed_session(&http.token_endpoint())
                .map_err(other)?
                .with_expires_at(SystemTime::now()),
        )
        .map_err(other)?;
    let rss_refresh = peak_rss_of_token(&expired_path)?;

    // Hot path: a valid session, versus the physical minimum of reading and parsing it.
    let (hot_ns, bare_ns) = compare(
        args.batches,
        200,
        || {
            let t = store.access_token().expect("valid session");
            std::hint::black_box(t);
        },
        || {
            let bytes = std::fs::read(&path).expect("read");
            let s: Session = serde_json::from_slice(&bytes).expect("parse");
            std::hint::black_box(s);
        },
    );

    // Save: durable (lock, temp, fsync, rename, fsync dir) versus write + rename only.
    let plain_path = dir.path().join("plain.json");
    let bytes = session.to_json();
    let (save_ns, nosync_ns) = compare(
        args.batches.min(30),
        5,
        || store.save(&session).expect("save"),
        || {
            let mut tmp = tempfile::NamedTempFile::new_in(dir.path()).expect("temp");
            tmp.write_all(&bytes).expect("write");
            #[allow(
                clippy::disallowed_methods,
                reason = "the baseline the benchmark compares the store's save with"
            )]
            let persisted = tmp.persist(&plain_path);
            persisted.expect("rename");
        },
    );

    // The lease's extra cost on a refresh: the same refresh (in-memory server, no latency)
    // under the advisory lock, the lease alone, and both (auto on a network filesystem).
    let lease = lease_cost(args.batches.max(10) * 3)?;

    // Race scaling.
    let mut curve = Vec::new();
    for &n in &args.race_sizes {
        let race_args = RaceArgs {
            processes: n,
            server: ReusePolicy::RevokeGrant,
            latency_ms: args.latency_ms,
            rounds: args.race_rounds,
            compare: false,
        };
        let r = race::race(&race_args, LockMode::Auto).map_err(Failure::Other)?;
        curve.push(r);
    }

    let report = json!({
        "hot_path": {
            "access_token_ns": hot_ns.round(),
            "read_and_parse_ns": bare_ns.round(),
            "ratio": (hot_ns / bare_ns * 100.0).round() / 100.0,
        },
        "save": {
            "durable_us": (save_ns / 1000.0).round(),
            "without_fsync_us": (nosync_ns / 1000.0).round(),
            "ratio": (save_ns / nosync_ns * 10.0).round() / 10.0,
        },
        "peak_rss_kib": { "token_valid_session": rss_hot, "token_with_refresh": rss_refresh },
        "refresh_guard_us": {
            "advisory": (lease[0] / 1000.0).round(),
            "lease": (lease[1] / 1000.0).round(),
            "advisory_and_lease": (lease[2] / 1000.0).round(),
        },
        "race": curve.iter().map(race::Report::to_json).collect::<Vec<_>>(),
    });
    if g.json {
        outln!("{report}")?;
        return Ok(0);
    }
    outln!(
        "credlock bench ({} batches; medians of per-operation times)",
        args.batches
    )?;
    outln!()?;
    outln!(
        "hot path   Store::access_token() on a valid session   {:>9.1} us",
        hot_ns / 1000.0
    )?;
    outln!(
        "           std::fs::read + serde_json parse           {:>9.1} us",
        bare_ns / 1000.0
    )?;
    outln!(
        "           ratio                                      {:>9.2} x",
        hot_ns / bare_ns
    )?;
    outln!()?;
    outln!(
        "save       Store::save (lock, fsync file and dir)     {:>9.1} us",
        save_ns / 1000.0
    )?;
    outln!(
        "           write + rename, no fsync                   {:>9.1} us",
        nosync_ns / 1000.0
    )?;
    outln!(
        "           ratio                                      {:>9.1} x",
        save_ns / nosync_ns
    )?;
    outln!()?;
    outln!("memory     peak RSS of `credlock token`, valid session {rss_hot:>7} KiB")?;
    outln!("           peak RSS of `credlock token`, with refresh  {rss_refresh:>7} KiB")?;
    outln!()?;
    outln!(
        "refresh    with the advisory lock (local filesystem)   {:>9.1} us",
        lease[0] / 1000.0
    )?;
    outln!(
        "           with the lease only (--lock lease)          {:>9.1} us",
        lease[1] / 1000.0
    )?;
    outln!(
        "           advisory + lease (auto on NFS/SMB/FUSE)     {:>9.1} us",
        lease[2] / 1000.0
    )?;
    outln!(
        "           extra cost of the lease                     {:>9.1} us",
        (lease[2] - lease[0]) / 1000.0
    )?;
    outln!()?;
    outln!(
        "race       (lock auto, server revoke-grant, latency {} ms, {} rounds each)",
        args.latency_ms,
        args.race_rounds
    )?;
    outln!(
        "           {:>9} {:>10} {:>13} {:>9} {:>8} {:>8} {:>8}",
        "processes",
        "refreshes",
        "invalid_grant",
        "ok/fail",
        "wall ms",
        "p50 ms",
        "p99 ms"
    )?;
    for r in &curve {
        outln!(
            "           {:>9} {:>10} {:>13} {:>9} {:>8.1} {:>8.1} {:>8.1}",
            r.processes,
            r.refresh_requests,
            r.invalid_grant_responses,
            format!("{}/{}", r.processes_ok, r.processes_failed),
            r.wall_ms,
            r.p50_ms,
            r.p99_ms
        )?;
    }
    Ok(0)
}

/// Runs `credlock token` on `store` and returns the peak RSS it reports (KiB).
fn peak_rss_of_token(store: &std::path::Path) -> Result<u64, Failure> {
    let exe = std::env::current_exe().map_err(other)?;
    let out = Command::new(exe)
        .arg("--store")
        .arg(store)
        .arg("token")
        .env("CREDLOCK_PEAK_RSS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(other)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(Failure::Other(format!("`credlock token` failed: {stderr}")));
    }
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("credlock: peak RSS "))
        .and_then(|rest| rest.trim_end_matches(" KiB").parse().ok())
        .ok_or_else(|| Failure::Other("`credlock token` reported no peak RSS".into()))
}

/// Median time (ns) of one refresh under each guard: advisory, lease, advisory + lease.
/// The three alternate iteration by iteration; the expiry is reset untimed between refreshes.
fn lease_cost(iterations: usize) -> Result<[f64; 3], Failure> {
    use credlock::FsKind;
    use credlock_test::FakeTransport;
    let fake = FakeServer::builder().build();
    let dir = tempfile::tempdir().map_err(other)?;
    let setups = [
        (LockMode::Advisory, FsKind::Local),
        (LockMode::Lease, FsKind::Local),
        (LockMode::Auto, FsKind::Nfs { local_locks: true }),
    ];
    let mut stores = Vec::new();
    for (i, (mode, fs)) in setups.into_iter().enumerate() {
        let path = dir.path().join(format!("session-{i}.json"));
        let store = Store::new(&path)
            .with_lock_mode(mode)
            .with_filesystem_kind(fs)
            .with_transport(std::sync::Arc::new(FakeTransport::new(fake.clone())));
        store
            .save(&fake.seed_session("http://127.0.0.1/token").map_err(other)?)
            .map_err(other)?;
        stores.push(store);
    }
    let mut samples = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..iterations {
        for (store, out) in stores.iter().zip(samples.iter_mut()) {
            let current = store
                .load()
                .map_err(other)?
                .ok_or_else(|| other("session vanished"))?;
            store
                .save(
                    &current.with_expires_at(SystemTime::now() - std::time::Duration::from_secs(1)),
                )
                .map_err(other)?;
            let t = Instant::now();
            let token = store.access_token().map_err(other)?;
            out.push(t.elapsed().as_nanos() as f64);
            if !token.refreshed() {
                return Err(other("the benchmark refresh did not refresh"));
            }
        }
    }
    let mut medians = [0.0; 3];
    for (m, s) in medians.iter_mut().zip(samples.iter_mut()) {
        s.sort_by(f64::total_cmp);
        *m = percentile(s, 0.5);
    }
    Ok(medians)
}
