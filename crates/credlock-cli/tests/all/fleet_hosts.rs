//! Side by side on simulated hosts: credlock's Redis store against the refresh lock people
//! hand-roll (oauth2-proxy before its PR #3456, Nango before #2858/#2494, the Neon MCP server
//! before #233: `SET lock 1 NX PX 2000` never renewed, released by a plain `DEL`, waiters that
//! give up after 5 s and refresh anyway, a refresh without the lock when Redis cannot be
//! read). Each host is a PID and UTS namespace of its own (`unshare --pid --fork --uts
//! --mount-proc`, its own hostname) whose first process (this test binary, re-executed as the
//! host's "agent") starts the host's processes, tells the test when they are all up, and
//! releases them together on its word. credlock's processes are `credlock race-child` on
//! `--store redis://…?key=…`; the control's are this test binary re-executed in control mode.
//! One `redis-server`, one token endpoint over loopback HTTP that takes 2.5 s and revokes the
//! grant on any reuse of a refresh token. Prints the table of `docs/benchmarks.md`.
//!
//! `CREDLOCK_BENCH_HOSTS` and `CREDLOCK_BENCH_PER_HOST` change the size (4 × 64 by default).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant, SystemTime};

use credlock::transport::FormRequest;
use credlock::{Session, Store, TokenResponse, Transport, UreqTransport};
use credlock_test::{FakeServer, HttpServer, ReusePolicy};

use crate::common::Reaped;
use crate::common::redis::{RedisServer, command};

const TEST: &str =
    "fleet_hosts::credlock_on_simulated_hosts_against_the_hand_rolled_redis_lock_side_by_side";
/// Set in a host's agent: which side its processes run (`credlock` or `control`).
const AGENT_ENV: &str = "CREDLOCK_BENCH_AGENT";
/// Set in a control process: the file holding the session it saw last (in memory, for a real
/// instance), what it refreshes when Redis cannot be read.
const CONTROL_ENV: &str = "CREDLOCK_BENCH_CONTROL_SEEN";
const STORE_ENV: &str = "CREDLOCK_BENCH_STORE";
const REDIS_PORT_ENV: &str = "CREDLOCK_BENCH_REDIS_PORT";
const PER_HOST_ENV: &str = "CREDLOCK_BENCH_PER_HOST";
const HOSTS_ENV: &str = "CREDLOCK_BENCH_HOSTS";
/// Lines of the agents and control processes start with this: the test harness of a
/// re-executed test binary prints its own lines on the same stdout.
const MARK: &str = "@@ ";
const LATENCY: Duration = Duration::from_millis(2500);
const SESSION_KEY: &str = "control:session";
const LOCK_KEY: &str = "control:lock";

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{var}={v:?}: not a number"))
        })
        .unwrap_or(default)
}

/// This test binary, re-executed to run only this test (in the mode its environment says).
fn this_test() -> Command {
    let mut c = Command::new(std::env::current_exe().expect("test binary"));
    c.args([
        "--exact",
        TEST,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    c
}

/// Sends every line of `out` that answers (a JSON object, after `MARK` if `marked`) or says
/// `ready` to `tx`, tagged with `tag`.
fn forward(
    out: impl std::io::Read + Send + 'static,
    tag: usize,
    marked: bool,
    tx: std::sync::mpsc::Sender<(usize, String)>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let line = if marked {
                // The harness's `test … ... ` has no newline before the test's own output.
                match line.split_once(MARK) {
                    Some((_, l)) => l.to_owned(),
                    None => continue,
                }
            } else {
                line
            };
            if tx.send((tag, line)).is_err() {
                return;
            }
        }
    });
}

