//! Side by side, on one real `redis-server`: credlock's Redis store against the refresh lock
//! people hand-roll (oauth2-proxy before its PR #3456, Nango before #2858/#2494, the Neon MCP
//! server before #233): `SET lock 1 NX PX 2000` never renewed, released by a plain `DEL`,
//! waiters that give up after 5 s and refresh anyway, and a refresh without the lock when
//! Redis cannot be reached. Several "hosts" of 64 threads each (every thread its own client
//! and connections, as separate instances would have; threads, not processes: Redis sees
//! connections, not PIDs), one session, a token endpoint slower than 2 s that revokes the
//! grant on any reuse of a refresh token. Prints the table of `docs/benchmarks.md`.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use credlock::transport::FormRequest;
use credlock::{Session, Store, TokenResponse, Transport};
use credlock_test::{FakeServer, FakeTransport, ReusePolicy};

use crate::common::TOKEN_ENDPOINT;
use crate::common::redis::{RedisServer, command};

const HOSTS: usize = 4;
const PER_HOST: usize = 64;
const LATENCY: Duration = Duration::from_millis(2500);

/// What one side did.
#[derive(Debug)]
struct Outcome {
    requests: u64,
    invalid_grant: u64,
    grants_revoked: u64,
    ok: usize,
    failed: usize,
    p50: Duration,
    p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Runs `get` on HOSTS × PER_HOST threads released together; each returns the access token
/// it got, if any. A token counts if the server still accepts it once all are done.
fn race(fake: &Arc<FakeServer>, get: Arc<dyn Fn() -> Option<String> + Send + Sync>) -> Outcome {
    let n = HOSTS * PER_HOST;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, get) = (Arc::clone(&barrier), Arc::clone(&get));
            std::thread::spawn(move || {
                barrier.wait();
                let started = Instant::now();
                let token = get();
                (token, started.elapsed())
            })
        })
        .collect();
    let mut times = Vec::new();
    let mut ok = 0;
    for h in handles {
        let (token, took) = h.join().expect("a thread panicked");
        ok += usize::from(token.is_some_and(|t| fake.is_access_token_valid(&t)));
        times.push(took);
    }
    times.sort();
    let c = fake.counters();
    Outcome {
        requests: c.refresh_requests,
        invalid_grant: c.invalid_grant,
        grants_revoked: c.grants_revoked,
        ok,
        failed: n - ok,
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
    }
}

fn expired_session(fake: &FakeServer) -> Session {
    fake.seed_session(TOKEN_ENDPOINT)
        .expect("seed")
        .with_expires_at(SystemTime::now())
}

/// The hand-rolled pattern, one call of one instance.
/// `last_seen` is the session this instance read last (in memory), what it refreshes when
/// Redis cannot be read.
fn control_token(port: u16, transport: &FakeTransport, last_seen: &Session) -> Option<String> {
    let redis = |args: &[&str]| command(port, None, args);
    let read = || -> Option<Session> {
        let json = redis(&["GET", "control:session"]).ok()?;
        Session::from_json(json.as_bytes(), Path::new("control")).ok()
    };
    let refresh = |session: &Session| -> Option<String> {
        let response = match transport.post_form(&FormRequest::refresh(session)) {
            Ok(r) if r.status == 200 => r,
            _ => return None,
        };
        let tokens = TokenResponse::from_json(&response.body).ok()?;
        let new = session.refreshed(tokens, SystemTime::now());
        let json = String::from_utf8(new.to_json()).expect("utf-8");
        let _ = redis(&["SET", "control:session", &json]);
        Some(new.access_token().secret().to_owned())
    };
    let fresh = |s: &Session| s.is_fresh(SystemTime::now(), Duration::from_secs(30));
    let Some(session) = read() else {
        // Redis is down: refresh anyway (the Neon MCP server before its PR #233).
        return refresh(last_seen);
    };
    if fresh(&session) {
        return Some(session.access_token().secret().to_owned());
    }
    match redis(&["SET", "control:lock", "1", "NX", "PX", "2000"]) {
        Ok(reply) if reply == "OK" => {
            let done = refresh(&session);
            // Released by DEL: whoever holds it now.
            let _ = redis(&["DEL", "control:lock"]);
            done
        }
        Ok(_) => {
            // Wait for the holder, up to 5 s; then refresh anyway.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                if let Some(s) = read().filter(|s| fresh(s)) {
                    return Some(s.access_token().secret().to_owned());
                }
                if redis(&["SET", "control:lock", "1", "NX", "PX", "2000"]).is_ok_and(|r| r == "OK")
                {
                    let current = read().unwrap_or(session.clone());
                    let done = refresh(&current);
                    let _ = redis(&["DEL", "control:lock"]);
                    return done;
                }
            }
            refresh(&session)
        }
        Err(_) => refresh(&session),
    }
}

