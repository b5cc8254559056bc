//! The lease: one refresh across "machines" whose locks do not meet, stale leases broken.

use std::sync::Arc;
use std::time::{Duration, Instant};

use credlock::internal::LeaseRecord;
use credlock::{Clock, LockMode};
use credlock_test::ReusePolicy;

use crate::common::{Bed, now_ms, record, remote_record, sixteen_threads_on_an_expired_session};

#[test]
fn sixteen_threads_with_only_the_lease_send_exactly_one_refresh() {
    let (bed, tokens) = sixteen_threads_on_an_expired_session(LockMode::Lease);
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    let c = bed.server.counters();
    assert_eq!((c.refresh_requests, c.invalid_grant), (1, 0), "{c:?}");
    assert!(
        !crate::common::lease_path(&bed.path).exists(),
        "the holder removed its lease"
    );
}

/// Failure table: lease of a dead holder (TTL passed or dated more than a TTL ahead; a dead pid of this machine id + boot + PID namespace; or taken before this machine last booted)
#[cfg(unix)]
#[test]
fn a_lease_left_by_a_killed_holder_on_this_machine_is_broken_at_once() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let mut holder = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn");
    let record = local_record(holder.id(), 30_000, |_| {});
    std::fs::write(crate::common::lease_path(&bed.path), record.to_json()).expect("lease");
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

/// Failure table: lease of a dead holder (TTL passed or dated more than a TTL ahead; a dead pid of this machine id + boot + PID namespace; or taken before this machine last booted)
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

/// Failure table: lease held past the deadline (a live holder elsewhere)
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
    let record = remote_record("remote", ttl_ms);
    std::fs::write(crate::common::lease_path(&bed.path), record.to_json()).expect("lease");
}

/// Counts refresh requests in flight at once, around the fake server.
#[derive(Debug)]
struct Gauged {
    inner: credlock_test::FakeTransport,
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
}

impl credlock::Transport for Gauged {
    fn post_form(
        &self,
        request: &credlock::transport::FormRequest,
    ) -> Result<credlock::transport::HttpResponse, credlock::TransportError> {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(n, SeqCst);
        let out = self.inner.post_form(request);
        self.now.fetch_sub(1, SeqCst);
        out
    }
}

/// The put-back race of breaking a stale lease: one stale lease, `WAITERS` threads that each
/// judge it stale at the same instant, a grant-revoking server. Every round must end with one
/// refresh, one token for all, and a live session. `CREDLOCK_BREAK_ROUNDS` sets the rounds.
#[test]
fn five_hundred_rounds_of_one_stale_lease_and_eight_waiters_never_refresh_twice() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::{Arc, Barrier};
    const WAITERS: usize = 8;
    let rounds: usize = std::env::var("CREDLOCK_BREAK_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let started = Instant::now();
    let (mut refreshes, mut max_in_flight) = (0u64, 0usize);
    for round in 0..rounds {
        let bed = Arc::new(Bed::with_latency(
            ReusePolicy::RevokeGrant,
            Duration::from_millis(2),
        ));
        bed.seed_expired();
        let stale = LeaseRecord {
            created_ms: 0,
            ttl_ms: 1,
            ..remote_record("stale", 1)
        };
        std::fs::write(crate::common::lease_path(&bed.path), stale.to_json()).expect("lease");
        let gauge = Arc::new(Gauged {
            inner: credlock_test::FakeTransport::new(bed.server.clone()),
            now: 0.into(),
            max: 0.into(),
        });
        let barrier = Arc::new(Barrier::new(WAITERS));
        let handles: Vec<_> = (0..WAITERS)
            .map(|_| {
                let (bed, gauge, barrier) =
                    (Arc::clone(&bed), Arc::clone(&gauge), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let store = credlock::Store::new(&bed.path)
                        .with_clock(bed.clock.clone())
                        .with_transport(gauge)
                        .with_lock_mode(LockMode::Lease);
                    barrier.wait();
                    store.access_token().map(|t| t.secret().to_owned())
                })
            })
            .collect();
        let tokens: Vec<_> = crate::common::within(Duration::from_secs(60), move || {
            handles
                .into_iter()
                .map(|h| h.join().expect("a waiter panicked"))
                .collect::<Vec<_>>()
        });
        let c = bed.server.counters();
        refreshes += c.refresh_requests;
        max_in_flight = max_in_flight.max(gauge.max.load(SeqCst));
        let stored = bed.stored().expect("a session");
        assert!(
            c.refresh_requests == 1
                && c.invalid_grant == 0
                && gauge.max.load(SeqCst) == 1
                && bed.server.is_live(stored.refresh_token().secret())
                && tokens
                    .iter()
                    .all(|t| t.as_deref().ok() == Some(stored.access_token().secret())),
            "round {round}: {c:?}, max in flight {}, tokens {tokens:?}",
            gauge.max.load(SeqCst)
        );
    }
    eprintln!(
        "stale-lease break: {rounds} rounds x {WAITERS} waiters, {refreshes} refreshes ({:.2} per round), max refreshes in flight at once {max_in_flight}, {:.1} s",
        refreshes as f64 / rounds as f64,
        started.elapsed().as_secs_f64()
    );
}

