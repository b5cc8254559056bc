//! Two FUSE mounts of one directory whose locks do not see each other: the nearest thing to
//! two NFS clients on one machine (`bindfs`, see docs/filesystems.md). Eight processes go
//! through each mount at once.
//!
//! Ignored by a plain `cargo test`: they need root, `/dev/fuse` and `bindfs` (`.ci/run`
//! installs it). Each test re-runs itself inside a private mount and PID namespace
//! (`unshare`), so its mounts and FUSE daemons vanish with it even if it is killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use credlock::Store;
use credlock_test::{Counters, FakeServer, HttpServer, ReusePolicy};

use crate::common::{released_together, rerun_inside};

const INNER: &str = "CREDLOCK_TWIN_MOUNT_INNER";

/// Re-runs test `name` inside a private mount and PID namespace; `true` when already inside.
fn inside_private_namespace(name: &str) -> bool {
    if std::env::var_os(INNER).is_none() {
        for tool in ["unshare", "bindfs", "fusermount3"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "prerequisite missing: {tool} (apt-get install -y fuse3 bindfs; run as root)"
            );
        }
    }
    rerun_inside(
        &[
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
        ],
        name,
        INNER,
    )
}

/// A backing directory mounted twice; unmounted on drop.
struct TwinMount {
    _root: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
}

impl TwinMount {
    fn new(cache_seconds: u32) -> TwinMount {
        let root = tempfile::tempdir().expect("tempdir");
        let backing = root.path().join("backing");
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        for d in [&backing, &a, &b] {
            std::fs::create_dir(d).expect("mkdir");
        }
        for m in [&a, &b] {
            let status = Command::new("bindfs")
                .arg("-o")
                .arg(format!(
                    "subtype=bindfs,attr_timeout={cache_seconds},entry_timeout={cache_seconds}"
                ))
                .arg(&backing)
                .arg(m)
                .status()
                .expect("bindfs");
            assert!(status.success(), "bindfs mount of {}", m.display());
        }
        TwinMount { _root: root, a, b }
    }
}

impl Drop for TwinMount {
    fn drop(&mut self) {
        for m in [&self.a, &self.b] {
            let _ = Command::new("fusermount3").arg("-uz").arg(m).status();
        }
    }
}

struct Outcome {
    ok: usize,
    failed: Vec<String>,
    distinct_tokens: usize,
    counters: Counters,
    store_parses: bool,
    session_alive: bool,
}

/// Eight `credlock race-child` processes through each mount, released at once.
fn race_through_both(twin: &TwinMount, lock: &str, policy: ReusePolicy) -> Outcome {
    let fake = FakeServer::builder()
        .policy(policy)
        .latency(Duration::from_millis(20))
        .build();
    race_through_both_at(twin, lock, fake)
}

/// [`race_through_both`] against the server `fake`.
fn race_through_both_at(twin: &TwinMount, lock: &str, fake: Arc<FakeServer>) -> Outcome {
    let http = HttpServer::start(Arc::clone(&fake)).expect("server");
    let (via_a, via_b) = (twin.a.join("session.json"), twin.b.join("session.json"));
    let seeded = fake
        .seed_session(&http.token_endpoint())
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    Store::new(&via_a).save(&seeded).expect("save");
    let racers: Vec<(&Path, &str)> = (0..16)
        .map(|i| {
            (
                if i < 8 {
                    via_a.as_path()
                } else {
                    via_b.as_path()
                },
                lock,
            )
        })
        .collect();
    let answers = released_together(&racers);
    let (mut ok, mut failed, mut tokens) = (0, Vec::new(), std::collections::HashSet::new());
    for v in answers {
        match v["token"].as_str() {
            Some(t) if fake.is_access_token_valid(t) => {
                ok += 1;
                tokens.insert(t.to_owned());
            }
            Some(_) => failed.push("a token the server has since revoked".to_owned()),
            None => failed.push(v["error"].as_str().unwrap_or("?").to_owned()),
        }
    }
    let stored = Store::new(&via_b).load();
    Outcome {
        ok,
        failed,
        distinct_tokens: tokens.len(),
        counters: fake.counters(),
        store_parses: stored.is_ok(),
        session_alive: matches!(&stored, Ok(Some(s)) if fake.is_live(s.refresh_token().secret())),
    }
}

