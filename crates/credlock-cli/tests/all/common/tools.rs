//! What the tests of the tool integrations share: a session on a loopback token server, the
//! HTTPS stub of the server a real client talks to, and real clients that must be installed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use credlock::{Session, Store};
use credlock_test::{FakeServer, HttpServer};

use crate::common::Reaped;

/// A token server on loopback HTTP and a session file on it.
pub struct Backend {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub fake: Arc<FakeServer>,
    /// Serves the token endpoint until dropped.
    _http: HttpServer,
    pub session: Session,
}

impl Backend {
    /// A fresh session (valid for an hour).
    pub fn fresh() -> Backend {
        Backend::seeded(false)
    }

    /// A session whose access token has just expired.
    pub fn expired() -> Backend {
        Backend::seeded(true)
    }

    /// An expired session on a token server that takes `latency` to answer, so that callers
    /// arriving one after another still meet during the refresh.
    pub fn expired_slow(latency: Duration) -> Backend {
        Backend::with_server(FakeServer::builder().latency(latency).build(), true)
    }

    fn seeded(expired: bool) -> Backend {
        Backend::with_server(FakeServer::builder().build(), expired)
    }

    fn with_server(fake: Arc<FakeServer>, expired: bool) -> Backend {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("session.json");
        let (http, session) = seed_on(&fake, &store, expired);
        Backend {
            dir,
            store,
            fake,
            _http: http,
            session,
        }
    }

    pub fn access_token(&self) -> String {
        self.session.access_token().secret().to_owned()
    }

    /// The access token the store holds now.
    pub fn stored_token(&self) -> String {
        stored_token(&self.store)
    }

    pub fn refreshes(&self) -> u64 {
        self.fake.counters().refresh_requests
    }
}

/// Starts a token server and saves a session on it at `store`.
pub fn seed_at(store: &Path, expired: bool) -> (Arc<FakeServer>, HttpServer, Session) {
    let fake = FakeServer::builder().build();
    let (http, session) = seed_on(&fake, store, expired);
    (fake, http, session)
}

fn seed_on(fake: &Arc<FakeServer>, store: &Path, expired: bool) -> (HttpServer, Session) {
    let http = HttpServer::start(Arc::clone(fake)).expect("token server");
    let mut session = fake
        .seed_session(&http.token_endpoint())
        .expect("seed session");
    if expired {
        session = session.with_expires_at(SystemTime::now());
    }
    Store::new(store).save(&session).expect("save session");
    (http, session)
}

pub fn stored_token(store: &Path) -> String {
    Store::new(store)
        .load()
        .expect("load")
        .expect("a session")
        .access_token()
        .secret()
        .to_owned()
}

/// Panics with the install command when a real client this test needs is missing: a test
/// that skips would hide a CI machine without it.
pub fn require(tool: &str, apt_package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "prerequisite missing: `{tool}` is not on PATH (install it: apt-get install -y {apt_package})"
    );
}

/// A throwaway self-signed certificate for 127.0.0.1: (certificate, key).
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    require("openssl", "openssl");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl could not make a certificate");
    (cert, key)
}

/// The stub server (`tests/e2e/stub_server.py`), killed by PID when dropped.
pub struct Stub {
    pub port: u16,
    /// Every token presented, one per line.
    pub log: PathBuf,
    /// Tokens the stub refuses with 401, one per line.
    pub reject: PathBuf,
    _child: Reaped,
}

impl Stub {
    /// Starts the stub in `mode` (`bearer`, `git`, `registry`) over HTTPS when `tls`.
    pub fn start(dir: &Path, mode: &str, tls: bool, repo: Option<&Path>) -> Stub {
        require("python3", "python3");
        let log = dir.join(format!("{mode}-tokens.log"));
        let reject = dir.join(format!("{mode}-reject.txt"));
        let mut cmd = Command::new("python3");
        cmd.arg(crate::common::repo_root().join("tests/e2e/stub_server.py"))
            .args(["--mode", mode, "--lifetime", "240"])
            .arg("--log")
            .arg(&log)
            .arg("--reject-file")
            .arg(&reject);
        if tls {
            let (cert, key) = self_signed_cert(dir);
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some(repo) = repo {
            cmd.arg("--repo").arg(repo);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the stub server");
        let stdout = child.stdout.take().expect("stdout");
        let child = Reaped(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the stub server prints its port");
        let port = line.trim().parse().expect("a port number");
        Stub {
            port,
            log,
            reject,
            _child: child,
        }
    }

    /// The tokens presented so far, in order.
    pub fn tokens(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Makes the stub refuse `token` from now on.
    pub fn refuse(&self, token: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.reject)
            .expect("reject file");
        writeln!(f, "{token}").expect("write reject file");
    }
}

/// Runs every command at the same time and returns their outputs, killing any that takes
/// longer than `limit`.
pub fn run_together(cmds: Vec<Command>, limit: Duration) -> Vec<std::process::Output> {
    let children: Vec<_> = cmds
        .into_iter()
        .map(|mut c| {
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let waiters: Vec<_> = children
        .into_iter()
        .map(|c| std::thread::spawn(move || crate::common::finish(c, limit)))
        .collect();
    waiters
        .into_iter()
        .map(|w| w.join().expect("a waiter panicked"))
        .collect()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
