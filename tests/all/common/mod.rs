//! What the integration tests of both suites share, in one place: a test bed (a temp
//! directory, a manual clock, a fake server, and stores wired to them) and the helpers that
//! run processes with a hard timeout. The library's suite (`tests/all/`) mounts it as
//! `common`; the CLI's (`crates/credlock-cli/tests/all/`) includes this file by path and adds
//! what runs the binaries (`credlock`, `released_together`), node-oidc-provider (`idp`) and the
//! tools' stubs (`tools`).

// Each suite uses its own part of what is shared.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use credlock::internal::LeaseRecord;

pub mod tls;
// The harness needs no credlock feature: both suites' Redis tests use it.
#[cfg(unix)]
pub mod redis;
use credlock::{ClientAuth, Secret, Session, Store};
use credlock_test::{FakeServer, FakeTransport, ManualClock, ReusePolicy};

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

/// The endpoint the fake transport routes revocation requests to.
pub const REVOCATION_ENDPOINT: &str = "http://127.0.0.1:9/revoke";

/// Seeds a session whose client names a revocation endpoint, and saves it.
pub fn seed_revocable(bed: &Bed) -> Session {
    let response = bed.server.seed();
    let client = credlock::Client::new(
        TOKEN_ENDPOINT,
        credlock_test::TEST_CLIENT_ID,
        credlock::ClientAuth::None,
    )
    .and_then(|c| c.with_revocation_endpoint(REVOCATION_ENDPOINT))
    .expect("client");
    let session = Session::from_token_response(client, response, credlock::Clock::now(&*bed.clock))
        .expect("session");
    bed.store().save(&session).expect("save");
    session
}

/// The sidecar lock file of the session at `path`.
pub fn lock_path(path: &std::path::Path) -> PathBuf {
    Store::new(path).lock_path().to_path_buf()
}

/// The lease file of the session at `path`.
pub fn lease_path(path: &std::path::Path) -> PathBuf {
    Store::new(path).lease_path().to_path_buf()
}

/// Whether `needle` occurs in `haystack`, byte for byte.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The repository's top directory (the library's package), from either suite.
pub fn repo_root() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("tests/e2e").is_dir())
        .expect("the repository's top directory")
}

/// Milliseconds since the Unix epoch, as a lease record counts them.
pub fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}

/// A lease record from its JSON.
pub fn record(v: serde_json::Value) -> LeaseRecord {
    LeaseRecord::from_json(v.to_string().as_bytes()).expect("a lease record")
}

/// A lease record of a process on another machine (no machine id: only its TTL breaks it).
pub fn remote_record(nonce: &str, ttl_ms: u64) -> LeaseRecord {
    record(serde_json::json!({
        "host": "some-other-machine",
        "pid": 4242,
        "created_ms": now_ms(),
        "ttl_ms": ttl_ms,
        "nonce": nonce,
    }))
}

/// Invariant 7 (a URL with user information is shown through one redaction): a session file
/// whose endpoint carries user information (written by a credlock from before endpoints were
/// validated, or by hand). `display_url` treats that as a password and hides it in errors;
/// `Session`'s `Debug` (derived `Client` Debug; also in `NotSaved`'s Debug) and
/// `credlock status` must hide it too.
pub fn session_with_password_in_endpoint(bed: &Bed) -> (Vec<u8>, &'static str) {
    const PASSWORD: &str = "hunter2-endpoint-pw";
    let session = bed.server.seed_session(TOKEN_ENDPOINT).expect("seed");
    let json = String::from_utf8(session.to_json()).expect("utf8").replace(
        TOKEN_ENDPOINT,
        "https://me:hunter2-endpoint-pw@auth.example.com/token",
    );
    (json.into_bytes(), PASSWORD)
}

/// The `///` blocks in `text` that document a test: each block's lines (without the `///`
/// and one space) when the block ends at a `#[test]` function, attributes such as
/// `#[ignore]` or `#[cfg(…)]` between allowed. A marker elsewhere (above a constant, a helper,
/// inside a body) is in no block. For the meta-tests that hold documentation tables to tests.
pub fn test_doc_blocks(text: &str) -> Vec<Vec<&str>> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].starts_with("///") {
            i += 1;
            continue;
        }
        let mut block = Vec::new();
        while i < lines.len() && lines[i].starts_with("///") {
            let doc = lines[i].trim_start_matches("///");
            block.push(doc.strip_prefix(' ').unwrap_or(doc));
            i += 1;
        }
        // Attributes, each possibly over several lines (brackets balanced).
        let mut is_test = false;
        while i < lines.len() && lines[i].starts_with("#[") {
            let mut attribute = String::new();
            let mut depth = 0i32;
            loop {
                let line = lines[i];
                attribute.push_str(line);
                depth += line.matches('[').count() as i32 - line.matches(']').count() as i32;
                i += 1;
                if depth <= 0 || i == lines.len() {
                    break;
                }
            }
            is_test |= attribute == "#[test]" || attribute.starts_with("#[tokio::test");
        }
        let is_fn = lines
            .get(i)
            .is_some_and(|l| l.starts_with("fn ") || l.starts_with("async fn "));
        if is_test && is_fn {
            blocks.push(block);
        }
    }
    blocks
}

/// Whether `file` is compiled into its crate: a crate root (`main.rs`, `lib.rs`), or a file
/// whose parent module (`mod.rs`, `main.rs`, `lib.rs` beside it, or `dir.rs` above it)
/// declares it with `mod NAME;` and is compiled itself. A file nothing declares (a scratch
/// file left in `tests/all/`) holds no test, whatever its text says.
pub fn is_compiled(file: &std::path::Path) -> bool {
    let Some(stem) = file.file_stem().and_then(|s| s.to_str()) else {
        return false;
    };
    if stem == "main" || stem == "lib" {
        return true;
    }
    let Some(dir) = file.parent() else {
        return false;
    };
    let (name, parent_dir) = if stem == "mod" {
        match (dir.file_name().and_then(|n| n.to_str()), dir.parent()) {
            (Some(name), Some(parent)) => (name, parent),
            _ => return false,
        }
    } else {
        (stem, dir)
    };
    let declaration = format!("mod {name};");
    let mut candidates = vec![
        parent_dir.join("mod.rs"),
        parent_dir.join("main.rs"),
        parent_dir.join("lib.rs"),
    ];
    if let (Some(up), Some(dir_name)) = (parent_dir.parent(), parent_dir.file_name()) {
        candidates.push(up.join(dir_name).with_extension("rs"));
    }
    candidates.into_iter().any(|parent| {
        parent != file
            && std::fs::read_to_string(&parent).is_ok_and(|text| {
                text.lines().any(|l| {
                    let l = l.trim();
                    let l = l
                        .strip_prefix("pub(crate) ")
                        .or_else(|| l.strip_prefix("pub "))
                        .unwrap_or(l);
                    l == declaration
                })
            })
            && is_compiled(&parent)
    })
}
