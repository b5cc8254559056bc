//! A test bed: a temp directory, a manual clock, a fake server, and stores wired to them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use credlock::testing::{FakeServer, FakeTransport, ManualClock, ReusePolicy};
use credlock::{Session, Store};

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
