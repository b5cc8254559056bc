//! `credlock race`: many processes, one expiring session, an embedded token server.
//!
//! The parent starts a [`FakeServer`] over real HTTP on 127.0.0.1, seeds a store with an
//! expired session, and spawns child processes of this same binary (`race-child`). Each child
//! starts, says `ready`, waits for `go` on stdin, then times `Store::access_token()` and prints
//! one JSON line. The parent releases all children at once, collects the lines, and asks the
//! server what it saw.

mod table;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use credlock::{LockMode, Store};
use credlock_test::{FakeServer, HttpServer, ReusePolicy};
use serde_json::json;

use crate::{Failure, Global, Outcome};

/// Arguments of `credlock race`.
#[derive(Debug, Clone, clap::Args)]
pub struct RaceArgs {
    /// How many processes race for the token.
    #[arg(long, default_value_t = 16)]
    pub processes: usize,
    /// The server's answer to a reused refresh token: revoke-grant, reject-only or grace:MS.
    #[arg(long, default_value = "revoke-grant")]
    pub server: ReusePolicy,
    /// Delay of every server response, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// How many times the session expires (a soak).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Run `--lock auto` and `--lock off` side by side.
    #[arg(long)]
    pub compare: bool,
}

/// What one race measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub processes: usize,
    pub lock_mode: LockMode,
    pub server_policy: String,
    pub rounds: usize,
    pub refresh_requests: u64,
    pub invalid_grant_responses: u64,
    pub processes_ok: usize,
    pub processes_failed: usize,
    pub distinct_access_tokens: usize,
    pub session_alive: bool,
    pub store_parses: bool,
    pub wall_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub first_error: Option<String>,
}

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "processes": self.processes,
            "lock_mode": self.lock_mode.name(),
            "server_policy": self.server_policy,
            "rounds": self.rounds,
            "refresh_requests": self.refresh_requests,
            "invalid_grant_responses": self.invalid_grant_responses,
            "processes_ok": self.processes_ok,
            "processes_failed": self.processes_failed,
            "distinct_access_tokens": self.distinct_access_tokens,
            "session_alive": self.session_alive,
            "store_parses": self.store_parses,
            "wall_ms": round2(self.wall_ms),
            "p50_ms": round2(self.p50_ms),
            "p99_ms": round2(self.p99_ms),
        })
    }

    /// What a working lock guarantees: one refresh per round, no invalid_grant, every process
    /// served, the same token for all in a round, the session alive and parseable.
    pub fn meets_the_lock_guarantee(&self) -> bool {
        self.refresh_requests == self.rounds as u64
            && self.invalid_grant_responses == 0
            && self.processes_failed == 0
            && self.distinct_access_tokens == self.rounds
            && self.session_alive
            && self.store_parses
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `credlock race`
pub fn run(g: &Global, args: &RaceArgs) -> Outcome {
    if args.processes == 0 || args.rounds == 0 {
        return Err(Failure::Usage(
            "--processes and --rounds must be at least 1".into(),
        ));
    }
    let modes = if args.compare {
        vec![LockMode::Auto, LockMode::Off]
    } else {
        vec![g.lock]
    };
    let mut reports = Vec::new();
    for mode in modes {
        reports.push(race(args, mode).map_err(Failure::Other)?);
    }
    if g.json {
        if reports.len() == 1 {
            outln!("{}", reports[0].to_json())?;
        } else {
            outln!(
                "{}",
                serde_json::Value::Array(reports.iter().map(Report::to_json).collect())
            )?;
        }
    } else {
        table::print_table(args, &reports)?;
    }
    let broken = reports
        .iter()
        .any(|r| r.lock_mode != LockMode::Off && !r.meets_the_lock_guarantee());
    Ok(u8::from(broken))
}

/// Kills the child on drop, so an early return leaves no process behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const STARTUP_LIMIT: Duration = Duration::from_secs(60);
const ROUND_LIMIT: Duration = Duration::from_secs(120);

/// Runs one race in lock mode `mode`; returns the report.
pub fn race(args: &RaceArgs, mode: LockMode) -> Result<Report, String> {
    let fake = FakeServer::builder()
        .policy(args.server)
        .latency(Duration::from_millis(args.latency_ms))
        .build();
    let http = HttpServer::start(fake.clone())
        .map_err(|e| format!("could not start the token server: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("could not create a temp directory: {e}"))?;
    let path = dir.path().join("session.json");
    let admin = Store::new(&path);
    let seeded = fake
        .seed_session(&http.token_endpoint())
        .map_err(|e| e.to_string())?;
    admin
        .save(&seeded.with_expires_at(SystemTime::now() - Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;

    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let mut times = Vec::new();
    let (mut ok, mut failed, mut distinct) = (0, 0, 0);
    let mut first_error = None;
    let mut wall = Duration::ZERO;
    for round in 0..args.rounds {
        if round > 0 {
            // The next expiry: the stored session (whoever wrote it) becomes stale.
            if let Ok(Some(s)) = admin.load() {
                admin
                    .save(&s.with_expires_at(SystemTime::now() - Duration::from_secs(1)))
                    .map_err(|e| e.to_string())?;
            }
        }
        let results = run_round(&exe, &path, mode, args.processes)?;
        wall += results.wall;
        let mut tokens = HashSet::new();
        for r in results.lines {
            times.push(r.elapsed_ms);
            match r.token {
                // A process succeeded if the token it got is still accepted by the server at
                // the end of the round: a token adopted from a grant that a duplicate refresh
                // then revoked is worth nothing.
                Some(t) if fake.is_access_token_valid(&t) => {
                    ok += 1;
                    tokens.insert(t);
                }
                Some(t) => {
                    failed += 1;
                    tokens.insert(t);
                    if first_error.is_none() {
                        first_error = Some("got a token that the server has since revoked".into());
                    }
                }
                None => {
                    failed += 1;
                    if first_error.is_none() {
                        first_error = r.error;
                    }
                }
            }
        }
        distinct += tokens.len();
    }
    let counters = fake.counters();
    let stored = admin.load();
    let store_parses = stored.is_ok();
    let session_alive = matches!(&stored, Ok(Some(s)) if fake.is_live(s.refresh_token().secret()));
    times.sort_by(f64::total_cmp);
    Ok(Report {
        processes: args.processes,
        lock_mode: mode,
        server_policy: args.server.name(),
        rounds: args.rounds,
        refresh_requests: counters.refresh_requests,
        invalid_grant_responses: counters.invalid_grant,
        processes_ok: ok,
        processes_failed: failed,
        distinct_access_tokens: distinct,
        session_alive,
        store_parses,
        wall_ms: wall.as_secs_f64() * 1000.0,
        p50_ms: percentile(&times, 0.50),
        p99_ms: percentile(&times, 0.99),
        first_error,
    })
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct ChildResult {
    elapsed_ms: f64,
    token: Option<String>,
    error: Option<String>,
}

struct RoundResults {
    wall: Duration,
    lines: Vec<ChildResult>,
}

fn run_round(exe: &Path, store: &Path, mode: LockMode, n: usize) -> Result<RoundResults, String> {
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        let mut child = Reaped(
            Command::new(exe)
                .arg("--store")
                .arg(store)
                .args(["--lock", mode.name(), "race-child"])
                .env_remove("CREDLOCK_STORE")
                .env_remove("CREDLOCK_LOCK")
                .env_remove("CREDLOCK_MARGIN")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("could not start a child process: {e}"))?,
        );
        let stdout = child.0.stdout.take().ok_or("no stdout")?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((i, line)).is_err() {
                    break;
                }
            }
        });
        children.push(child);
    }
    drop(tx);
    let ready_deadline = Instant::now() + STARTUP_LIMIT;
    let mut ready = 0;
    while ready < n {
        let left = ready_deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, line)) if line == "ready" => ready += 1,
            Ok(_) => {}
            Err(_) => {
                return Err(format!(
                    "only {ready} of {n} children started within {STARTUP_LIMIT:?}"
                ));
            }
        }
    }
    let start = Instant::now();
    for child in &mut children {
        if let Some(stdin) = child.0.stdin.as_mut() {
            let _ = stdin.write_all(b"go\n");
            let _ = stdin.flush();
        }
    }
    let mut lines = Vec::with_capacity(n);
    let deadline = Instant::now() + ROUND_LIMIT;
    while lines.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, line) = rx.recv_timeout(left).map_err(|_| {
            format!(
                "only {} of {n} children answered within {ROUND_LIMIT:?}",
                lines.len()
            )
        })?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        lines.push(ChildResult {
            elapsed_ms: v["elapsed_us"].as_f64().unwrap_or(0.0) / 1000.0,
            token: v["token"].as_str().map(str::to_owned),
            error: v["error"].as_str().map(str::to_owned),
        });
    }
    let wall = start.elapsed();
    for mut child in children {
        let _ = child.0.wait();
    }
    Ok(RoundResults { wall, lines })
}