fn assert_locks_do_not_meet(twin: &TwinMount) {
    let lock = |p: &Path| {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(p)
            .expect("open");
        fd_lock::RwLock::new(f)
    };
    let mut la = lock(&twin.a.join("probe.lock"));
    let mut lb = lock(&twin.b.join("probe.lock"));
    let _ga = la.try_write().expect("lock via a");
    assert!(
        lb.try_write().is_ok(),
        "the bed is wrong: locks through the two mounts conflict"
    );
}

fn check_auto_with_grant_revoking_server(cache_seconds: u32) {
    let twin = TwinMount::new(cache_seconds);
    assert_locks_do_not_meet(&twin);
    assert_eq!(
        credlock::filesystem::detect(&twin.a).kind.name(),
        "fuse.bindfs",
        "detected for real"
    );
    let o = race_through_both(&twin, "auto", ReusePolicy::RevokeGrant);
    eprintln!(
        "twin mount, cache {cache_seconds} s, lock auto, revoke-grant: {} ok, {} failed, {:?}",
        o.ok,
        o.failed.len(),
        o.counters
    );
    assert_eq!(
        o.counters.refresh_requests, 1,
        "{:?} {:?}",
        o.counters, o.failed
    );
    assert_eq!(o.counters.invalid_grant, 0);
    assert_eq!((o.ok, o.distinct_tokens), (16, 1), "{:?}", o.failed);
    assert!(o.store_parses && o.session_alive);
}

/// Failure table: locks do not reach other machines (detected), mode `auto`
#[test]
#[ignore = "needs root and bindfs; .ci/run runs it"]
fn auto_on_two_mounts_whose_locks_do_not_meet_refreshes_exactly_once() {
    if inside_private_namespace(
        "twin_mount::auto_on_two_mounts_whose_locks_do_not_meet_refreshes_exactly_once",
    ) {
        check_auto_with_grant_revoking_server(0);
    }
}

#[test]
#[ignore = "needs root and bindfs; .ci/run runs it"]
fn auto_on_two_mounts_with_three_second_attribute_caches_refreshes_exactly_once() {
    if inside_private_namespace(
        "twin_mount::auto_on_two_mounts_with_three_second_attribute_caches_refreshes_exactly_once",
    ) {
        check_auto_with_grant_revoking_server(3);
    }
}

fn check_fallback_with_rejecting_server(cache_seconds: u32) {
    let twin = TwinMount::new(cache_seconds);
    assert_locks_do_not_meet(&twin);
    // Forced advisory: what credlock did before the lease, and what any flock-based tool does.
    let o = race_through_both(&twin, "advisory", ReusePolicy::RejectOnly);
    eprintln!(
        "twin mount, cache {cache_seconds} s, lock advisory, reject-only: {} ok, failed {:?}, {:?}",
        o.ok, o.failed, o.counters
    );
    assert_eq!(
        o.ok, 16,
        "the fallback kept every process working: {:?}",
        o.failed
    );
    assert!(o.store_parses, "the store always parses");
    assert!(
        o.session_alive,
        "nothing was deleted and the stored token is live"
    );
}

#[test]
#[ignore = "needs root and bindfs; .ci/run runs it"]
fn without_a_lease_the_fallback_keeps_every_process_working_against_a_rejecting_server() {
    if inside_private_namespace(
        "twin_mount::without_a_lease_the_fallback_keeps_every_process_working_against_a_rejecting_server",
    ) {
        check_fallback_with_rejecting_server(0);
    }
}

#[test]
#[ignore = "needs root and bindfs; .ci/run runs it"]
fn without_a_lease_the_fallback_survives_three_second_attribute_caches() {
    if inside_private_namespace(
        "twin_mount::without_a_lease_the_fallback_survives_three_second_attribute_caches",
    ) {
        check_fallback_with_rejecting_server(3);
    }
}