fn next_line(rx: &Receiver<(usize, String)>, deadline: Instant, what: &str) -> (usize, String) {
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A host's first process (PID 1 of its namespace): starts its processes, says when they are
/// all up (with its PID and hostname, so the test can check it runs in a namespace of its
/// own), releases them together when told, and passes their answers on.
fn agent(side: &str) {
    let per_host = size(PER_HOST_ENV, 64);
    let store = std::env::var(STORE_ENV).expect("store");
    let (tx, rx) = channel();
    let mut children = Vec::new();
    for i in 0..per_host {
        let mut c = if side == "credlock" {
            crate::common::credlock(Path::new(&store), &["race-child"])
        } else {
            this_test()
        };
        let mut c = c
            .env_remove(AGENT_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a process of the host");
        forward(
            c.stdout.take().expect("stdout"),
            i,
            side != "credlock",
            tx.clone(),
        );
        children.push(Reaped(c));
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ready = 0;
    while ready < per_host {
        ready += usize::from(next_line(&rx, deadline, "the host's processes").1 == "ready");
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    println!(
        "{MARK}{}",
        serde_json::json!({"ready": true, "pid": std::process::id(), "host": hostname.trim()})
    );
    std::io::stdout().flush().expect("stdout");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).expect("the word to go");
    for c in &mut children {
        let stdin = c.0.stdin.as_mut().expect("stdin");
        let _ = stdin.write_all(b"go\n");
        let _ = stdin.flush();
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut answered = 0;
    while answered < per_host {
        let (_, line) = next_line(&rx, deadline, "the host's answers");
        if line.starts_with('{') {
            println!("{MARK}{line}");
            answered += 1;
        }
    }
    std::io::stdout().flush().expect("stdout");
}

/// One instance of the hand-rolled pattern: says `ready`, waits for `go`, gets a token the
/// way the projects above did, and prints how long it took and what it got.
fn control_process(seen: &Path) {
    let port: u16 = std::env::var(REDIS_PORT_ENV)
        .expect("port")
        .parse()
        .expect("a port");
    let last_seen = Session::from_json(&std::fs::read(seen).expect("seen"), seen).expect("json");
    println!("{MARK}ready");
    std::io::stdout().flush().expect("stdout");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).expect("go");
    let started = Instant::now();
    let token = control_token(port, &UreqTransport::new(), &last_seen);
    let answer = match token {
        Some(t) => {
            serde_json::json!({"elapsed_us": started.elapsed().as_micros() as u64, "token": t})
        }
        None => {
            serde_json::json!({"elapsed_us": started.elapsed().as_micros() as u64, "error": "no token"})
        }
    };
    println!("{MARK}{answer}");
    std::io::stdout().flush().expect("stdout");
}

/// The hand-rolled pattern, one call of one instance.
fn control_token(port: u16, transport: &UreqTransport, last_seen: &Session) -> Option<String> {
    let redis = |args: &[&str]| command(port, None, args);
    let read = || -> Option<Session> {
        let json = redis(&["GET", SESSION_KEY]).ok()?;
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
        let _ = redis(&["SET", SESSION_KEY, &json]);
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
    match redis(&["SET", LOCK_KEY, "1", "NX", "PX", "2000"]) {
        Ok(reply) if reply == "OK" => {
            let done = refresh(&session);
            // Released by DEL: whoever holds it now.
            let _ = redis(&["DEL", LOCK_KEY]);
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
                if redis(&["SET", LOCK_KEY, "1", "NX", "PX", "2000"]).is_ok_and(|r| r == "OK") {
                    let current = read().unwrap_or(session.clone());
                    let done = refresh(&current);
                    let _ = redis(&["DEL", LOCK_KEY]);
                    return done;
                }
            }
            refresh(&session)
        }
        Err(_) => refresh(&session),
    }
}

/// What one side did.
#[derive(Debug)]
struct Outcome {
    requests: u64,
    invalid_grant: u64,
    grants_revoked: u64,
    valid: usize,
    answers: usize,
    exits: Vec<i64>,
    p50: Duration,
    p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Starts `hosts` namespaces of `per_host` processes of `side`, releases them all together
/// once every one is up, and counts what the token endpoint saw.
fn race(
    side: &str,
    hosts: usize,
    per_host: usize,
    store: &str,
    port: u16,
    seen: &Path,
    fake: &FakeServer,
) -> Outcome {
    let (tx, rx) = channel();
    let mut agents = Vec::new();
    for h in 0..hosts {
        let mut c = Command::new("unshare");
        // --kill-child: killing `unshare` (as `Reaped` does) kills the namespace's first
        // process, and with it every process of the host.
        c.args([
            "--pid",
            "--fork",
            "--uts",
            "--mount-proc",
            "--kill-child",
            "--",
        ])
        .args(["sh", "-c", "hostname \"$0\" && exec \"$@\""])
        .arg(format!("bench-host-{h}"))
        .arg(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            TEST,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(AGENT_ENV, side)
        .env(STORE_ENV, store)
        .env(REDIS_PORT_ENV, port.to_string())
        .env(CONTROL_ENV, seen)
        .env(PER_HOST_ENV, per_host.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut c = c.spawn().expect("spawn unshare");
        forward(c.stdout.take().expect("stdout"), h, true, tx.clone());
        agents.push(Reaped(c));
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut names = std::collections::BTreeSet::new();
    while names.len() < hosts {
        let (h, line) = next_line(&rx, deadline, "every host to be up");
        let v: serde_json::Value = serde_json::from_str(&line).expect("the agent's ready line");
        assert_eq!(
            v["pid"], 1,
            "host {h} is not a PID namespace of its own: {v}"
        );
        assert_eq!(
            v["host"],
            format!("bench-host-{h}"),
            "host {h}'s hostname: {v}"
        );
        names.insert(h);
    }
    for a in &mut agents {
        let stdin = a.0.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("release the host");
        stdin.flush().expect("flush");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut times, mut valid, mut exits) = (Vec::new(), 0, Vec::new());
    while times.len() < hosts * per_host {
        let (_, line) = next_line(&rx, deadline, "every process's answer");
        let v: serde_json::Value = serde_json::from_str(&line).expect("an answer");
        times.push(Duration::from_micros(
            v["elapsed_us"].as_u64().expect("elapsed"),
        ));
        match v["token"].as_str() {
            Some(t) => valid += usize::from(fake.is_access_token_valid(t)),
            None => exits.push(v["exit"].as_i64().unwrap_or(-1)),
        }
    }
    drop(agents);
    times.sort();
    let c = fake.counters();
    Outcome {
        requests: c.refresh_requests,
        invalid_grant: c.invalid_grant,
        grants_revoked: c.grants_revoked,
        valid,
        answers: times.len(),
        exits,
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
    }
}

fn row(name: &str, o: &Outcome) -> String {
    let mut exits = o.exits.clone();
    exits.dedup();
    let failed = match exits.as_slice() {
        [] => "0".to_owned(),
        [-1] => format!("{} (no token)", o.exits.len()),
        [code] => format!("{} (exit {code})", o.exits.len()),
        _ => format!("{} (exits {:?})", o.exits.len(), exits),
    };
    format!(
        "| {name} | {} | {} | {} | {} / {} | {failed} | {:.2} s | {:.2} s |",
        o.requests,
        o.invalid_grant,
        o.grants_revoked,
        o.valid,
        o.answers,
        o.p50.as_secs_f64(),
        o.p99.as_secs_f64()
    )
}

fn fake() -> (Arc<FakeServer>, HttpServer, Session) {
    let fake = FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .latency(LATENCY)
        .build();
    let http = HttpServer::start(fake.clone()).expect("token server");
    let seeded = fake
        .seed_session(&http.token_endpoint())
        .expect("seed")
        .with_expires_at(SystemTime::now());
    (fake, http, seeded)
}

/// The table: per side, refresh requests, `invalid_grant`s, grants killed, processes that
/// hold a token the server still accepts once all are done, processes without a token,
/// p50/p99 time to a token (or an error), with Redis up and with Redis down. credlock sends
/// one refresh and keeps the grant; with Redis down it sends nothing and exits 4.
#[test]
#[ignore = "a benchmark (about 20 s, 4 namespaces × 64 processes per side); .ci/run runs it with the ignored suites"]
fn credlock_on_simulated_hosts_against_the_hand_rolled_redis_lock_side_by_side() {
    if let Ok(side) = std::env::var(AGENT_ENV) {
        return agent(&side);
    }
    if let Some(seen) = std::env::var_os(CONTROL_ENV) {
        return control_process(Path::new(&seen));
    }
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--uts", "--mount-proc", "true"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "simulated hosts need PID and UTS namespaces: `unshare --pid --fork --uts \
             --mount-proc true` failed (run as root, or where user namespaces are allowed): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("simulated hosts need `unshare` (util-linux): {e}"),
    }
    let (hosts, per_host) = (size(HOSTS_ENV, 4), size(PER_HOST_ENV, 64));
    let n = hosts * per_host;
    let mut redis = RedisServer::start(None);
    let port = redis.port;
    let dir = tempfile::tempdir().expect("tempdir");
    let seen = dir.path().join("seen.json");
    let mut rows = Vec::new();
    let control_seed = |redis: Option<&RedisServer>, session: &Session| {
        std::fs::write(&seen, session.to_json()).expect("seen");
        if let Some(redis) = redis {
            let json = String::from_utf8(session.to_json()).expect("utf-8");
            assert_eq!(redis.cmd(&["SET", SESSION_KEY, &json]), "OK");
            redis.cmd(&["DEL", LOCK_KEY]);
        }
    };

    let (fake_c, _http_c, seeded) = fake();
    let url = redis.url("bench-up");
    Store::redis(&url)
        .expect("url")
        .save(&seeded)
        .expect("save");
    control_seed(None, &seeded);
    let credlock_up = race("credlock", hosts, per_host, &url, port, &seen, &fake_c);
    rows.push(row("credlock, Redis up", &credlock_up));

    let (fake_h, _http_h, seeded) = fake();
    control_seed(Some(&redis), &seeded);
    let control_up = race("control", hosts, per_host, &url, port, &seen, &fake_h);
    rows.push(row("hand-rolled lock, Redis up", &control_up));

    let (fake_cd, _http_cd, seeded) = fake();
    let url_down = redis.url("bench-down");
    Store::redis(&url_down)
        .expect("url")
        .save(&seeded)
        .expect("save");
    control_seed(None, &seeded);
    redis.stop();
    let credlock_down = race(
        "credlock", hosts, per_host, &url_down, port, &seen, &fake_cd,
    );
    rows.push(row("credlock, Redis down", &credlock_down));

    let (fake_hd, _http_hd, seeded) = fake();
    control_seed(None, &seeded);
    let control_down = race("control", hosts, per_host, &url_down, port, &seen, &fake_hd);
    rows.push(row("hand-rolled lock, Redis down", &control_down));

    eprintln!(
        "{hosts} hosts (PID + UTS namespaces) × {per_host} processes, token endpoint \
         {LATENCY:?}, grant revoked on reuse\n\
         | side | refresh requests | invalid_grant | grants killed | processes with a valid token | without a token | p50 | p99 |\n\
         |---|---|---|---|---|---|---|---|\n{}",
        rows.join("\n")
    );

    // credlock: one request, the grant alive, every process served; with Redis down, nothing
    // sent and every process exits 4.
    assert_eq!(
        (
            credlock_up.requests,
            credlock_up.invalid_grant,
            credlock_up.grants_revoked
        ),
        (1, 0, 0),
        "{credlock_up:?}"
    );
    assert_eq!(credlock_up.valid, n, "{credlock_up:?}");
    assert_eq!(credlock_down.requests, 0, "{credlock_down:?}");
    assert_eq!(credlock_down.exits, vec![4; n], "{credlock_down:?}");
    // The control: its 2 s lock runs out under a 2.5 s endpoint, a second instance re-sends
    // the rotated refresh token, and the grant dies; with Redis down, every instance sends.
    assert!(control_up.requests > 1, "{control_up:?}");
    assert!(control_up.grants_revoked >= 1, "{control_up:?}");
    assert_eq!(control_down.requests, n as u64, "{control_down:?}");
    assert!(control_down.grants_revoked >= 1, "{control_down:?}");
}