/// A lease record of process `pid` of this machine, boot and PID namespace, taken now;
/// `change` edits its JSON first.
fn local_record(pid: u32, ttl_ms: u64, change: impl FnOnce(&mut serde_json::Value)) -> LeaseRecord {
    let here = credlock::internal::Holder::this_process();
    let mut v = serde_json::json!({
        "host": here.host,
        "pid": pid,
        "boot_id": here.boot_id,
        "machine_id": here.machine_id,
        "pid_ns": here.pid_ns,
        "created_ms": now_ms(),
        "ttl_ms": ttl_ms,
        "nonce": format!("local-{pid}"),
    });
    change(&mut v);
    record(v)
}

#[cfg(target_os = "linux")]
type EditJson = fn(&mut serde_json::Value);

/// Puts something at a path.
#[cfg(unix)]
type Plant = fn(&std::path::Path);

#[cfg(unix)]
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("reap");
    pid
}

/// A host name identifies nothing: a clone or a container on another node shares ours, and a
/// container on this host has its own process table. Their leases are broken by their TTL
/// only, never by looking their pid up here or by a boot id that differs.
///
/// Failure table: lease whose holder cannot be proved to be on this machine, boot and PID namespace (same host name on a clone or another node)
#[cfg(target_os = "linux")]
#[test]
fn a_lease_not_proved_to_be_of_this_machine_boot_and_pid_namespace_waits_for_its_ttl() {
    let cases: [(&str, EditJson); 4] = [
        ("a clone with our host name, another boot", |v| {
            v["boot_id"] = "a-clone-booted-after-us".into();
        }),
        (
            "a container on another node with our host name, no boot id",
            |v| {
                v["boot_id"] = "".into();
                v["machine_id"] = "".into();
            },
        ),
        ("a container on this host, its own PID namespace", |v| {
            v["pid_ns"] = "pid:[4026532999]".into();
        }),
        (
            "an older credlock's record (host name and boot id only)",
            |v| {
                let o = v.as_object_mut().expect("object");
                o.remove("machine_id");
                o.remove("pid_ns");
            },
        ),
    ];
    for (what, change) in cases {
        let bed = Bed::new(ReusePolicy::RevokeGrant);
        bed.seed_expired();
        // Its pid does not exist here: on this machine, boot and namespace that would be a
        // dead holder.
        let record = local_record(dead_pid(), 400, change);
        std::fs::write(crate::common::lease_path(&bed.path), record.to_json()).expect("lease");
        let start = Instant::now();
        let token = bed
            .store()
            .with_lock_mode(LockMode::Lease)
            .access_token()
            .expect("refreshed");
        let waited = start.elapsed();
        assert!(token.refreshed(), "{what}");
        assert!(
            waited >= Duration::from_millis(300),
            "{what}: broken after {waited:?}, before its TTL"
        );
    }
    // The same dead pid of this machine, boot and PID namespace: broken at once.
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let record = local_record(dead_pid(), 60_000, |_| {});
    std::fs::write(crate::common::lease_path(&bed.path), record.to_json()).expect("lease");
    let start = Instant::now();
    bed.store()
        .with_lock_mode(LockMode::Lease)
        .access_token()
        .expect("refreshed");
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// A transport that runs `during` while the request is at the server: what "another process
/// broke our lease meanwhile" looks like from the holder.
struct Meddling {
    inner: credlock_test::FakeTransport,
    during: Box<dyn Fn(usize) + Send + Sync>,
    calls: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Meddling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meddling")
    }
}

