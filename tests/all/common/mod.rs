//! What the integration tests share, in one place: here a test bed (a temp directory, a
//! manual clock, a fake server, and stores wired to them) and the helpers that run
//! processes with a hard timeout; in `idp`, node-oidc-provider, a scripted browser and the
//! loopback stub of the login tests; in `tools`, the token server, HTTPS stubs and real
//! clients of the tool integration tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use credlock::testing::{FakeServer, FakeTransport, ManualClock, ReusePolicy};
use credlock::{ClientAuth, Secret, Session, Store};

#[cfg(all(unix, feature = "cli"))]
pub mod idp;
#[cfg(all(unix, feature = "redis"))]
pub mod redis;
#[cfg(all(unix, feature = "cli"))]
pub mod tools;

pub const TOKEN_ENDPOINT: &str = "http://127.0.0.1:9/token";

pub struct Bed {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub clock: Arc<ManualClock>,
    pub server: Arc<FakeServer>,
}

impl Bed {
    pub fn new(policy: ReusePolicy) -> Bed {
        Bed::with_latency(policy, Duration::ZERO)
    }

    pub fn with_latency(policy: ReusePolicy, latency: Duration) -> Bed {
        let clock = ManualClock::starting_now();
        let server = FakeServer::builder()
            .policy(policy)
            .latency(latency)
            .clock(clock.clone())
            .build();
        Bed::from_parts(clock, server)
    }

    /// A bed whose grant-revoking server requires `secret` (HTTP Basic), so that there is a
    /// client secret to leak.
    pub fn with_client_secret(secret: &str) -> Bed {
        let clock = ManualClock::starting_now();
        let server = FakeServer::builder()
            .policy(ReusePolicy::RevokeGrant)
            .client_auth(ClientAuth::Basic {
                secret: Secret::new(secret),
            })
            .clock(clock.clone())
            .build();
        Bed::from_parts(clock, server)
    }

    pub fn from_parts(clock: Arc<ManualClock>, server: Arc<FakeServer>) -> Bed {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.json");
        Bed {
            dir,
            path,
            clock,
            server,
        }
    }

    /// A store on the bed's file, clock and server.
    pub fn store(&self) -> Store {
        Store::new(&self.path)
            .with_clock(self.clock.clone())
            .with_transport(Arc::new(FakeTransport::new(self.server.clone())))
    }

    /// Seeds a session on the server and saves it.
    pub fn seed(&self) -> Session {
        let session = self.server.seed_session(TOKEN_ENDPOINT).expect("seed");
        self.store().save(&session).expect("save");
        session
    }

    /// Seeds a session and lets its access token expire.
    pub fn seed_expired(&self) -> Session {
        let session = self.seed();
        self.clock.advance(Duration::from_secs(3600));
        session
    }

    pub fn stored(&self) -> Option<Session> {
        self.store().load().expect("load")
    }

    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).expect("read")
    }

    /// Names of files in the directory other than the session and its lock file.
    pub fn stray_files(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n != "session.json" && n != "session.json.lock")
            .collect()
    }
}

/// Runs `f` on a thread and fails the test if it does not finish within `limit`, so a
/// deadlock fails instead of stalling CI.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("timed out after {limit:?}"))
}

/// The `credlock` binary on `store`, with credlock's own environment variables cleared so the
/// caller's shell cannot change what a test sees.
#[cfg(feature = "cli")]
pub fn credlock(store: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_credlock"));
    c.arg("--store").arg(store).args(args);
    for var in [
        "CREDLOCK_STORE",
        "CREDLOCK_LOCK",
        "CREDLOCK_MARGIN",
        "CREDLOCK_FS_KIND",
    ] {
        c.env_remove(var);
    }
    c
}

/// A child process killed (by PID) when dropped, so a failing test leaves none behind.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Collects `child`'s output, killing it and failing the test after `limit`.
pub fn finish(child: std::process::Child, limit: Duration) -> std::process::Output {
    let pid = child.id();
    within_or_kill(limit, pid, move || {
        child.wait_with_output().expect("output")
    })
}

/// Runs `cmd` with `stdin` as its standard input and collects its output, failing the test
/// after two minutes.
pub fn run_with_stdin(mut cmd: std::process::Command, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    finish(child, Duration::from_secs(120))
}

fn within_or_kill<T: Send + 'static>(
    limit: Duration,
    pid: u32,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        panic!("process {pid} hung for {limit:?} and was killed");
    })
}

#[cfg(unix)]
/// Re-runs the ignored test `name` of this binary inside `wrapper` (`unshare …`, `setpriv …`)
/// with `marker` set in its environment. Returns `true` when already inside: the caller then
/// runs the test's body; `false` after the inner run passed.
pub fn rerun_inside(wrapper: &[&str], name: &str, marker: &str) -> bool {
    if std::env::var_os(marker).is_some() {
        return true;
    }
    let child = std::process::Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(marker, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("prerequisite missing: cannot run {} ({e})", wrapper[0]));
    let out = finish(child, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} failed inside {}:\n{stdout}\n{stderr}",
        wrapper[0]
    );
    false
}

