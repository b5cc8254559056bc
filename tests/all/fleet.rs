//! Sessions on a real `redis-server` (one per test, on a free port, AOF fsynced always): the
//! file store's promise across machines that share no disk. One refresh per expiry for
//! threads and processes; a holder that lost its guard never overwrites a newer session; a
//! guard is released by its owner only; Redis down is a transient error with nothing sent or
//! deleted, and after a restart the session is there; the password is never shown.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use credlock::{Error, Fleet, Store};
use credlock_test::{FakeServer, FakeTransport, HttpServer, ReusePolicy};

use crate::common::redis::RedisServer;
use crate::common::{Reaped, TOKEN_ENDPOINT, tokens_from_threads, within};

const CHILD_URL_ENV: &str = "CREDLOCK_TEST_CHILD_REDIS_URL";
const GO_ENV: &str = "CREDLOCK_TEST_CHILD_GO";
const PASSWORD: &str = "pw-Zq81-never-shown";

fn fake(latency: Duration) -> Arc<FakeServer> {
    FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .latency(latency)
        .build()
}

fn on_fake(store: Store, fake: &Arc<FakeServer>) -> Store {
    store.with_transport(Arc::new(FakeTransport::new(fake.clone())))
}

/// Seeds a session on `fake` whose access token has expired, and saves it at `url`.
fn seed_expired(url: &str, fake: &FakeServer, endpoint: &str) -> credlock::Session {
    let seeded = fake
        .seed_session(endpoint)
        .expect("seed")
        .with_expires_at(SystemTime::now());
    Store::redis(url).expect("url").save(&seeded).expect("save");
    seeded
}

/// Eight processes and sixteen threads, each with its own store handle on one expired
/// session kept on Redis, against a server that revokes the grant on any reuse of a
/// refresh token: one refresh, everyone gets its token, the grant stays alive.
#[test]
fn eight_processes_and_sixteen_threads_on_one_expired_session_on_redis_send_one_refresh() {
    if let Some(url) = std::env::var_os(CHILD_URL_ENV) {
        return child_process(&url.to_string_lossy());
    }
    let redis = RedisServer::start(Some(PASSWORD));
    let url = redis.url("race");
    let fake = fake(Duration::from_millis(50));
    let http = HttpServer::start(fake.clone()).expect("start the token server");
    seed_expired(&url, &fake, &http.token_endpoint());

    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    let exe = std::env::current_exe().expect("test binary");
    let mut children: Vec<Reaped> = (0..8)
        .map(|_| {
            Reaped(
                Command::new(&exe)
                    .args([
                        "--exact",
                        "fleet::eight_processes_and_sixteen_threads_on_one_expired_session_on_redis_send_one_refresh",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_URL_ENV, &url)
                    .env(GO_ENV, &go)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn"),
            )
        })
        .collect();
    std::fs::write(&go, b"").expect("start them together");
    let threads = {
        let url = url.clone();
        tokens_from_threads(16, move || Store::redis(&url).expect("url"))
    };

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tokens: Vec<String> = threads
        .into_iter()
        .map(|t| t.expect("every thread gets a token"))
        .collect();
    for child in &mut children {
        while child.0.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "a child hung");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut out = String::new();
        std::io::Read::read_to_string(child.0.stdout.as_mut().expect("stdout"), &mut out)
            .expect("read");
        let token = out
            .lines()
            .find_map(|l| l.split_once("TOKEN ").map(|(_, t)| t))
            .unwrap_or_else(|| panic!("a child failed: {out}"))
            .to_owned();
        tokens.push(token);
    }
    assert_eq!(tokens.len(), 24);
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    let c = fake.counters();
    assert_eq!(c.refresh_requests, 1, "{c:?}");
    assert_eq!(c.invalid_grant, 0, "{c:?}");
    let stored = Store::redis(&url)
        .expect("url")
        .load()
        .expect("load")
        .expect("stored");
    assert_eq!(stored.access_token().secret(), tokens[0]);
    assert!(fake.is_live(stored.refresh_token().secret()));
    // The guard is gone with its holder.
    assert_eq!(redis.cmd(&["EXISTS", "{credlock:race}:guard"]), "0");
}