impl credlock::Transport for Meddling {
    fn post_form(
        &self,
        request: &credlock::transport::FormRequest,
    ) -> Result<credlock::transport::HttpResponse, credlock::TransportError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (self.during)(n);
        self.inner.post_form(request)
    }
}

fn meddling(bed: &Bed, during: impl Fn(usize) + Send + Sync + 'static) -> std::sync::Arc<Meddling> {
    std::sync::Arc::new(Meddling {
        inner: credlock_test::FakeTransport::new(bed.server.clone()),
        during: Box::new(during),
        calls: 0.into(),
    })
}

/// The new holder saved a newer session while our request was at the server: ours must not
/// replace it. (Before the heartbeat, "paused past the TTL" was also what a slow request
/// looked like; the loss is simulated by tampering, as another process breaking the lease.)
///
/// Failure table: lease lost after the send, before the save
#[test]
fn a_holder_that_lost_its_lease_during_the_refresh_does_not_save_over_a_newer_session() {
    let bed = Arc::new(Bed::new(ReusePolicy::RevokeGrant));
    bed.seed_expired();
    let newer = bed
        .server
        .seed_session(crate::common::TOKEN_ENDPOINT)
        .expect("seed");
    let lease = crate::common::lease_path(&bed.path);
    let thief = {
        let (bed2, lease, newer) = (Arc::clone(&bed), lease.clone(), newer.clone());
        meddling(&bed, move |_| {
            // We were paused past the TTL: another process broke our lease, took its own,
            // and saved (a login, or its own refresh through a grace period).
            std::fs::remove_file(&lease).expect("broken");
            std::fs::write(&lease, remote_record("thief", 60_000).to_json()).expect("retaken");
            credlock::Store::new(&bed2.path)
                .with_lock_mode(LockMode::Off)
                .save(&newer)
                .expect("the new holder saves");
        })
    };
    let err = credlock::Store::new(&bed.path)
        .with_clock(bed.clock.clone())
        .with_transport(thief)
        .with_lock_mode(LockMode::Lease)
        .access_token()
        .unwrap_err();
    let credlock::Error::NotSaved { session, source } = &err else {
        panic!("expected NotSaved, got {err:?}");
    };
    assert!(
        matches!(**source, credlock::Error::LeaseLost { .. }),
        "{source:?}"
    );
    assert!(
        bed.server
            .is_access_token_valid(session.access_token().secret())
    );
    assert_eq!(bed.stored(), Some(newer), "the newer session was kept");
    assert!(err.with_causes().contains("lost the lease"), "{err}");
    assert_eq!(
        LeaseRecord::from_json(&std::fs::read(&lease).expect("lease"))
            .expect("record")
            .nonce,
        "thief",
        "the new holder's lease was left alone"
    );
}

/// Invariant 8 under a lost lease: the server rotated the refresh token we sent, so the file,
/// which still holds that consumed token, gets the new one. Dropping it would leave the next
/// holder a dead token, whose `invalid_grant` fallback then deletes a live session.
///
/// Failure table: lease lost after the send, before the save
#[test]
fn a_holder_that_lost_its_lease_during_the_refresh_still_saves_the_token_the_server_rotated() {
    let bed = Bed::new(ReusePolicy::RejectOnly);
    let sent = bed.seed_expired();
    let lease = crate::common::lease_path(&bed.path);
    let thief = {
        let lease = lease.clone();
        meddling(&bed, move |_| {
            std::fs::remove_file(&lease).expect("broken");
            std::fs::write(&lease, remote_record("thief", 60_000).to_json()).expect("retaken");
        })
    };
    let token = credlock::Store::new(&bed.path)
        .with_clock(bed.clock.clone())
        .with_transport(thief)
        .with_lock_mode(LockMode::Lease)
        .access_token()
        .expect("saved despite the lost lease");
    assert!(token.refreshed());
    let stored = bed.stored().expect("a session");
    assert_eq!(stored.access_token().secret(), token.secret());
    assert_ne!(stored.refresh_token(), sent.refresh_token(), "rotated");
    assert!(bed.server.live_grants() > 0);
    assert_eq!(
        LeaseRecord::from_json(&std::fs::read(&lease).expect("lease"))
            .expect("record")
            .nonce,
        "thief",
        "the new holder's lease was left alone"
    );
}

