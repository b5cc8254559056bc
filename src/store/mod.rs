//! The store and its protocol: one session file (or one session on a Redis server), lock-free
//! reads, guarded writes, the refresh protocol, and what a store is configured with.
//!
//! Layer 7 of 7, the top, in the order `api/module-graph` checks: it may import every layer.
//!
//! - `mod.rs`: the [`Store`], its settings and its reads, and where it keeps its session
//!   (`Backend`: a file, or a Redis server);
//! - `backend.rs`: the storage seam, what the protocol asks of the file or the server;
//! - `fleet.rs`: sessions on Redis, `Store::redis` and `Fleet` (feature `redis`);
//! - `refresh.rs`: the refresh protocol, top to bottom;
//! - `guards.rs`: taking the guards the [`LockPlan`] calls for;
//! - `lock_plan.rs`: which guards protect a refresh, from the lock mode and the filesystem;
//! - `options.rs`: the settings and their defaults;
//! - `fallback.rs`: after `invalid_grant`, a sibling's newer session, and compare-and-delete;
//! - `login.rs`: a login run under the store's guards;
//! - `logout.rs`: save, delete, logout and revocation;
//! - `protect.rs`: turning protection at rest on and off;
//! - `import.rs`: a session from a token response, saved in one call;
//! - `access_token.rs`: the token a store hands out;
//! - `async_store.rs`: the store for async programs (feature `tokio`);
//! - `location.rs`: where a session lives by default.

pub(crate) mod access_token;
#[cfg(feature = "tokio")]
pub(crate) mod async_store;
mod backend;
pub(crate) mod fallback;
#[cfg(feature = "redis")]
mod fleet;
mod guards;
mod import;
pub(crate) mod location;
pub(crate) mod lock_plan;
mod login;
mod logout;
pub(crate) mod options;
mod protect;
mod refresh;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::basics::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::file::atomic;
use crate::file::filesystem::FsKind;
use crate::file::sidecar_names::{lease_path_for, lock_path_for};
use crate::protection::Protection;
use crate::session::model::Session;
use crate::store::lock_plan::LockPlan;
use crate::store::options::{
    DEFAULT_TORN_READ_RETRIES, LockMode, NETWORK_POLL_SCHEDULE, Options, WINDOWS_REPLACE_PAUSES,
};
use crate::trace::event::{Event, Observer};
use crate::wire::http::{Transport, UreqTransport};

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use fleet::{Fleet, Persistence};
pub use login::LoggedIn;
pub use logout::{LoggedOut, Revocation};
pub use protect::Protected;

/// One session file shared by any number of processes and threads.
///
/// Reads take no lock. Writes ([`Store::save`], [`Store::delete`], and the save after a
/// refresh) hold an exclusive advisory lock on the sidecar `<path>.lock` and replace the file
/// atomically and durably. [`Store::access_token`] refreshes at most once per expiry however
/// many processes ask at once: the first takes the lock, re-reads, refreshes and saves; the
/// others find its session and use it.
///
/// A `Store` is cheap to create and `Send + Sync`. Threads exclude each other through the
/// same OS lock as processes, so one handle per thread or one shared handle both work.
///
/// With the feature `redis`, `Store::redis` (and `Fleet::store`) keeps the session on a Redis
/// or Valkey server instead, for machines that share no disk: the same protocol, with a guard
/// key and scripts in place of the lock and the rename (`docs/fleet.md`).
///
/// # Examples
/// ```no_run
/// let store = credlock::Store::new("/home/me/.config/my-cli/session.json");
/// let token = store.access_token()?;
/// println!("Authorization: Bearer {}", token.secret());
/// # Ok::<(), credlock::Error>(())
/// ```
pub struct Store {
    path: PathBuf,
    lock_path: PathBuf,
    lease_path: PathBuf,
    options: Options,
    plan: OnceLock<LockPlan>,
    clock: Arc<dyn Clock>,
    transport: OnceLock<Arc<dyn Transport>>,
    /// The transport the store made itself (none given), whose roots it reads before the lock.
    own_transport: OnceLock<Arc<UreqTransport>>,
    observer: Option<Observer>,
    told_locks_unavailable: AtomicBool,
    backend: Backend,
}