/// The child half: waits for the start signal, asks for a token, prints it.
fn child_process(url: &str) {
    let go = std::path::PathBuf::from(std::env::var_os(GO_ENV).expect("go file"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !go.exists() {
        assert!(Instant::now() < deadline, "no start signal");
        std::thread::sleep(Duration::from_millis(1));
    }
    let token = Store::redis(url)
        .expect("url")
        .access_token()
        .expect("a token");
    println!("TOKEN {}", token.secret());
}

/// The fence: a holder whose guard was taken over while its request was in flight (its TTL
/// ran out while it was paused, say) and another holder saved a newer session meanwhile,
/// gets its rotated tokens but cannot save them over the newer session.
///
/// Failure table: the guard's holder is paused past the guard's TTL and another holder saves
#[test]
fn a_holder_whose_guard_was_taken_over_cannot_save_over_the_newer_session() {
    let redis = RedisServer::start(None);
    let url = redis.url("fence");
    let fake = fake(Duration::ZERO);
    seed_expired(&url, &fake, TOKEN_ENDPOINT);
    let newer = fake.seed_session(TOKEN_ENDPOINT).expect("another grant");
    {
        let (url, newer, port) = (url.clone(), newer.clone(), redis.port);
        let done = std::sync::atomic::AtomicBool::new(false);
        fake.on_refresh(move |_| {
            if done.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            // What the guard's TTL running out and another process taking it would do.
            let other = RedisServer::client(port, None);
            other(&["DEL", "{credlock:fence}:guard"]);
            Store::redis(&url)
                .expect("url")
                .save(&newer)
                .expect("the other holder saves");
        });
    }
    let store = on_fake(Store::redis(&url).expect("url"), &fake);
    let err = within(Duration::from_secs(30), move || store.access_token()).expect_err("fenced");
    match &err {
        Error::NotSaved { source, .. } => {
            assert!(matches!(**source, Error::LeaseLost { .. }), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
    let stored = Store::redis(&url)
        .expect("url")
        .load()
        .expect("load")
        .expect("kept");
    assert_eq!(
        stored.refresh_token().secret(),
        newer.refresh_token().secret()
    );
}

/// A guard is removed by its owner only: a holder that finds another token in the guard key
/// when it is done (its own ran out and was taken) leaves that guard in place.
#[test]
fn a_guard_is_released_by_its_owner_only() {
    let redis = RedisServer::start(None);
    let url = redis.url("owner");
    let fake = fake(Duration::ZERO);
    seed_expired(&url, &fake, TOKEN_ENDPOINT);
    {
        let port = redis.port;
        fake.on_refresh(move |_| {
            let other = RedisServer::client(port, None);
            other(&[
                "SET",
                "{credlock:owner}:guard",
                "someone-else",
                "PX",
                "60000",
            ]);
        });
    }
    let store = on_fake(Store::redis(&url).expect("url"), &fake);
    // The refresh token sent was consumed by the server and nothing newer was saved: the
    // save replaces the session that holds it, whoever holds the guard now.
    let token = within(Duration::from_secs(30), move || store.access_token()).expect("saved");
    let stored = Store::redis(&url)
        .expect("url")
        .load()
        .expect("load")
        .expect("stored");
    assert_eq!(stored.access_token().secret(), token.secret());
    assert_eq!(
        redis.cmd(&["GET", "{credlock:owner}:guard"]),
        "someone-else"
    );
}

/// Failure table: Redis unreachable or not answering
#[test]
fn with_redis_stopped_a_token_is_a_transient_error_nothing_is_sent_and_the_session_survives() {
    let mut redis = RedisServer::start(Some(PASSWORD));
    let url = redis.url("down");
    let fake = fake(Duration::ZERO);
    let seeded = seed_expired(&url, &fake, TOKEN_ENDPOINT);
    redis.stop();
    let store = on_fake(Store::redis(&url).expect("url"), &fake);
    let err = within(Duration::from_secs(30), move || store.access_token())
        .expect_err("no store, no token");
    assert!(matches!(err, Error::StoreUnavailable { .. }), "{err:?}");
    assert!(err.is_transient(), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert_eq!(fake.counters().refresh_requests, 0);

    redis.restart();
    let store = on_fake(Store::redis(&url).expect("url"), &fake);
    let stored = store
        .load()
        .expect("load")
        .expect("the AOF kept the session");
    assert_eq!(
        stored.refresh_token().secret(),
        seeded.refresh_token().secret()
    );
    let token = store.access_token().expect("refreshes after the restart");
    assert_ne!(token.secret(), seeded.access_token().secret());
    assert_eq!(fake.counters().refresh_requests, 1);
}

/// A refresh slower than the guard's time-to-live keeps its guard (the heartbeat renews
/// it): the waiters wait for its session instead of sending the refresh token again.
///
/// Failure table: the token endpoint is slower than the guard's TTL
#[test]
fn a_refresh_slower_than_the_guard_ttl_keeps_its_guard_and_is_sent_once() {
    let redis = RedisServer::start(None);
    let url = redis.url("slow");
    let fake = fake(Duration::from_millis(1200));
    seed_expired(&url, &fake, TOKEN_ENDPOINT);
    let tokens = {
        let (url, fake) = (url.clone(), fake.clone());
        tokens_from_threads(6, move || {
            on_fake(Store::redis(&url).expect("url"), &fake)
                .with_lease_ttl(Duration::from_millis(300))
        })
    };
    let tokens: Vec<String> = tokens.into_iter().map(|t| t.expect("a token")).collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    let c = fake.counters();
    assert_eq!((c.refresh_requests, c.invalid_grant), (1, 0), "{c:?}");
}

/// After `invalid_grant` with nothing newer stored, the session that holds the failed
/// refresh token is deleted (compare-and-delete), and only it.
///
/// Failure table: `invalid_grant` and nothing newer is stored
#[test]
fn a_revoked_grant_deletes_only_the_session_that_holds_the_failed_token() {
    let redis = RedisServer::start(None);
    let url = redis.url("revoked");
    let fake = fake(Duration::ZERO);
    let seeded = seed_expired(&url, &fake, TOKEN_ENDPOINT);
    assert!(fake.revoke_grant_of(seeded.refresh_token().secret()));
    let store =
        on_fake(Store::redis(&url).expect("url"), &fake).with_poll_schedule(vec![Duration::ZERO]);
    let err = store.access_token().expect_err("expired");
    assert!(
        matches!(err, Error::SessionExpired { deleted: true, .. }),
        "{err:?}"
    );
    assert_eq!(redis.cmd(&["EXISTS", "{credlock:revoked}:session"]), "0");
}

/// A wrong password is a configuration error that names the store without the password;
/// neither the store's nor the fleet's `Debug` shows it.
#[test]
fn the_password_never_appears_in_errors_or_debug_output() {
    let redis = RedisServer::start(Some(PASSWORD));
    let wrong = format!("redis://:{PASSWORD}-wrong@127.0.0.1:{}/0?key=k", redis.port);
    let store = Store::redis(&wrong).expect("url");
    let err = store.load().expect_err("wrong password");
    assert!(matches!(err, Error::StoreRefused { .. }), "{err:?}");
    assert!(err.is_configuration(), "{err}");
    let fleet = Fleet::redis(&redis.url("k")).expect("url");
    let shown = format!(
        "{err} {err:?} {store:?} {fleet:?} {:?} {}",
        fleet.store("k").expect("store"),
        store.path().display()
    );
    assert!(!shown.contains("pw-Zq81"), "{shown}");
    assert!(
        shown.contains(&format!("127.0.0.1:{}", redis.port)),
        "{shown}"
    );
    let bad = Store::redis(&format!("redis://:{PASSWORD}@127.0.0.1:notaport?key=k"))
        .expect_err("a bad port");
    assert!(!format!("{bad} {bad:?}").contains("pw-Zq81"), "{bad}");
}

/// One fleet, many sessions: four keys, four threads each, every key refreshed once, and
/// each key's threads get that key's token.
#[test]
fn a_fleet_refreshes_each_of_its_sessions_once_however_many_ask() {
    let redis = RedisServer::start(Some(PASSWORD));
    let fleet =
        Fleet::redis(&format!("redis://:{PASSWORD}@127.0.0.1:{}/2", redis.port)).expect("url");
    let fake = fake(Duration::from_millis(30));
    let keys = ["tenant-a", "tenant-b", "user:42", "user:43"];
    for key in keys {
        let seeded = fake
            .seed_session(TOKEN_ENDPOINT)
            .expect("seed")
            .with_expires_at(SystemTime::now());
        fleet.store(key).expect("key").save(&seeded).expect("save");
    }
    let handles: Vec<_> = keys
        .iter()
        .map(|key| {
            let (fleet, fake, key) = (fleet.clone(), fake.clone(), (*key).to_owned());
            std::thread::spawn(move || {
                tokens_from_threads(4, move || on_fake(fleet.store(&key).expect("key"), &fake))
            })
        })
        .collect();
    let mut firsts = Vec::new();
    for h in handles {
        let tokens: Vec<String> = h
            .join()
            .expect("joined")
            .into_iter()
            .map(|t| t.expect("a token"))
            .collect();
        assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
        firsts.push(tokens[0].clone());
    }
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), 4, "each session its own token");
    let c = fake.counters();
    assert_eq!((c.refresh_requests, c.invalid_grant), (4, 0), "{c:?}");
    // Four sessions in database 2, the URL's.
    let shown = redis.cmd(&["INFO", "keyspace"]);
    assert!(shown.contains("db2:keys=4"), "{shown}");
}

/// What a failover can lose: replication is asynchronous, so a replica promoted before it
/// got the last save serves the session before it. Its refresh token was already rotated:
/// the server refuses it (and, with reuse detection, revokes the grant), and the
/// `invalid_grant` fallback deletes only that session. Nothing protects the grant here; the
/// docs say so.
///
/// Failure table: a failover (or a restore) brings back an older session
#[test]
fn a_failover_that_lost_the_last_save_ends_the_session_without_touching_a_newer_one() {
    let redis = RedisServer::start(None);
    let url = redis.url("failover");
    let fake = fake(Duration::ZERO);
    let seeded = seed_expired(&url, &fake, TOKEN_ENDPOINT);
    let store =
        on_fake(Store::redis(&url).expect("url"), &fake).with_poll_schedule(vec![Duration::ZERO]);
    store.access_token().expect("the first refresh");
    // The replica that took over never got that save.
    Store::redis(&url)
        .expect("url")
        .save(&seeded)
        .expect("the old session is back");
    let err = store
        .access_token()
        .expect_err("the old refresh token is refused");
    assert!(err.needs_login(), "{err:?}");
    assert!(
        matches!(err, Error::SessionExpired { deleted: true, .. }),
        "{err:?}"
    );
    assert_eq!(fake.counters().reuse_detected, 1);
}

/// Failure table: Redis restarted without persistence (no AOF, no RDB snapshot)
#[test]
fn a_restart_without_persistence_loses_every_session() {
    let mut redis = RedisServer::start_without_persistence();
    let url = redis.url("volatile");
    let fake = fake(Duration::ZERO);
    seed_expired(&url, &fake, TOKEN_ENDPOINT);
    let persistence = Fleet::redis(&url)
        .expect("url")
        .persistence()
        .expect("INFO");
    assert!(!persistence.aof, "{persistence:?}");
    redis.restart();
    let store = on_fake(Store::redis(&url).expect("url"), &fake);
    let err = store.access_token().expect_err("gone");
    assert!(matches!(err, Error::NoSession { .. }), "{err:?}");
    assert!(err.needs_login());
    assert_eq!(fake.counters().refresh_requests, 0);
}

/// Failure table: wrong password, ACL user, or a command the ACL forbids
#[test]
fn a_user_the_acl_forbids_to_run_scripts_gets_a_configuration_error_and_nothing_is_sent() {
    let redis = RedisServer::start(Some(PASSWORD));
    let fake = fake(Duration::ZERO);
    seed_expired(&redis.url("acl"), &fake, TOKEN_ENDPOINT);
    assert_eq!(
        redis.cmd(&[
            "ACL",
            "SETUSER",
            "reader",
            "on",
            ">reader-pw",
            "~*",
            "+@read",
            "+ping"
        ]),
        "OK"
    );
    let url = format!(
        "redis://reader:reader-pw@127.0.0.1:{}/0?key=acl",
        redis.port
    );
    let store = on_fake(Store::redis(&url).expect("url"), &fake);
    let err = store.access_token().expect_err("may not take the guard");
    assert!(matches!(err, Error::StoreRefused { .. }), "{err:?}");
    assert!(err.is_configuration(), "{err}");
    assert!(!format!("{err:?}").contains("reader-pw"), "{err:?}");
    assert_eq!(fake.counters().refresh_requests, 0);
}

/// `AsyncStore` over a fleet: three sessions, each asked for by eight tasks and by a second
/// `AsyncStore` of its own (another instance of the service), on one multi-threaded runtime:
/// one refresh per session.
#[cfg(feature = "tokio")]
#[test]
fn async_stores_of_several_sessions_on_one_fleet_refresh_each_once() {
    let redis = RedisServer::start(None);
    let fleet = Fleet::redis(&format!("redis://127.0.0.1:{}", redis.port)).expect("url");
    let fake = fake(Duration::from_millis(40));
    let keys = ["a", "b", "c"];
    for key in keys {
        let seeded = fake
            .seed_session(TOKEN_ENDPOINT)
            .expect("seed")
            .with_expires_at(SystemTime::now());
        fleet.store(key).expect("key").save(&seeded).expect("save");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    let tokens = runtime.block_on(async {
        let mut tasks = Vec::new();
        for key in keys {
            for _instance in 0..2 {
                let store = Arc::new(credlock::AsyncStore::new(on_fake(
                    fleet.store(key).expect("key"),
                    &fake,
                )));
                for _ in 0..8 {
                    let store = Arc::clone(&store);
                    tasks.push(tokio::spawn(async move {
                        let token = store.access_token().await.expect("a token");
                        (key, token.secret().to_owned())
                    }));
                }
            }
        }
        let mut tokens = Vec::new();
        for task in tasks {
            tokens.push(task.await.expect("joined"));
        }
        tokens
    });
    for key in keys {
        let of_key: Vec<&String> = tokens
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, t)| t)
            .collect();
        assert_eq!(of_key.len(), 16);
        assert!(of_key.iter().all(|t| *t == of_key[0]), "{of_key:?}");
    }
    let c = fake.counters();
    assert_eq!((c.refresh_requests, c.invalid_grant), (3, 0), "{c:?}");
}

/// Redis killed (`kill -9`) while the refresh request is in flight: the new session cannot be
/// saved and comes back in `NotSaved`; nothing is deleted, and after a restart the AOF holds
/// the session as it was before the refresh. Its refresh token was rotated by the server:
/// against a server that revokes the grant on reuse, the next refresh is refused and asks
/// for a login (what any store that loses a save meets). The guard the holder could not
/// release is kept by the AOF and ends with its time-to-live.
///
/// Failure table: Redis stops between the refresh and its save
#[test]
fn redis_killed_mid_refresh_loses_that_save_only_and_keeps_the_session_before_it() {
    let redis = Arc::new(std::sync::Mutex::new(RedisServer::start(None)));
    let url = redis.lock().expect("server").url("killed");
    let fake = fake(Duration::ZERO);
    let seeded = seed_expired(&url, &fake, TOKEN_ENDPOINT);
    {
        let redis = Arc::clone(&redis);
        let once = std::sync::atomic::AtomicBool::new(false);
        fake.on_refresh(move |_| {
            if !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                redis.lock().expect("server").stop();
            }
        });
    }
    // The holder cannot release its guard while Redis is down, and the AOF keeps it: it
    // ends with its time-to-live, short here.
    let store = on_fake(Store::redis(&url).expect("url"), &fake)
        .with_poll_schedule(vec![Duration::ZERO])
        .with_lease_ttl(Duration::from_secs(1));
    let err = within(Duration::from_secs(60), move || store.access_token()).expect_err("not saved");
    match &err {
        Error::NotSaved { session, source } => {
            assert!(
                matches!(**source, Error::StoreUnavailable { .. }),
                "{source:?}"
            );
            assert!(fake.is_access_token_valid(session.access_token().secret()));
        }
        other => panic!("{other:?}"),
    }
    redis.lock().expect("server").restart();
    let store =
        on_fake(Store::redis(&url).expect("url"), &fake).with_poll_schedule(vec![Duration::ZERO]);
    assert_ne!(
        redis
            .lock()
            .expect("server")
            .cmd(&["PTTL", "{credlock:killed}:guard"]),
        "-1",
        "a guard without a time-to-live"
    );
    let kept = store.load().expect("load").expect("kept");
    assert_eq!(
        kept.refresh_token().secret(),
        seeded.refresh_token().secret()
    );
    let err = store
        .access_token()
        .expect_err("the rotated token is refused");
    assert!(err.needs_login(), "{err:?}");
}

/// A guard held by another instance for the whole wait: `LockTimeout` (transient), nothing
/// sent, and its message speaks of the guard on Redis, not of lock files.
///
/// Failure table: the guard is held by another instance for the whole wait
#[test]
fn a_guard_held_elsewhere_for_the_whole_wait_is_a_lock_timeout_about_the_guard() {
    let redis = RedisServer::start(None);
    let url = redis.url("held");
    let fake = fake(Duration::ZERO);
    seed_expired(&url, &fake, TOKEN_ENDPOINT);
    assert_eq!(
        redis.cmd(&[
            "SET",
            "{credlock:held}:guard",
            "another-instance",
            "PX",
            "60000"
        ]),
        "OK"
    );
    let store = on_fake(Store::redis(&url).expect("url"), &fake)
        .with_lock_timeout(Duration::from_millis(300));
    let err = store.access_token().expect_err("held elsewhere");
    assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
    assert!(err.is_transient());
    let said = err.to_string();
    assert!(said.contains("{credlock:held}:guard"), "{said}");
    assert!(said.contains("time-to-live"), "{said}");
    assert!(!said.contains("file"), "{said}");
    assert_eq!(fake.counters().refresh_requests, 0);
}

/// Redis stalls for one instance (a TCP proxy holds the server's answers) right after it took
/// the guard, for longer than the guard's TTL: that instance cannot check its fence, so it
/// sends nothing (its refresh fails with `StoreUnavailable`; once Redis answers again it may
/// hand out the other instance's session, which is still valid); its guard runs out
/// unrenewed, another instance takes it and refreshes, once; the grant stays alive.
///
/// Failure table: Redis stalls for the guard's holder longer than the guard's TTL, before it sends
#[test]
fn a_holder_cut_off_from_redis_past_its_ttl_sends_nothing_and_another_refreshes_once() {
    let redis = RedisServer::start(None);
    let url = redis.url("stall");
    let fake = fake(Duration::ZERO);
    seed_expired(&url, &fake, TOKEN_ENDPOINT);
    let proxy = crate::common::redis::StallingProxy::start(redis.port, Duration::from_secs(8));
    let via_proxy = format!("redis://127.0.0.1:{}/0?key=stall", proxy.port);
    let stalled = {
        let store = on_fake(Store::redis(&via_proxy).expect("url"), &fake)
            .with_lease_ttl(Duration::from_secs(1));
        std::thread::spawn(move || store.access_token())
    };
    // Once the stalled instance holds the guard, another one asks.
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.cmd(&["EXISTS", "{credlock:stall}:guard"]) != "1" {
        assert!(
            Instant::now() < deadline,
            "the first instance never took the guard"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let other = on_fake(Store::redis(&url).expect("url"), &fake);
    let token = within(Duration::from_secs(30), move || other.access_token())
        .expect("the other instance refreshes after the TTL");
    // It either fails, or (once the stall is over, within its retry after a transient
    // failure) hands out the other instance's session, still valid: never a request of its own.
    match within(Duration::from_secs(30), move || {
        stalled.join().expect("joined")
    }) {
        Err(e) => assert!(matches!(e, Error::StoreUnavailable { .. }), "{e:?}"),
        Ok(adopted) => {
            assert_eq!(adopted.secret(), token.secret());
            assert!(!adopted.refreshed());
        }
    }
    let c = fake.counters();
    assert_eq!((c.refresh_requests, c.invalid_grant), (1, 0), "{c:?}");
    assert!(fake.is_access_token_valid(token.secret()));
}

/// A long-lived handle whose pooled connections died with a Redis restart reads at once
/// after it: a read that fails on a reused connection is tried again on a new one.
#[test]
fn a_read_after_a_redis_restart_reconnects_instead_of_failing_once() {
    let mut redis = RedisServer::start(None);
    let url = redis.url("restarted");
    let fake = fake(Duration::ZERO);
    let seeded = seed_expired(&url, &fake, TOKEN_ENDPOINT);
    let store = Store::redis(&url).expect("url");
    assert!(store.load().expect("load").is_some());
    redis.restart();
    let again = store.load().expect("read on a new connection");
    assert_eq!(
        again.expect("kept by the AOF").refresh_token().secret(),
        seeded.refresh_token().secret()
    );
}

/// A server that does not know `AUTH` (renamed, or a proxy or Redis-like that lacks it)
/// answers with the command's arguments, the password among them: the error says what
/// failed, but none of the server's words that quote what was sent.
///
/// Failure table: `AUTH` renamed or unsupported, the server's reply quoting the password
#[test]
fn a_server_whose_reply_to_auth_quotes_the_password_never_gets_it_into_an_error() {
    let redis = RedisServer::start_with_args(&["--rename-command", "AUTH", "XAUTH"]);
    for url in [
        format!("redis://:{PASSWORD}@127.0.0.1:{}/0?key=k", redis.port),
        format!("redis://app:{PASSWORD}@127.0.0.1:{}/0?key=k", redis.port),
    ] {
        let store = Store::redis(&url).expect("url");
        let err = store.load().expect_err("AUTH is unknown");
        assert!(matches!(err, Error::StoreRefused { .. }), "{err:?}");
        assert!(err.is_configuration(), "{err}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("pw-Zq81"), "{shown}");
        assert!(shown.contains("authentication"), "{shown}");
    }
}

/// A server that is loading its data, busy with a script, a replica (read-only) or cut off
/// from its primary answers with an error that passes: a transient `StoreUnavailable`
/// (exit 4), not a configuration error, and nothing is sent.
///
/// Failure table: Redis answers that it is loading, busy, or a read-only replica
#[test]
fn a_read_only_replica_or_a_replica_cut_off_from_its_primary_is_a_transient_error() {
    let redis = RedisServer::start(None);
    let url = redis.url("replica");
    let fake = fake(Duration::ZERO);
    seed_expired(&url, &fake, TOKEN_ENDPOINT);
    // A replica of a primary that is not there keeps its data and refuses writes.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = dead.local_addr().expect("addr").port().to_string();
    drop(dead);
    assert_eq!(redis.cmd(&["REPLICAOF", "127.0.0.1", &dead_port]), "OK");
    let store =
        on_fake(Store::redis(&url).expect("url"), &fake).with_poll_schedule(vec![Duration::ZERO]);
    let err = within(Duration::from_secs(30), move || store.access_token())
        .expect_err("a replica takes no guard");
    assert!(matches!(err, Error::StoreUnavailable { .. }), "{err:?}");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("READONLY"), "{err}");
    assert_eq!(redis.cmd(&["EXISTS", "{credlock:replica}:session"]), "1");
    // Told not to serve stale data, it refuses reads too (MASTERDOWN).
    assert_eq!(
        redis.cmd(&["CONFIG", "SET", "replica-serve-stale-data", "no"]),
        "OK"
    );
    let err = Store::redis(&url).expect("url").load().expect_err("stale");
    assert!(matches!(err, Error::StoreUnavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("MASTERDOWN"), "{err}");
    assert_eq!(fake.counters().refresh_requests, 0);
}

/// One deadline per command, not per socket call: a server (or whatever sits between) that
/// trickles its reply a byte at a time is given up on after the command's timeout (5 s),
/// never waited for indefinitely.
///
/// Failure table: Redis unreachable or not answering
#[test]
fn a_server_that_trickles_its_reply_is_given_up_on_after_the_command_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            listener.set_nonblocking(true).expect("nonblocking");
            let started = Instant::now();
            let mut clients = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst)
                && started.elapsed() < Duration::from_secs(60)
            {
                if let Ok((mut c, _)) = listener.accept() {
                    c.set_read_timeout(Some(Duration::from_millis(200))).ok();
                    let _ = c.read(&mut [0u8; 4096]);
                    let _ = c.write_all(b"$40\r\n");
                    clients.push(c);
                }
                // One byte of the 40 promised, every 500 ms, to every client.
                for c in &mut clients {
                    let _ = c.write_all(b"x");
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let url = format!("redis://127.0.0.1:{port}/0?key=trickle");
    let started = Instant::now();
    let err = within(Duration::from_secs(15), move || {
        Store::redis(&url).expect("url").load()
    })
    .expect_err("no reply in time");
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    server.join().expect("joined");
    assert!(matches!(err, Error::StoreUnavailable { .. }), "{err:?}");
    assert!(err.is_transient(), "{err}");
    assert!(took < Duration::from_secs(12), "{took:?}");
}

/// The `ACL SETUSER` line of `docs/fleet.md`, with `PASSWORD` given and `drop` left out.
fn documented_acl(password: &str, drop: &[&str]) -> Vec<String> {
    let doc = include_str!("../../docs/fleet.md");
    let at = doc.find("`ACL SETUSER credlock").expect("the ACL line");
    let line = &doc[at + 1..];
    let line = &line[..line.find('`').expect("its end")];
    line.split_whitespace()
        .map(|w| w.replace("PASSWORD", password))
        .filter(|w| !drop.contains(&w.as_str()))
        .collect()
}

/// The ACL the docs give is enough: a user created exactly as documented refreshes an
/// expired session, saves it and releases its guard.
#[test]
fn a_user_with_the_documented_acl_refreshes_saves_and_releases_its_guard() {
    let redis = RedisServer::start(None);
    let fake = fake(Duration::ZERO);
    seed_expired(&redis.url("acl-ok"), &fake, TOKEN_ENDPOINT);
    let acl = documented_acl("acl-pw", &[]);
    let acl: Vec<&str> = acl.iter().map(String::as_str).collect();
    assert_eq!(redis.cmd(&acl), "OK");
    let url = format!(
        "redis://credlock:acl-pw@127.0.0.1:{}/0?key=acl-ok",
        redis.port
    );
    let store = on_fake(Store::redis(&url).expect("url"), &fake);
    let token = within(Duration::from_secs(30), move || store.access_token()).expect("a token");
    assert!(token.refreshed());
    let stored = Store::redis(&redis.url("acl-ok"))
        .expect("url")
        .load()
        .expect("load")
        .expect("saved");
    assert_eq!(stored.access_token().secret(), token.secret());
    assert_eq!(redis.cmd(&["EXISTS", "{credlock:acl-ok}:guard"]), "0");
}

/// A user that may take the guard but not run every command the scripts call learns it at
/// the fence, before the refresh token is sent, never after the server consumed it.
///
/// Failure table: the ACL lacks a command the scripts call (`HSET`, `DEL`, `PEXPIRE`)
#[test]
fn a_user_whose_acl_lacks_a_command_the_scripts_call_sends_nothing() {
    for missing in ["+hset", "+pexpire", "+del"] {
        let redis = RedisServer::start(None);
        let fake = fake(Duration::ZERO);
        let seeded = seed_expired(&redis.url("acl-short"), &fake, TOKEN_ENDPOINT);
        let acl = documented_acl("acl-pw", &[missing]);
        let acl: Vec<&str> = acl.iter().map(String::as_str).collect();
        assert_eq!(redis.cmd(&acl), "OK");
        let url = format!(
            "redis://credlock:acl-pw@127.0.0.1:{}/0?key=acl-short",
            redis.port
        );
        let store = on_fake(Store::redis(&url).expect("url"), &fake)
            .with_poll_schedule(vec![Duration::ZERO]);
        let err = within(Duration::from_secs(30), move || store.access_token())
            .expect_err("the fence is refused");
        assert!(
            matches!(err, Error::StoreRefused { .. }),
            "{missing}: {err:?}"
        );
        assert!(err.is_configuration(), "{err}");
        assert_eq!(fake.counters().refresh_requests, 0, "{missing}");
        let stored = Store::redis(&redis.url("acl-short"))
            .expect("url")
            .load()
            .expect("load")
            .expect("kept");
        assert_eq!(
            stored.refresh_token().secret(),
            seeded.refresh_token().secret()
        );
    }
}

/// Protection at rest is the server's on a session kept there: a change of protection, to
/// none as to the keychain, is refused as such, never answered from a local file that
/// happens to be named like the URL (which said there was no session).
#[test]
fn a_change_of_protection_on_a_session_kept_on_redis_is_refused() {
    let redis = RedisServer::start(None);
    let url = redis.url("protect");
    let fake = fake(Duration::ZERO);
    seed_expired(&url, &fake, TOKEN_ENDPOINT);
    let store = Store::redis(&url).expect("url");
    for to in [credlock::Protection::None, credlock::Protection::Keyring] {
        let err = store.protect(to).expect_err("refused");
        assert!(
            matches!(err, Error::ProtectionRefused { .. }),
            "{to:?}: {err:?}"
        );
    }
    assert_eq!(store.file_mode(), None);
    assert!(store.load().expect("load").is_some(), "the session is kept");
}

/// The answer to the `SET NX` that took the guard is lost (the connection breaks after the
/// server ran it): the taker asks again with the same token, finds its own token in the
/// guard and goes on as its holder, instead of failing and leaving a guard nobody owns to
/// block every instance for its whole TTL.
///
/// Failure table: the answer to the guard's `SET` is lost
#[test]
fn a_guard_whose_set_answer_was_lost_is_recognised_as_ours_and_released() {
    let redis = RedisServer::start(None);
    let url = redis.url("lost-set");
    let fake = fake(Duration::ZERO);
    seed_expired(&url, &fake, TOKEN_ENDPOINT);
    let proxy = crate::common::redis::ReplyDroppingProxy::start(redis.port);
    let via_proxy = format!("redis://127.0.0.1:{}/0?key=lost-set", proxy.port);
    let store = on_fake(Store::redis(&via_proxy).expect("url"), &fake);
    let token =
        within(Duration::from_secs(30), move || store.access_token()).expect("the guard is ours");
    assert!(token.refreshed());
    assert_eq!(fake.counters().refresh_requests, 1);
    assert_eq!(redis.cmd(&["EXISTS", "{credlock:lost-set}:guard"]), "0");
}

/// A long-lived handle whose pooled connections died with a Redis restart writes at once
/// after it too: the guard's `SET NX`, which failed on the dead connection, is asked again
/// with the same token on a new one (any other write is never retried, since it may have
/// run; the save follows on the new connection).
#[test]
fn a_write_after_a_redis_restart_uses_a_new_connection_instead_of_failing_once() {
    let mut redis = RedisServer::start(None);
    let url = redis.url("restarted-write");
    let fake = fake(Duration::ZERO);
    let seeded = seed_expired(&url, &fake, TOKEN_ENDPOINT);
    let store = Store::redis(&url).expect("url");
    assert!(store.load().expect("load").is_some());
    redis.restart();
    store.save(&seeded).expect("saved on a new connection");
}