fn fake() -> Arc<FakeServer> {
    FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .latency(LATENCY)
        .build()
}

fn row(name: &str, o: &Outcome) -> String {
    format!(
        "| {name} | {} | {} | {} | {} / {} | {:.2} s | {:.2} s |",
        o.requests,
        o.invalid_grant,
        o.grants_revoked,
        o.ok,
        o.ok + o.failed,
        o.p50.as_secs_f64(),
        o.p99.as_secs_f64()
    )
}

/// The table: refresh requests, `invalid_grant`s, grants killed, tokens handed out that the
/// server accepts, p50/p99
/// time to a token (or an error), for both sides, with Redis up and with Redis down.
#[test]
#[ignore = "a benchmark (about 30 s, 256 threads); .ci/run runs it with the ignored suites"]
fn credlock_against_the_hand_rolled_redis_lock_side_by_side() {
    let mut redis = RedisServer::start(None);
    let port = redis.port;
    let url = redis.url("bench");
    let mut rows = Vec::new();

    // credlock, Redis up.
    let fake_c = fake();
    Store::redis(&url)
        .expect("url")
        .save(&expired_session(&fake_c))
        .expect("save");
    let get: Arc<dyn Fn() -> Option<String> + Send + Sync> = {
        let (url, fake) = (url.clone(), fake_c.clone());
        Arc::new(move || {
            Store::redis(&url)
                .expect("url")
                .with_transport(Arc::new(FakeTransport::new(fake.clone())))
                .access_token()
                .ok()
                .map(|t| t.secret().to_owned())
        })
    };
    let credlock_up = race(&fake_c, get);
    rows.push(row("credlock, Redis up", &credlock_up));

    // The control, Redis up.
    let fake_h = fake();
    let seeded = expired_session(&fake_h);
    let json = String::from_utf8(seeded.to_json()).expect("utf-8");
    assert_eq!(redis.cmd(&["SET", "control:session", &json]), "OK");
    let get: Arc<dyn Fn() -> Option<String> + Send + Sync> = {
        let transport = Arc::new(FakeTransport::new(fake_h.clone()));
        Arc::new(move || control_token(port, &transport, &seeded))
    };
    let control_up = race(&fake_h, get);
    rows.push(row("hand-rolled lock, Redis up", &control_up));

    // Redis down: credlock.
    redis.stop();
    let fake_cd = fake();
    let get: Arc<dyn Fn() -> Option<String> + Send + Sync> = {
        let (url, fake) = (url.clone(), fake_cd.clone());
        Arc::new(move || {
            Store::redis(&url)
                .expect("url")
                .with_transport(Arc::new(FakeTransport::new(fake.clone())))
                .access_token()
                .ok()
                .map(|t| t.secret().to_owned())
        })
    };
    let credlock_down = race(&fake_cd, get);
    rows.push(row("credlock, Redis down", &credlock_down));

    // Redis down: the control falls through to an unlocked refresh of what it last saw.
    let fake_hd = fake();
    let seeded_down = expired_session(&fake_hd);
    let get: Arc<dyn Fn() -> Option<String> + Send + Sync> = {
        let transport = Arc::new(FakeTransport::new(fake_hd.clone()));
        Arc::new(move || control_token(port, &transport, &seeded_down))
    };
    let control_down = race(&fake_hd, get);
    rows.push(row("hand-rolled lock, Redis down", &control_down));

    eprintln!(
        "{HOSTS} hosts × {PER_HOST} threads, token endpoint {LATENCY:?}, grant revoked on reuse\n\
         | side | refresh requests | invalid_grant | grants killed | valid tokens | p50 | p99 |\n\
         |---|---|---|---|---|---|---|\n{}",
        rows.join("\n")
    );

    // credlock: one request, the grant alive, everyone served; with Redis down, nothing sent.
    assert_eq!(
        (credlock_up.requests, credlock_up.invalid_grant),
        (1, 0),
        "{credlock_up:?}"
    );
    assert_eq!(credlock_up.grants_revoked, 0);
    assert_eq!(credlock_up.ok, HOSTS * PER_HOST);
    assert_eq!(credlock_down.requests, 0, "{credlock_down:?}");
    assert_eq!(credlock_down.grants_revoked, 0);
    // The control: its 2 s lock runs out under a 2.5 s endpoint, a second instance re-sends
    // the rotated refresh token, and the grant dies; with Redis down, every instance sends.
    assert!(control_up.requests > 1, "{control_up:?}");
    assert!(control_up.grants_revoked >= 1, "{control_up:?}");
    assert_eq!(
        control_down.requests,
        (HOSTS * PER_HOST) as u64,
        "{control_down:?}"
    );
    assert!(control_down.grants_revoked >= 1, "{control_down:?}");
}