/// Where a store keeps its session.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// A file, with its sidecar lock and lease files.
    File,
    /// A key on a Redis (or Valkey) server.
    #[cfg(feature = "redis")]
    Redis(crate::redis::Entry),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("lock_mode", &self.options.lock_mode)
            .field("margin", &self.options.margin)
            .field("lock_timeout", &self.options.lock_timeout)
            .field("protection", &self.options.protection)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A store for the session file at `path`, with the defaults: margin 30 s, lock timeout
    /// 10 s, [`LockMode::Auto`], fallback polls at 0/25/50/100 ms, the system clock, ureq.
    ///
    /// Nothing is read or created until a method needs it.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Store {
        let path = path.into();
        Store {
            lock_path: lock_path_for(&path),
            lease_path: lease_path_for(&path),
            path,
            options: Options::default(),
            plan: OnceLock::new(),
            clock: Arc::new(SystemClock),
            transport: OnceLock::new(),
            own_transport: OnceLock::new(),
            observer: None,
            told_locks_unavailable: AtomicBool::new(false),
            backend: Backend::File,
        }
    }

    /// Refresh a token this long before it expires, capped at a quarter of the token's
    /// lifetime. Defaults to 30 s.
    #[must_use]
    pub fn with_margin(mut self, margin: Duration) -> Store {
        self.options.margin = margin;
        self
    }

    /// How long to wait for the lock before [`Error::LockTimeout`]. Defaults to 10 s.
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Store {
        self.options.lock_timeout = timeout;
        self
    }

    /// How long a lease protects its holder before others may break it (lease modes only).
    /// Defaults to 120 s: longer than the worst-case refresh (two 30 s transport timeouts
    /// plus polling). A crashed holder on another machine delays the others by at most that
    /// (they get [`Error::LockTimeout`] meanwhile); a dead holder on this machine, not at all.
    #[must_use]
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Store {
        self.options.lease_ttl = ttl;
        self
    }

    /// Treats the session file as living on a filesystem of `kind` instead of detecting it
    /// (as `CREDLOCK_FS_KIND` does for the CLI): for tests, and for users who know better
    /// than `statfs` (an NFS mount with a working lock manager, say).
    #[must_use]
    pub fn with_filesystem_kind(mut self, kind: FsKind) -> Store {
        self.options.filesystem_kind = Some(kind);
        self.plan = OnceLock::new();
        self
    }

    /// The forced filesystem kind, if [`Store::with_filesystem_kind`] set one.
    #[must_use]
    pub fn filesystem_kind(&self) -> Option<&FsKind> {
        self.options.filesystem_kind.as_ref()
    }

    /// Whether and how to lock. Defaults to [`LockMode::Auto`].
    #[must_use]
    pub fn with_lock_mode(mut self, mode: LockMode) -> Store {
        self.options.lock_mode = mode;
        self.plan = OnceLock::new();
        self
    }

    /// The pauses before each re-read of the store after `invalid_grant`. Defaults to
    /// [`crate::DEFAULT_POLL_SCHEDULE`] on a local filesystem and [`crate::NETWORK_POLL_SCHEDULE`]
    /// on a network one, whose caches hold old data for seconds.
    #[must_use]
    pub fn with_poll_schedule(mut self, schedule: impl Into<Vec<Duration>>) -> Store {
        self.options.poll_schedule = Some(schedule.into());
        self
    }

    /// The pauses before each re-read of a session file that did not parse, before it is
    /// reported corrupt. Defaults to 10, 25, 50, 100 ms on a local filesystem, and to the
    /// longer [`crate::NETWORK_POLL_SCHEDULE`] on a network one (a cache can serve the new
    /// file cut at the old size for seconds).
    #[must_use]
    pub fn with_torn_read_retries(mut self, retries: impl Into<Vec<Duration>>) -> Store {
        self.options.torn_read_retries = Some(retries.into());
        self
    }

    /// How a session this store writes anew ([`Store::save`], an import, a login) is
    /// protected at rest: [`Protection::Keyring`] seals it under a key kept in the OS keychain
    /// (created on the first such write, then reused), [`Protection::None`] writes plain
    /// JSON. Without this setting a new session is written as the file it replaces is (plain
    /// JSON if there is none).
    ///
    /// Whatever the setting, a file is read as its own header says, and a refresh keeps the
    /// protection and the key of the file it replaces; [`Store::protect`] converts a stored
    /// session. A sealed file whose key the keychain does not give is refused
    /// ([`Error::Keychain`]), never rewritten in the clear. Keychain support needs the
    /// `keyring` feature.
    ///
    /// # Examples
    /// ```no_run
    /// use credlock::{Protection, Store};
    /// let store = Store::new("/home/me/.config/my-cli/session.json")
    ///     .with_protection(Protection::Keyring);
    /// # Ok::<(), credlock::Error>(())
    /// ```
    #[must_use]
    pub fn with_protection(mut self, protection: Protection) -> Store {
        self.options.protection = Some(protection);
        self
    }

    /// The protection set by [`Store::with_protection`], if any.
    #[must_use]
    pub fn protection(&self) -> Option<Protection> {
        self.options.protection
    }

    /// How long any one call to the OS keychain may take before it is given up with
    /// [`Error::Keychain`] (a keychain waiting on an unlock prompt, an agent that never
    /// answers). Defaults to [`crate::DEFAULT_KEYCHAIN_TIMEOUT`] (5 s).
    #[must_use]
    pub fn with_keychain_timeout(mut self, timeout: Duration) -> Store {
        self.options.keychain_timeout = timeout;
        self
    }

    /// The clock for expiry decisions and fallback pauses. Defaults to [`SystemClock`].
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Store {
        self.clock = clock;
        self
    }

    /// The HTTP transport. Defaults to [`UreqTransport`], created on the first refresh.
    #[must_use]
    pub fn with_transport(self, transport: Arc<dyn Transport>) -> Store {
        let cell = OnceLock::new();
        let _ = cell.set(transport);
        Store {
            transport: cell,
            ..self
        }
    }

    /// Calls `observer` for every [`Event`]: waiting for the lock, refreshing, adopting a
    /// sibling's session, degrading. Its `Display` is a ready-made log line.
    #[must_use]
    pub fn on_event(mut self, observer: impl Fn(&Event) + Send + Sync + 'static) -> Store {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The session file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sidecar lock file.
    #[must_use]
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// The lease file (used on filesystems whose locks do not reach other machines).
    #[must_use]
    pub fn lease_path(&self) -> &Path {
        &self.lease_path
    }

    /// The lock mode.
    #[must_use]
    pub fn lock_mode(&self) -> LockMode {
        self.options.lock_mode
    }

    /// The session file's permission bits (unix), `None` if there is no file or no mode bits
    /// (and for a session kept on a server, which has no file).
    #[must_use]
    pub fn file_mode(&self) -> Option<u32> {
        if self.on_server() {
            return None;
        }
        crate::file::checked_open::mode_of(&self.path)
    }

    /// The validity margin.
    #[must_use]
    pub fn margin(&self) -> Duration {
        self.options.margin
    }

    /// Reads the stored session, without taking any lock.
    ///
    /// A file that does not parse is read again after short pauses (a network or FUSE
    /// filesystem can serve a torn read of a file that was replaced atomically) before it is
    /// reported corrupt. A file readable by group or others is tightened to 0600 (its only
    /// change to the file).
    ///
    /// # Errors
    /// [`Error::Corrupt`], [`Error::UnsupportedVersion`], [`Error::NotASessionFile`] (a
    /// symlink, a directory, a FIFO, an oversized file), [`Error::Io`]; for a sealed file
    /// also [`Error::Keychain`], [`Error::Undecryptable`] and
    /// [`Error::UnsupportedProtection`]. None of them modifies the file.
    pub fn load(&self) -> Result<Option<Session>, Error> {
        // A server's read is whole or fails: no torn reads, no compare-and-delete aside.
        if self.on_server() {
            return self.current_bytes()?.map(|b| self.decode(&b)).transpose();
        }
        // Decided on the first failure only: a good read never pays for filesystem detection.
        let mut retries: Option<std::vec::IntoIter<Duration>> = None;
        let mut absent_retries: Option<std::vec::IntoIter<Duration>> = None;
        let mut looked_again = false;
        loop {
            // Windows without POSIX rename semantics (and Wine) refuses a rename over a file
            // that a reader has open: stay out of the way of a write about to replace it.
            if cfg!(windows) {
                atomic::wait_out_write(&self.path);
            }
            let Some(content) = atomic::read(&self.path)? else {
                // A compare-and-delete renames the file aside for a moment, and puts it back
                // if a newer session had been saved: "no session" only once it is over.
                if atomic::delete_in_progress(&self.path) {
                    let pauses =
                        absent_retries.get_or_insert_with(|| self.torn_read_schedule().into_iter());
                    if let Some(pause) = pauses.next() {
                        self.clock.sleep(pause);
                        looked_again = false;
                        continue;
                    }
                    return Ok(None);
                }
                // A put-back may have landed between the failed open and the check (its aside
                // file gone, so nothing "in progress"): look once more, and if another
                // compare-and-delete has the file aside by then, wait it out.
                if !looked_again {
                    looked_again = true;
                    continue;
                }
                // On Windows, look a few more times before "no session". (Added for a supposed
                // gap in Wine's replace; measured there, the replace is atomic, and the
                // `NoSession` seen came from a starved save: see `atomic::wait_out_write`.)
                if cfg!(windows) {
                    let pauses = absent_retries
                        .get_or_insert_with(|| WINDOWS_REPLACE_PAUSES.to_vec().into_iter());
                    if let Some(pause) = pauses.next() {
                        self.clock.sleep(pause);
                        continue;
                    }
                }
                return Ok(None);
            };
            if let Some(from_mode) = content.tightened_from {
                self.emit(Event::PermissionsTightened {
                    path: self.path.clone(),
                    from_mode,
                });
            }
            match self.decode(&content.bytes) {
                Ok(session) => return Ok(Some(session)),
                // A torn read of a sealed file can fail to authenticate as well as to parse.
                Err(e @ (Error::Corrupt { .. } | Error::Undecryptable { .. })) => {
                    let pauses =
                        retries.get_or_insert_with(|| self.torn_read_schedule().into_iter());
                    match pauses.next() {
                        Some(pause) => {
                            self.emit(Event::RetryingTornRead {
                                path: self.path.clone(),
                            });
                            self.clock.sleep(pause);
                        }
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether `session` is valid beyond this store's margin now.
    #[must_use]
    pub fn is_fresh(&self, session: &Session) -> bool {
        session.is_fresh(self.clock.now(), self.options.margin)
    }

    pub(crate) fn torn_read_schedule(&self) -> Vec<Duration> {
        self.options.torn_read_retries.clone().unwrap_or_else(|| {
            if self.lock_plan().filesystem.kind.is_networked() {
                NETWORK_POLL_SCHEDULE[1..].to_vec()
            } else {
                DEFAULT_TORN_READ_RETRIES.to_vec()
            }
        })
    }

    pub(crate) fn poll_schedule(&self) -> Vec<Duration> {
        self.options.poll_schedule.clone().unwrap_or_else(|| {
            if self.on_server() {
                crate::store::options::DEFAULT_POLL_SCHEDULE.to_vec()
            } else {
                self.lock_plan().default_poll_schedule()
            }
        })
    }

    /// The protection in effect: decided once per store, on first need, from the lock mode
    /// and the filesystem that holds the file (see [`LockPlan`]).
    #[must_use]
    pub fn lock_plan(&self) -> &LockPlan {
        self.plan.get_or_init(|| {
            if self.on_server() {
                return LockPlan::on_server(self.options.lock_mode);
            }
            LockPlan::for_path(
                self.options.lock_mode,
                self.options.filesystem_kind.as_ref(),
                &self.path,
            )
        })
    }

    pub(crate) fn emit(&self, event: Event) {
        crate::trace::event(&event);
        if let Some(observer) = &self.observer {
            observer(&event);
        }
    }

    pub(crate) fn transport(&self) -> &dyn Transport {
        self.transport
            .get_or_init(|| {
                let own: Arc<dyn Transport> = self
                    .own_transport
                    .get_or_init(|| Arc::new(UreqTransport::new()))
                    .clone();
                own
            })
            .as_ref()
    }

    /// Before the lock: reads the roots of the store's own transport if a refresh to `url`
    /// needs them, so that a `SSL_CERT_FILE` naming a FIFO, a device or an empty file is a
    /// configuration error at once, never a wait or a failure under the lock. A transport
    /// given with [`Store::with_transport`] is its owner's business.
    pub(crate) fn roots_ready_for(&self, url: &str) -> Result<(), Error> {
        let _ = self.transport();
        match self.own_transport.get() {
            Some(own) => own.roots_for(url),
            None => Ok(()),
        }
    }

    pub(crate) fn no_session(&self) -> Error {
        Error::NoSession {
            path: self.path.clone(),
        }
    }
}