/// `credlock race-child`: one racer. Prints `ready`, waits for a line on stdin, asks for a
/// token, prints `{"elapsed_us", "token_fingerprint" | "error", "exit"}`.
pub fn child(g: &Global) -> Outcome {
    let store = match &g.server {
        Some(server) => server.store(),
        None => Store::new(&g.store),
    }
    .with_lock_mode(g.lock)
    .with_margin(g.margin);
    outln!("ready")?;
    std::io::stdout()
        .flush()
        .map_err(|e| Failure::Other(e.to_string()))?;
    let mut go = String::new();
    std::io::stdin()
        .read_line(&mut go)
        .map_err(|e| Failure::Other(e.to_string()))?;
    let start = Instant::now();
    let result = store.access_token();
    let elapsed_us = start.elapsed().as_micros();
    let line = match &result {
        // The token goes to the parent over a pipe, never to a terminal: the parent checks
        // with its embedded server that the token it handed out is still accepted.
        Ok(t) => json!({"elapsed_us": elapsed_us, "token": t.secret(), "refreshed": t.refreshed()}),
        Err(e) => {
            json!({"elapsed_us": elapsed_us, "error": e.with_causes(), "exit": crate::exit_code_for(e)})
        }
    };
    outln!("{line}")?;
    Ok(match result {
        Ok(_) => 0,
        Err(e) => crate::exit_code_for(&e),
    })
}