/// A 2xx that rotates the refresh token without a usable access token, under a lease lost
/// meanwhile: its refresh token replaces only the token we sent, never a newer session.
///
/// Failure table: … and that save fails, or a lost lease finds a newer session there
#[test]
fn a_rotation_without_an_access_token_under_a_lost_lease_keeps_a_newer_session() {
    let bed = Arc::new(Bed::new(ReusePolicy::RevokeGrant));
    bed.seed_expired();
    bed.server.reshape_next_success(|mut m| {
        m.remove("access_token");
        serde_json::to_vec(&m).expect("json")
    });
    let newer = bed
        .server
        .seed_session(crate::common::TOKEN_ENDPOINT)
        .expect("seed");
    let lease = crate::common::lease_path(&bed.path);
    let thief = {
        let (bed2, lease, newer) = (Arc::clone(&bed), lease.clone(), newer.clone());
        meddling(&bed, move |_| {
            std::fs::remove_file(&lease).expect("broken");
            std::fs::write(&lease, remote_record("thief", 60_000).to_json()).expect("retaken");
            credlock::Store::new(&bed2.path)
                .with_lock_mode(LockMode::Off)
                .save(&newer)
                .expect("the new holder saves");
        })
    };
    let err = credlock::Store::new(&bed.path)
        .with_clock(bed.clock.clone())
        .with_transport(thief)
        .with_lock_mode(LockMode::Lease)
        .access_token()
        .unwrap_err();
    let credlock::Error::IncompleteRefresh { save_error, .. } = &err else {
        panic!("expected IncompleteRefresh, got {err:?}");
    };
    assert!(
        matches!(
            save_error.as_deref(),
            Some(credlock::Error::LeaseLost { .. })
        ),
        "{save_error:?}"
    );
    assert_eq!(bed.stored(), Some(newer), "the newer session was kept");
}