#[test]
#[ignore = "needs root and bindfs; .ci/run runs it"]
fn without_a_lease_a_grant_revoking_server_loses_the_session_and_the_damage_is_recorded() {
    if inside_private_namespace(
        "twin_mount::without_a_lease_a_grant_revoking_server_loses_the_session_and_the_damage_is_recorded",
    ) {
        let twin = TwinMount::new(0);
        let mut lost = 0;
        let rounds = 5;
        for mode in ["advisory", "off"] {
            for _ in 0..rounds {
                let o = race_through_both(&twin, mode, ReusePolicy::RevokeGrant);
                assert!(o.store_parses, "the store always parses");
                eprintln!(
                    "twin mount, lock {mode}, revoke-grant: {} ok, {} failed, refreshes {}, invalid_grant {}, session {}",
                    o.ok,
                    o.failed.len(),
                    o.counters.refresh_requests,
                    o.counters.invalid_grant,
                    if o.session_alive { "alive" } else { "DEAD" }
                );
                lost += usize::from(!o.session_alive);
            }
        }
        eprintln!("sessions lost without a lease: {lost} of {}", 2 * rounds);
        assert!(
            lost > 0,
            "16 processes on two machines without a shared lock should race at least once in {} tries",
            2 * rounds
        );
    }
}

/// A file removed through the other mount while this one has it open: FUSE (and NFS, as
/// `ESTALE`) can answer `fstat` on the open descriptor with "no such file". That is the file
/// gone, not an I/O failure: a reader looks again (CI once saw "could not inspect
/// session.json.lease: No such file or directory" from a process racing a lease release).
fn check_removed_through_the_other_mount_is_absent_not_an_error() {
    let twin = TwinMount::new(0);
    let (via_a, via_b) = (twin.a.join("session.json"), twin.b.join("session.json"));
    let fake = FakeServer::builder().build();
    let session = fake.seed_session("http://127.0.0.1:9/token").expect("seed");
    let bytes = session.to_json();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (stop, via_a, bytes) = (Arc::clone(&stop), via_a.clone(), bytes.clone());
        std::thread::spawn(move || {
            let staging = via_a.with_extension("staging");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::fs::write(&staging, &bytes).expect("write");
                std::fs::rename(&staging, &via_a).expect("rename");
                let _ = std::fs::remove_file(&via_a);
            }
        })
    };
    let reader = Store::new(&via_b);
    let started = std::time::Instant::now();
    let (mut found, mut absent, mut errors) = (0u32, 0u32, Vec::new());
    while started.elapsed() < Duration::from_secs(4) {
        match reader.load() {
            Ok(Some(_)) => found += 1,
            Ok(None) => absent += 1,
            Err(e) => errors.push(e.to_string()),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().expect("churn thread");
    eprintln!(
        "reads through b while a saves and removes: {found} found, {absent} absent, {} errors",
        errors.len()
    );
    assert!(
        found > 0 && absent > 0,
        "the bed raced: {found} found, {absent} absent"
    );
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
}

/// Failure table: a read (session or lease) whose file another machine removes or replaces between the open and the `fstat`/read (FUSE answers `ENOENT`, NFS `ESTALE` on the open descriptor)
#[test]
#[ignore = "needs root and bindfs; .ci/run runs it"]
fn a_file_removed_through_the_other_mount_while_read_is_absent_not_an_error() {
    if inside_private_namespace(
        "twin_mount::a_file_removed_through_the_other_mount_while_read_is_absent_not_an_error",
    ) {
        check_removed_through_the_other_mount_is_absent_not_an_error();
    }
}

/// A server that refuses a reused refresh token with an empty-bodied 400 (Glewlwyd) instead
/// of `invalid_grant`: where locks do not meet, the losers go through the same fallback (they
/// re-read, find the winner's session and adopt it) and nothing is deleted.
#[test]
#[ignore = "needs root and bindfs; .ci/run runs it"]
fn without_a_lease_an_empty_bodied_400_goes_through_the_fallback_like_invalid_grant() {
    if inside_private_namespace(
        "twin_mount::without_a_lease_an_empty_bodied_400_goes_through_the_fallback_like_invalid_grant",
    ) {
        let twin = TwinMount::new(0);
        assert_locks_do_not_meet(&twin);
        let fake = FakeServer::builder()
            .policy(ReusePolicy::RejectOnly)
            .silent_refusals()
            .latency(Duration::from_millis(20))
            .build();
        let o = race_through_both_at(&twin, "advisory", fake);
        eprintln!(
            "twin mount, lock advisory, reject-only with empty 400s: {} ok, failed {:?}, {:?}",
            o.ok, o.failed, o.counters
        );
        assert_eq!(o.ok, 16, "every process adopted the winner: {:?}", o.failed);
        assert!(o.store_parses && o.session_alive, "nothing was deleted");
    }
}