/// `n` threads, each with the store `make` returns, ask for a token at the same instant.
pub fn tokens_from_threads(
    n: usize,
    make: impl Fn() -> credlock::Store + Send + Sync + 'static,
) -> Vec<Result<String, credlock::Error>> {
    let make = std::sync::Arc::new(make);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (make, barrier) = (
                std::sync::Arc::clone(&make),
                std::sync::Arc::clone(&barrier),
            );
            std::thread::spawn(move || {
                let store = make();
                barrier.wait();
                store.access_token().map(|t| t.secret().to_owned())
            })
        })
        .collect();
    within(Duration::from_secs(60), move || {
        handles
            .into_iter()
            .map(|h| h.join().expect("a thread panicked"))
            .collect()
    })
}

/// Starts one `credlock race-child` per `(store, lock mode)`, waits until all are up, then
/// releases them at the same instant; returns each one's JSON answer (`token` or `error`).
/// This is how tests make processes really meet, which spawning them one by one does not.
#[cfg(feature = "cli")]
pub fn released_together(racers: &[(&std::path::Path, &str)]) -> Vec<serde_json::Value> {
    use std::io::{BufRead, Write};
    let (tx, rx) = std::sync::mpsc::channel();
    let mut children = Vec::new();
    for (store, lock) in racers {
        let mut c = credlock(store, &["--lock", lock, "race-child"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn credlock race-child");
        let stdout = c.stdout.take().expect("stdout");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        children.push(Reaped(c));
    }
    drop(tx);
    let mut ready = 0;
    while ready < children.len() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the racers start");
        ready += usize::from(line == "ready");
    }
    for c in &mut children {
        let stdin = c.0.stdin.as_mut().expect("stdin");
        let _ = stdin.write_all(b"go\n");
        let _ = stdin.flush();
    }
    (0..children.len())
        .map(|_| {
            let line = rx
                .recv_timeout(Duration::from_secs(90))
                .expect("the racers answer");
            serde_json::from_str(&line).expect("a JSON line")
        })
        .collect()
}

/// Sixteen threads, each with its own store handle in `mode`, ask for a token on one expired
/// session at the same instant (server latency 20 ms, grant revoked on reuse). Returns the bed
/// and the tokens they got.
pub fn sixteen_threads_on_an_expired_session(
    mode: credlock::LockMode,
) -> (std::sync::Arc<Bed>, Vec<String>) {
    let bed = std::sync::Arc::new(Bed::with_latency(
        ReusePolicy::RevokeGrant,
        Duration::from_millis(20),
    ));
    bed.seed_expired();
    let tokens = {
        let bed = std::sync::Arc::clone(&bed);
        tokens_from_threads(16, move || bed.store().with_lock_mode(mode))
    }
    .into_iter()
    .map(|t| t.expect("every thread gets a token"))
    .collect();
    (bed, tokens)
}

/// Starts `tests/e2e/oidc-server` (node-oidc-provider) on a free loopback port with `extra`
/// arguments, and returns the child (the caller kills it by PID on drop) and its ready line.
/// Fails loudly when node or `npm ci` is missing.
#[cfg(feature = "cli")]
pub fn start_oidc_server(extra: &[&str]) -> (std::process::Child, serde_json::Value) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/oidc-server");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "prerequisite missing: run `npm ci` in {} (Node.js 20.18+ needed)",
        dir.display()
    );
    let mut child = Command::new("node")
        .arg("server.js")
        .args(["--port", "0"])
        .args(extra)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("prerequisite missing: cannot run `node` ({e})"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the oidc server printed no ready line within 30 s");
        }
    };
    let ready = serde_json::from_str(&line).unwrap_or_else(|e| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("bad ready line {line:?}: {e}")
    });
    (child, ready)
}

/// The endpoint the fake transport routes revocation requests to.
pub const REVOCATION_ENDPOINT: &str = "http://127.0.0.1:9/revoke";

/// Seeds a session whose client names a revocation endpoint, and saves it.
pub fn seed_revocable(bed: &Bed) -> Session {
    let response = bed.server.seed();
    let client = credlock::Client::new(
        TOKEN_ENDPOINT,
        credlock::testing::TEST_CLIENT_ID,
        credlock::ClientAuth::None,
    )
    .and_then(|c| c.with_revocation_endpoint(REVOCATION_ENDPOINT))
    .expect("client");
    let session = Session::from_token_response(client, response, credlock::Clock::now(&*bed.clock))
        .expect("session");
    bed.store().save(&session).expect("save");
    session
}