/// Failure table: lease lost before the send (holder paused past its TTL, another took it)
#[test]
fn a_holder_that_lost_its_lease_sends_no_further_refresh() {
    let bed = Arc::new(Bed::new(ReusePolicy::RevokeGrant));
    bed.seed_expired();
    // The first refresh meets invalid_grant; while it is at the server, another process takes
    // the lease over and saves a newer session that is itself stale. The fallback would
    // refresh once with it: not without the lease.
    bed.server.push_failure(credlock_test::Failure::Status {
        status: 400,
        body: r#"{"error":"invalid_grant"}"#.into(),
        retry_after: None,
    });
    let newer = bed
        .server
        .seed_session(crate::common::TOKEN_ENDPOINT)
        .expect("seed")
        .with_expires_at(bed.clock.now() - Duration::from_secs(1));
    let lease = crate::common::lease_path(&bed.path);
    let thief = {
        let (bed2, lease, newer) = (Arc::clone(&bed), lease.clone(), newer.clone());
        meddling(&bed, move |_| {
            std::fs::remove_file(&lease).expect("broken");
            std::fs::write(&lease, remote_record("thief", 60_000).to_json()).expect("retaken");
            credlock::Store::new(&bed2.path)
                .with_lock_mode(LockMode::Off)
                .save(&newer)
                .expect("the new holder saves");
        })
    };
    let err = credlock::Store::new(&bed.path)
        .with_clock(bed.clock.clone())
        .with_transport(thief)
        .with_lock_mode(LockMode::Lease)
        .access_token()
        .unwrap_err();
    assert!(matches!(err, credlock::Error::LeaseLost { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(bed.server.counters().refresh_requests, 1, "no second send");
    assert_eq!(
        bed.stored(),
        Some(newer),
        "the new holder's session is kept"
    );
}

/// Failure table: FIFO / symlink / directory / socket at `<file>.lock` or `<file>.lease`
#[cfg(unix)]
#[test]
fn a_fifo_a_symlink_or_a_directory_at_the_lease_is_refused_at_once() {
    use credlock::Error;
    let cases: [(&str, Plant); 3] = [
        ("named pipe", |p| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                p,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .expect("mkfifo");
        }),
        ("symbolic link", |p| {
            let target = p.with_extension("elsewhere");
            std::fs::write(&target, remote_record("via-link", 1).to_json()).expect("target");
            std::os::unix::fs::symlink(&target, p).expect("symlink");
        }),
        ("directory", |p| std::fs::create_dir(p).expect("mkdir")),
    ];
    for (what, plant) in cases {
        let bed = Arc::new(Bed::new(ReusePolicy::RevokeGrant));
        bed.seed_expired();
        let lease = crate::common::lease_path(&bed.path);
        plant(&lease);
        let store = {
            let bed = Arc::clone(&bed);
            move || {
                bed.store()
                    .with_lock_mode(LockMode::Lease)
                    .with_lock_timeout(Duration::from_secs(2))
                    .access_token()
            }
        };
        let start = Instant::now();
        let err = crate::common::within(Duration::from_secs(10), store).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{what}: refused within the lock timeout, not after it"
        );
        assert!(
            matches!(&err, Error::NotASessionFile { path, .. } if *path == lease),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains(what), "{what}: {err}");
        assert_eq!(bed.server.counters().refresh_requests, 0, "{what}");
        assert!(
            std::fs::symlink_metadata(&lease).is_ok(),
            "{what}: left in place"
        );
    }
}

/// Invariant 2 under the lease: two holders never refresh at once. The fence
/// checks only that the lease has not run out *yet* right before the send; a request that
/// takes longer than what is left of the TTL (here: TTL 400 ms, the server answers in 800 ms,
/// well within the 30 s transport timeout) overlaps the next holder's. Nothing stops a TTL
/// shorter than the transport timeout (`with_lease_ttl` accepts any).
#[test]
fn a_lease_holder_never_sends_a_request_that_outlives_its_lease() {
    let bed = Arc::new(Bed::with_latency(
        ReusePolicy::RevokeGrant,
        Duration::from_millis(800),
    ));
    bed.seed_expired();
    let make = {
        let bed = Arc::clone(&bed);
        move || {
            bed.store()
                .with_lock_mode(LockMode::Lease)
                .with_lease_ttl(Duration::from_millis(400))
        }
    };
    let first = {
        let store = make();
        std::thread::spawn(move || store.access_token())
    };
    std::thread::sleep(Duration::from_millis(50));
    let second = make().access_token();
    let first = first.join().expect("thread");
    let counters = bed.server.counters();
    assert!(
        counters.reuse_detected == 0 && counters.grants_revoked == 0,
        "two holders refreshed with one refresh token: {counters:?}\nfirst: {first:?}\nsecond: {second:?}"
    );
}

/// Invariant 8 ("a 2xx that carries a rotated refresh token reaches disk before anything
/// else happens") against the save fence: a holder whose lease ran out while its request was
/// in flight gets the rotated token and refuses to save it (`NotSaved { LeaseLost }`). The
/// stored token is consumed; the next holder's refresh with it is refused (a server that
/// refuses reuse without revoking the grant) and its compare-and-delete removes the session,
/// although the grant is alive and the fenced holder had its live refresh token in hand.
/// Saving it (the fence is no reason to drop a token the server already rotated) would have
/// let the next holder adopt it.
#[test]
fn a_fenced_holder_still_saves_the_refresh_token_the_server_rotated() {
    let bed = Arc::new(Bed::with_latency(
        ReusePolicy::RejectOnly,
        Duration::from_millis(800),
    ));
    bed.seed_expired();
    let make = {
        let bed = Arc::clone(&bed);
        move |ttl: Duration| {
            bed.store()
                .with_lock_mode(LockMode::Lease)
                .with_lease_ttl(ttl)
        }
    };
    let first = {
        let store = make(Duration::from_millis(400));
        std::thread::spawn(move || store.access_token())
    };
    std::thread::sleep(Duration::from_millis(50));
    let second = make(Duration::from_secs(10)).access_token();
    let first = first.join().expect("thread");
    assert!(
        bed.server.live_grants() == 0 || bed.path.exists(),
        "the grant is alive at the server but the session was deleted\nfirst: {first:?}\nsecond: {second:?}"
    );
}
