//! The store: one session file, lock-free reads, locked writes, and the refresh protocol.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::event::Event;
use crate::fallback::{self, Retry};
use crate::filesystem::FsKind;
use crate::http::{Transport, TransportError, UreqTransport};
use crate::lease::{self, LeaseFailure};
use crate::lock::{self, LockFailure, Locked};
use crate::oauth::{self, FormRequest, Outcome};
use crate::plan::LockPlan;
use crate::secret::Secret;
use crate::session::Session;

/// Whether and how refreshes are serialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LockMode {
    /// The advisory lock on a local filesystem. Where locks do not reach other machines
    /// (NFS without a lock manager, SMB, FUSE, …) or the filesystem refuses them, the lease
    /// file as well (or instead), said once ([`Event::LocksUnavailable`]). The
    /// `invalid_grant` fallback is always the last line. See [`LockPlan`].
    #[default]
    Auto,
    /// The advisory lock, required: a filesystem that refuses locks is an error.
    Advisory,
    /// The lease file only (see `docs/filesystems.md`): works across machines where locks do
    /// not, at the price of a few file operations per refresh.
    Lease,
    /// No lock at all: concurrent refreshes are resolved only by the `invalid_grant` fallback.
    /// For demonstrations and tests of that fallback.
    Off,
}

impl LockMode {
    /// The name used by the CLI and the environment (`auto`, `advisory`, `lease`, `off`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            LockMode::Auto => "auto",
            LockMode::Advisory => "advisory",
            LockMode::Lease => "lease",
            LockMode::Off => "off",
        }
    }
}

impl std::str::FromStr for LockMode {
    type Err = String;

    fn from_str(s: &str) -> Result<LockMode, String> {
        match s {
            "auto" => Ok(LockMode::Auto),
            "advisory" => Ok(LockMode::Advisory),
            "lease" => Ok(LockMode::Lease),
            "off" => Ok(LockMode::Off),
            other => Err(format!(
                "unknown lock mode {other:?} (expected auto, advisory, lease or off)"
            )),
        }
    }
}

/// A valid access token, as [`Store::access_token`] hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    token: Secret,
    token_type: String,
    expires_at: Option<SystemTime>,
    refreshed: bool,
}

impl AccessToken {
    pub(crate) fn from_session(session: &Session, refreshed: bool) -> AccessToken {
        AccessToken {
            token: session.access_token().clone(),
            token_type: session.token_type().to_owned(),
            expires_at: session.expires_at(),
            refreshed,
        }
    }

    /// The token, for an `Authorization: Bearer …` header.
    #[must_use]
    pub fn secret(&self) -> &str {
        self.token.secret()
    }

    /// The token type, usually `Bearer`.
    #[must_use]
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// When the token expires, if the server said.
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Whether this call sent the refresh request that produced the token.
    #[must_use]
    pub fn refreshed(&self) -> bool {
        self.refreshed
    }
}

/// Whether [`Store::logout`] revokes the refresh token at the server before deleting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// Revoke at the session's revocation endpoint first; if that fails, keep the session.
    Required,
    /// Delete the local copy only: the refresh token stays valid at the server until it
    /// expires or is revoked there.
    LocalOnly,
}

/// What [`Store::logout`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum LoggedOut {
    /// No session was stored; nothing was sent or changed.
    NothingStored,
    /// The session was deleted, after its refresh token was revoked if `revoked`.
    Deleted {
        /// Whether the server confirmed the revocation.
        revoked: bool,
    },
}

/// What [`Store::login_with`] did.
#[derive(Debug, Clone)]
#[must_use]
pub enum LoggedIn {
    /// This call ran the login and saved its session.
    Saved(Session),
    /// Another process's login (or refresh) saved a session while this one waited for the
    /// guards; this call adopted it and did not log in.
    Adopted(Session),
}

impl LoggedIn {
    /// The session now stored.
    #[must_use]
    pub fn session(&self) -> &Session {
        match self {
            LoggedIn::Saved(s) | LoggedIn::Adopted(s) => s,
        }
    }

    /// Whether this call logged in (rather than adopting another process's session).
    #[must_use]
    pub fn logged_in(&self) -> bool {
        matches!(self, LoggedIn::Saved(_))
    }
}

type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

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
    lease_ttl: Duration,
    margin: Duration,
    lock_timeout: Duration,
    lock_mode: LockMode,
    poll_schedule: Option<Vec<Duration>>,
    plan: OnceLock<LockPlan>,
    filesystem_kind: Option<FsKind>,
    torn_read_retries: Option<Vec<Duration>>,
    clock: Arc<dyn Clock>,
    transport: OnceLock<Arc<dyn Transport>>,
    observer: Option<Observer>,
    told_locks_unavailable: AtomicBool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("lock_mode", &self.lock_mode)
            .field("margin", &self.margin)
            .field("lock_timeout", &self.lock_timeout)
            .finish_non_exhaustive()
    }
}

/// The default validity margin: a token expiring sooner than this is refreshed (as upstream).
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(30);
/// The default time-to-live of a lease: longer than the worst-case critical section (a
/// refresh that times out at 30 s, the network poll schedule, and the fallback's one retry),
/// so that a slow but live holder is never broken.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(120);
/// The default wait for the lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// The default re-reads after `invalid_grant`: at 0, 25, 50 and 100 ms (delays before each).
pub const DEFAULT_POLL_SCHEDULE: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
];
const DEFAULT_TORN_READ_RETRIES: [Duration; 4] = [
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
];

/// Pauses before looking again for a session file that is missing on Windows (see `load`).
const WINDOWS_REPLACE_PAUSES: [Duration; 4] = [
    Duration::from_millis(2),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(20),
];

impl Store {
    /// A store for the session file at `path`, with the defaults: margin 30 s, lock timeout
    /// 10 s, [`LockMode::Auto`], fallback polls at 0/25/50/100 ms, the system clock, ureq.
    ///
    /// Nothing is read or created until a method needs it.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Store {
        let path = path.into();
        Store {
            lock_path: lock::lock_path_for(&path),
            lease_path: lease::lease_path_for(&path),
            lease_ttl: DEFAULT_LEASE_TTL,
            path,
            margin: DEFAULT_MARGIN,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            lock_mode: LockMode::Auto,
            poll_schedule: None,
            plan: OnceLock::new(),
            filesystem_kind: None,
            torn_read_retries: None,
            clock: Arc::new(SystemClock),
            transport: OnceLock::new(),
            observer: None,
            told_locks_unavailable: AtomicBool::new(false),
        }
    }

    /// Refresh a token this long before it expires, capped at a quarter of the token's
    /// lifetime. Defaults to 30 s.
    #[must_use]
    pub fn with_margin(mut self, margin: Duration) -> Store {
        self.margin = margin;
        self
    }

    /// How long to wait for the lock before [`Error::LockTimeout`]. Defaults to 10 s.
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Store {
        self.lock_timeout = timeout;
        self
    }

    /// How long a lease protects its holder before others may break it (lease modes only).
    /// Defaults to 120 s: longer than the worst-case refresh (two 30 s transport timeouts
    /// plus polling). A crashed holder on another machine delays the others by at most that
    /// (they get [`Error::LockTimeout`] meanwhile); a dead holder on this machine, not at all.
    #[must_use]
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Store {
        self.lease_ttl = ttl;
        self
    }

    /// Treats the session file as living on a filesystem of `kind` instead of detecting it
    /// (as `CREDLOCK_FS_KIND` does for the CLI): for tests, and for users who know better
    /// than `statfs` (an NFS mount with a working lock manager, say).
    #[must_use]
    pub fn with_filesystem_kind(mut self, kind: FsKind) -> Store {
        self.filesystem_kind = Some(kind);
        self.plan = OnceLock::new();
        self
    }

    /// The forced filesystem kind, if [`Store::with_filesystem_kind`] set one.
    #[must_use]
    pub fn filesystem_kind(&self) -> Option<&FsKind> {
        self.filesystem_kind.as_ref()
    }

    /// Whether and how to lock. Defaults to [`LockMode::Auto`].
    #[must_use]
    pub fn with_lock_mode(mut self, mode: LockMode) -> Store {
        self.lock_mode = mode;
        self.plan = OnceLock::new();
        self
    }

    /// The pauses before each re-read of the store after `invalid_grant`. Defaults to
    /// [`DEFAULT_POLL_SCHEDULE`] on a local filesystem and [`crate::NETWORK_POLL_SCHEDULE`]
    /// on a network one, whose caches hold old data for seconds.
    #[must_use]
    pub fn with_poll_schedule(mut self, schedule: impl Into<Vec<Duration>>) -> Store {
        self.poll_schedule = Some(schedule.into());
        self
    }

    /// The pauses before each re-read of a session file that did not parse, before it is
    /// reported corrupt. Defaults to 10, 25, 50, 100 ms on a local filesystem, and to the
    /// longer [`crate::NETWORK_POLL_SCHEDULE`] on a network one (a cache can serve the new
    /// file cut at the old size for seconds).
    #[must_use]
    pub fn with_torn_read_retries(mut self, retries: impl Into<Vec<Duration>>) -> Store {
        self.torn_read_retries = Some(retries.into());
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
        self.lock_mode
    }

    /// The session file's permission bits (unix), `None` if there is no file or no mode bits.
    #[must_use]
    pub fn file_mode(&self) -> Option<u32> {
        crate::atomic::mode_of(&self.path)
    }

    /// The validity margin.
    #[must_use]
    pub fn margin(&self) -> Duration {
        self.margin
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
    /// symlink, a directory, a FIFO, an oversized file), [`Error::Io`]. None of them modifies
    /// the file.
    pub fn load(&self) -> Result<Option<Session>, Error> {
        // Decided on the first failure only: a good read never pays for filesystem detection.
        let mut retries: Option<std::vec::IntoIter<Duration>> = None;
        let mut absent_retries: Option<std::vec::IntoIter<Duration>> = None;
        let mut looked_again = false;
        loop {
            let content = match crate::atomic::read(&self.path)? {
                Some(content) => content,
                None => {
                    // A compare-and-delete renames the file aside for a moment, and puts it
                    // back if a newer session had been saved: "no session" only once it is
                    // over.
                    if crate::atomic::delete_in_progress(&self.path) {
                        let pauses = absent_retries
                            .get_or_insert_with(|| self.torn_read_schedule().into_iter());
                        if let Some(pause) = pauses.next() {
                            self.clock.sleep(pause);
                            looked_again = false;
                            continue;
                        }
                        return Ok(None);
                    }
                    // A put-back may have landed between the failed open and the check (its
                    // aside file gone, so nothing "in progress"): look once more, and if
                    // another compare-and-delete has the file aside by then, wait it out.
                    if !looked_again {
                        looked_again = true;
                        continue;
                    }
                    // Windows without POSIX rename semantics (and Wine) may replace a file
                    // by removing it first: a reader can find no file for an instant while a
                    // save is under way. Look a few more times before "no session".
                    if cfg!(windows) {
                        let pauses = absent_retries
                            .get_or_insert_with(|| WINDOWS_REPLACE_PAUSES.to_vec().into_iter());
                        if let Some(pause) = pauses.next() {
                            self.clock.sleep(pause);
                            continue;
                        }
                    }
                    return Ok(None);
                }
            };
            if let Some(from_mode) = content.tightened_from {
                self.emit(Event::PermissionsTightened {
                    path: self.path.clone(),
                    from_mode,
                });
            }
            match Session::from_json(&content.bytes, &self.path) {
                Ok(session) => return Ok(Some(session)),
                Err(e @ Error::Corrupt { .. }) => {
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

    /// Stores `session` (after a login done elsewhere), replacing any stored one, atomically
    /// and durably, under the lock so that it cannot be overwritten by a refresh in flight.
    ///
    /// # Errors
    /// [`Error::Io`] (the old file is then untouched and no temp file remains),
    /// [`Error::NotASessionFile`], [`Error::LockTimeout`].
    pub fn save(&self, session: &Session) -> Result<(), Error> {
        let bytes = session.to_json();
        self.locked(|| crate::atomic::write(&self.path, &bytes))
    }

    /// Deletes the stored session under the lock (logout). A refresh in flight elsewhere
    /// re-reads under the lock, finds nothing, and does not write the session back.
    /// Returns whether there was a session.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::NotASessionFile`], [`Error::LockTimeout`].
    pub fn delete(&self) -> Result<bool, Error> {
        self.locked(|| crate::atomic::remove(&self.path))
    }

    /// Logs out: under the guards, reads the session, revokes its refresh token at the
    /// session's revocation endpoint (RFC 7009) if `revocation` asks for it, and deletes the
    /// session, all in one critical section, so a refresh in another process can neither
    /// slip a newer refresh token past the revocation nor write the session back.
    ///
    /// With [`Revocation::Required`], a revocation that fails keeps the session: the refresh
    /// token is still live at the server, and the user can try again (or log out locally with
    /// [`Revocation::LocalOnly`], which deletes without a request). With no session stored,
    /// nothing is created, locked or sent.
    ///
    /// # Errors
    /// - [`Error::NoRevocationEndpoint`]: revocation required, but the session names no
    ///   revocation endpoint; the session was kept.
    /// - [`Error::RevocationUnavailable`] (transient) and [`Error::RevocationRefused`]: the
    ///   revocation did not succeed; the session was kept.
    /// - [`Error::InsecureEndpoint`]: the revocation endpoint is plain http to a remote host;
    ///   nothing was sent and the session was kept.
    /// - [`Error::Corrupt`] and the other read errors, with [`Revocation::Required`] (a
    ///   corrupt file has no token to revoke; [`Revocation::LocalOnly`] deletes it).
    /// - [`Error::LockTimeout`], [`Error::Io`], [`Error::NotASessionFile`].
    ///
    /// # Examples
    /// ```no_run
    /// use credlock::{LoggedOut, Revocation, Store};
    /// let store = Store::new("/home/me/.config/my-cli/session.json");
    /// match store.logout(Revocation::Required)? {
    ///     LoggedOut::Deleted { revoked } => println!("logged out (revoked: {revoked})"),
    ///     LoggedOut::NothingStored => println!("no session was stored"),
    /// }
    /// # Ok::<(), credlock::Error>(())
    /// ```
    pub fn logout(&self, revocation: Revocation) -> Result<LoggedOut, Error> {
        // A cheap look first, so that logging out with nothing stored creates no directory,
        // no lock file and no lease.
        if !self.stored_once_deletes_settle()? {
            return Ok(LoggedOut::NothingStored);
        }
        self.locked(|| {
            // Under a lease another process may take over: nothing is sent, and nothing is
            // deleted unconditionally, once it may have.
            let fence = lease::Fence::current(&self.lease_path);
            let session = match revocation {
                Revocation::LocalOnly => {
                    if !self.stored_once_deletes_settle()? {
                        return Ok(LoggedOut::NothingStored);
                    }
                    fence.still_held()?;
                    return Ok(if crate::atomic::remove(&self.path)? {
                        LoggedOut::Deleted { revoked: false }
                    } else {
                        LoggedOut::NothingStored
                    });
                }
                Revocation::Required => match self.load()? {
                    None => return Ok(LoggedOut::NothingStored),
                    Some(session) => session,
                },
            };
            fence.still_held()?;
            self.revoke(&session)?;
            // Whatever became of the lease meanwhile, a file that still holds the refresh
            // token just revoked is dead and goes; one that holds another (saved by a process
            // that took the lease over, or by a writer that takes no lock) is kept.
            let holds_the_revoked_token = |bytes: &[u8]| {
                Session::from_json(bytes, &self.path)
                    .is_ok_and(|s| s.refresh_token() == session.refresh_token())
            };
            if crate::atomic::remove_if(&self.path, holds_the_revoked_token)?
                || !self.stored_once_deletes_settle()?
            {
                return Ok(LoggedOut::Deleted { revoked: true });
            }
            fence.still_held()?;
            Err(Error::Io {
                action: "delete the session file",
                path: self.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a newer session was saved during the logout and was kept (its refresh token was not revoked): log out again",
                ),
            })
        })
    }

    /// Whether a session file is at the path, once any compare-and-delete under way is over:
    /// one has the file renamed aside for a moment and may put it back. `false` only when
    /// there is no file and no compare-and-delete is in progress; `true` also while one still
    /// is after the torn-read pauses (the caller then meets the file, or its absence, under
    /// the lock).
    fn stored_once_deletes_settle(&self) -> Result<bool, Error> {
        let mut pauses: Option<std::vec::IntoIter<Duration>> = None;
        loop {
            if crate::atomic::exists(&self.path)? {
                return Ok(true);
            }
            if !crate::atomic::delete_in_progress(&self.path) {
                // A put-back may have landed between the look and the check.
                return crate::atomic::exists(&self.path);
            }
            match pauses
                .get_or_insert_with(|| self.torn_read_schedule().into_iter())
                .next()
            {
                Some(pause) => self.clock.sleep(pause),
                None => return Ok(true),
            }
        }
    }

    /// Sends the RFC 7009 revocation of `session`'s refresh token; `Ok` only on HTTP 200.
    fn revoke(&self, session: &Session) -> Result<(), Error> {
        let request = FormRequest::revoke(session)?.ok_or_else(|| Error::NoRevocationEndpoint {
            path: self.path.clone(),
        })?;
        let unavailable = |reason: String| Error::RevocationUnavailable {
            path: self.path.clone(),
            reason,
        };
        let secrets_sent = request.secret_values();
        // Transport errors can quote what the server sent back, the refresh token included.
        let response = self.transport().post_form(&request).map_err(|e| {
            unavailable(crate::secret::withheld_if_echoing(
                &secrets_sent,
                e.to_string(),
            ))
        })?;
        match response.status {
            200 => Ok(()),
            408 | 425 | 429 | 500..=599 => Err(unavailable(format!(
                "HTTP {} from the revocation endpoint",
                response.status
            ))),
            status => Err(Error::RevocationRefused {
                path: self.path.clone(),
                status,
                oauth: crate::oauth::OAuthError::from_json(&response.body, &secrets_sent),
            }),
        }
    }

    /// Runs a login (`login`, such as a [`crate::Login`] flow) under the store's guards and
    /// saves its session: one login for any number of callers.
    ///
    /// The store is read first; then the guards are taken (advisory lock, and the lease
    /// where the [`LockPlan`] uses one, its time-to-live stretched to cover `deadline`).
    /// While waiting for them, and again once they are held, a session that differs from
    /// the one first read (another process's login, or a refresh) ends the wait: it is
    /// adopted ([`LoggedIn::Adopted`]) and `login` does not run. Otherwise `login` runs
    /// while the guards are held, so other callers of this method wait for it (up to
    /// `deadline` plus the lock timeout) and adopt what it saves. A failed login saves
    /// nothing, releases the guards, and the next waiter runs its own.
    ///
    /// # Errors
    /// - whatever `login` returns; nothing was saved.
    /// - [`Error::NotSaved`]: the login worked but its session could not be saved (or the
    ///   lease was lost meanwhile); the error carries the new session.
    /// - [`Error::LockTimeout`]: another login held the guards for the whole wait.
    /// - [`Error::Corrupt`] and the other read errors, [`Error::Io`].
    pub fn login_with(
        &self,
        deadline: Duration,
        login: impl FnOnce() -> Result<Session, Error>,
    ) -> Result<LoggedIn, Error> {
        let before = self.load()?;
        let refresh_token =
            |s: &Option<Session>| s.as_ref().map(|s| s.refresh_token().secret().to_owned());
        let seen = refresh_token(&before);
        let appeared = move || {
            self.load()
                .ok()
                .flatten()
                .filter(|s| Some(s.refresh_token().secret()) != seen.as_deref())
        };
        let wait = deadline.saturating_add(self.lock_timeout);
        let ttl = self.lease_ttl.max(wait);
        let critical = || -> Result<LoggedIn, Error> {
            if let Some(session) = appeared() {
                self.emit(Event::AdoptedNewerSession {
                    path: self.path.clone(),
                });
                return Ok(LoggedIn::Adopted(session));
            }
            let session = login()?;
            let fenced = lease::Fence::current(&self.lease_path).still_held();
            match fenced.and_then(|()| crate::atomic::write(&self.path, &session.to_json())) {
                Ok(()) => Ok(LoggedIn::Saved(session)),
                Err(e) => Err(Error::NotSaved {
                    session: Box::new(session),
                    source: Box::new(e),
                }),
            }
        };
        match self.guarded_for(wait, ttl, &appeared, critical)? {
            Locked::Ran(result) => result,
            Locked::Resolved(session) => {
                self.emit(Event::AdoptedNewerSession {
                    path: self.path.clone(),
                });
                Ok(LoggedIn::Adopted(session))
            }
        }
    }

    /// A valid access token: the stored one if it is valid beyond the margin (no lock, no
    /// request), else one refresh for all the processes that ask at once.
    ///
    /// When the stored token is stale: take the lock (while waiting, adopt a session another
    /// process saves), re-read, and if it is still stale, refresh, save, release. After
    /// `invalid_grant`, the fallback re-reads the store for a sibling's newer session before
    /// giving up, and deletes the session only if it still holds the refresh token that failed.
    ///
    /// # Errors
    /// - [`Error::NoSession`], [`Error::SessionExpired`], [`Error::Rejected`]: log in again
    ///   ([`Error::needs_login`]).
    /// - [`Error::Unavailable`], [`Error::LockTimeout`]: try again later
    ///   ([`Error::is_transient`]); the session is kept.
    /// - [`Error::NotSaved`]: the refresh worked but the save did not; the error carries the
    ///   new session.
    /// - [`Error::InvalidResponse`]: the server answered something unusable; session kept.
    /// - [`Error::InsecureEndpoint`]: the stored endpoint is plain http to a remote host; no
    ///   request was sent.
    /// - [`Error::Corrupt`], [`Error::UnsupportedVersion`], [`Error::NotASessionFile`],
    ///   [`Error::Io`]: the file is left untouched.
    ///
    /// Waiting is bounded by the lock timeout for the advisory lock, and again for the lease
    /// where one is used.
    pub fn access_token(&self) -> Result<AccessToken, Error> {
        let session = self.load()?.ok_or_else(|| self.no_session())?;
        if self.is_fresh(&session) {
            return Ok(AccessToken::from_session(&session, false));
        }
        let adopt = || self.fresh_session_saved_by_another();
        let result = match self.guarded(&adopt, || self.refresh_if_still_stale()) {
            Ok(Locked::Ran(result)) => result,
            Ok(Locked::Resolved(session)) => Ok(self.adopted(&session)),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.is_transient() => self.unexpired_despite(e),
            other => other,
        }
    }

    /// After a transient failure to refresh: the stored access token if it has not actually
    /// expired (only the margin has passed), since a valid token is still a valid token. The
    /// store is read again, so a logout meanwhile is honoured and a sibling's newer session
    /// is preferred.
    fn unexpired_despite(&self, error: Error) -> Result<AccessToken, Error> {
        let Ok(Some(session)) = self.load() else {
            return Err(error);
        };
        if !session.is_fresh(self.clock.now(), Duration::ZERO) {
            return Err(error);
        }
        self.emit(Event::UsingUnexpiredToken {
            path: self.path.clone(),
            reason: error.to_string(),
        });
        Ok(AccessToken::from_session(&session, false))
    }

    /// A session another process saved, handed out without a request.
    fn adopted(&self, session: &Session) -> AccessToken {
        self.emit(Event::AdoptedNewerSession {
            path: self.path.clone(),
        });
        AccessToken::from_session(session, false)
    }

    /// A new access token after an API rejected the access token `rejected` (HTTP 401): the
    /// server revoked it early, or the session has no expiry to go by. Refreshes under the same guards as
    /// [`Store::access_token`], and only if the store still holds the rejected token, so that
    /// any number of callers reporting the same rejection cause one refresh.
    ///
    /// # Errors
    /// As [`Store::access_token`].
    pub fn access_token_after_rejection(&self, rejected: &str) -> Result<AccessToken, Error> {
        let replaced = |s: &Session| s.access_token().secret() != rejected && self.is_fresh(s);
        let session = self.load()?.ok_or_else(|| self.no_session())?;
        if replaced(&session) {
            return Ok(AccessToken::from_session(&session, false));
        }
        let adopt = || self.load().ok().flatten().filter(|s| replaced(s));
        let refresh = || {
            let session = self.load()?.ok_or_else(|| self.no_session())?;
            if replaced(&session) {
                return Ok(self.adopted(&session));
            }
            self.refresh_session(session, Retry::Allowed)
        };
        match self.guarded(&adopt, refresh)? {
            Locked::Ran(result) => result,
            Locked::Resolved(session) => Ok(self.adopted(&session)),
        }
    }

    /// While waiting for the lock: a fresh session another process saved, if any.
    fn fresh_session_saved_by_another(&self) -> Option<Session> {
        self.load().ok().flatten().filter(|s| self.is_fresh(s))
    }

    /// Runs under the lock (or without one in [`LockMode::Off`]).
    fn refresh_if_still_stale(&self) -> Result<AccessToken, Error> {
        let session = self.load()?.ok_or_else(|| self.no_session())?;
        if self.is_fresh(&session) {
            // Another process refreshed while this one waited for the guards.
            return Ok(self.adopted(&session));
        }
        self.refresh_session(session, Retry::Allowed)
    }

    /// Sends one refresh for `session` and handles its outcome; `retry` says whether the
    /// `invalid_grant` fallback may still refresh once with a newer session it finds.
    pub(crate) fn refresh_session(
        &self,
        session: Session,
        retry: Retry,
    ) -> Result<AccessToken, Error> {
        let request = FormRequest::refresh(&session);
        oauth::require_secure_endpoint(&request.url)?;
        // Under a lease: never send once another process may have taken it over.
        lease::Fence::current(&self.lease_path).still_held()?;
        self.emit(Event::Refreshing {
            path: self.path.clone(),
        });
        let secrets_sent = request.secret_values();
        let response = self.transport().post_form(&request).map_err(|e| {
            // Transport errors can quote what the server sent (a malformed header, say).
            let reason = if crate::secret::EchoGuard::new(&secrets_sent).echoes(&e.to_string()) {
                "the response could not be read (details withheld: they quote a secret)".to_owned()
            } else {
                e.to_string()
            };
            match e {
                TransportError::TooLarge(_) => Error::InvalidResponse {
                    path: self.path.clone(),
                    reason,
                },
                _ => Error::Unavailable {
                    path: self.path.clone(),
                    reason,
                    retry_after: None,
                },
            }
        })?;
        let now = self.clock.now();
        match oauth::classify(&response, now, &secrets_sent) {
            Outcome::Refreshed(token_response) => {
                let refreshed = session.refreshed(token_response, now);
                self.save_refreshed(refreshed, &session)
            }
            Outcome::RotatedOnly {
                refresh_token,
                reason,
            } => {
                // The server consumed the refresh token we sent: its replacement reaches the
                // disk before anything else, or the session is lost on the next call.
                let kept = session.with_rotated_refresh_token(refresh_token, now);
                let save_error = self.save_rotated(&kept, &session).err().map(Box::new);
                Err(Error::IncompleteRefresh {
                    path: self.path.clone(),
                    reason,
                    save_error,
                })
            }
            Outcome::InvalidGrant => fallback::recover(self, &session, retry),
            Outcome::Rejected { status, oauth } => Err(Error::Rejected {
                path: self.path.clone(),
                status,
                oauth,
            }),
            Outcome::Unavailable {
                status,
                retry_after,
            } => Err(Error::Unavailable {
                path: self.path.clone(),
                reason: if status == 429 {
                    "HTTP 429, rate limited".to_owned()
                } else {
                    format!("HTTP {status} from the token endpoint")
                },
                retry_after,
            }),
            Outcome::Unusable(reason) => Err(Error::InvalidResponse {
                path: self.path.clone(),
                reason,
            }),
        }
    }

    /// Saves the session a refresh of `sent` returned.
    fn save_refreshed(&self, session: Session, sent: &Session) -> Result<AccessToken, Error> {
        match self.save_rotated(&session, sent) {
            Ok(()) => {
                self.emit(Event::Refreshed {
                    path: self.path.clone(),
                });
                Ok(AccessToken::from_session(&session, true))
            }
            Err(e) => Err(Error::NotSaved {
                session: Box::new(session),
                source: Box::new(e),
            }),
        }
    }

    /// Saves `new`, the outcome of a 2xx to the refresh of `sent`. Under a lease that another
    /// process may have taken over meanwhile, the server has still consumed the refresh token
    /// we sent: `new` is saved if the file still holds the one we sent (nothing newer was
    /// saved, and what is there can no longer be used); otherwise the newer session, or the
    /// absence a logout left, is kept and the error is [`Error::LeaseLost`].
    fn save_rotated(&self, new: &Session, sent: &Session) -> Result<(), Error> {
        let bytes = new.to_json();
        let Err(lost) = lease::Fence::current(&self.lease_path).still_held() else {
            return crate::atomic::write(&self.path, &bytes);
        };
        // Compared again right before the rename. A holder on another machine can still save
        // in between (nothing serialises us with it any more); then its session is replaced
        // by ours, whose refresh token the server issued too.
        let holds_what_we_sent = |current: Option<&[u8]>| {
            current.is_some_and(|b| {
                Session::from_json(b, &self.path)
                    .is_ok_and(|s| s.refresh_token() == sent.refresh_token())
            })
        };
        if crate::atomic::write_if(&self.path, &bytes, holds_what_we_sent)? {
            Ok(())
        } else {
            Err(lost)
        }
    }

    /// Takes and releases the lock once, to check that it can be taken (`credlock doctor`).
    /// Returns `Ok(false)`, having created nothing, when there is no lock file yet (no
    /// refresh or save has happened): a check must not leave files behind.
    ///
    /// # Errors
    /// [`Error::LockTimeout`] if another process holds it past the timeout; [`Error::Io`] if
    /// the lock file cannot be opened, or the filesystem refuses locks.
    pub fn probe_lock(&self) -> Result<bool, Error> {
        if std::fs::symlink_metadata(&self.lock_path).is_err() {
            return Ok(false);
        }
        let waited = lock::with_lock(
            &self.lock_path,
            self.lock_timeout,
            || None::<()>,
            || (),
            || (),
        );
        match waited {
            Ok(_) => Ok(true),
            Err(LockFailure::Timeout(waited)) => Err(Error::LockTimeout {
                lock_path: self.lock_path.clone(),
                waited,
            }),
            Err(LockFailure::Io(e)) => Err(e),
            Err(LockFailure::Unsupported(source)) => Err(Error::Io {
                action: "lock",
                path: self.lock_path.clone(),
                source,
            }),
        }
    }

    /// Runs `f` under the guards; for writes, which never end their wait early.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        match self.guarded(&|| None::<std::convert::Infallible>, f)? {
            Locked::Ran(result) => result,
            Locked::Resolved(never) => match never {},
        }
    }

    /// Runs `critical` under every guard the [`LockPlan`] calls for: the advisory lock (which
    /// orders the processes of one machine cheaply), then the lease (which reaches other
    /// machines where locks do not). While waiting for either, `adopt` may end the wait with
    /// what another process saved.
    fn guarded<T, R>(
        &self,
        adopt: &dyn Fn() -> Option<R>,
        critical: impl FnOnce() -> T,
    ) -> Result<Locked<T, R>, Error> {
        self.guarded_for(self.lock_timeout, self.lease_ttl, adopt, critical)
    }

    /// [`Store::guarded`] with another wait and lease time-to-live (a login holds the guards
    /// for minutes, not for one request).
    fn guarded_for<T, R>(
        &self,
        wait: Duration,
        lease_ttl: Duration,
        adopt: &dyn Fn() -> Option<R>,
        critical: impl FnOnce() -> T,
    ) -> Result<Locked<T, R>, Error> {
        let plan = self.lock_plan();
        if plan.degraded {
            self.say_once(&plan.reason);
        }
        if !plan.advisory {
            return self.leased(plan.lease, wait, lease_ttl, adopt, critical);
        }
        let mut critical = Some(critical);
        let waited = lock::with_lock(
            &self.lock_path,
            wait,
            adopt,
            || {
                self.emit(Event::WaitingForLock {
                    lock_path: self.lock_path.clone(),
                });
            },
            || match critical.take() {
                Some(f) => self.leased(plan.lease, wait, lease_ttl, adopt, f),
                None => unreachable!("the critical section runs once"),
            },
        );
        match waited {
            Ok(Locked::Ran(inner)) => inner,
            Ok(Locked::Resolved(r)) => Ok(Locked::Resolved(r)),
            Err(LockFailure::Timeout(waited)) => Err(Error::LockTimeout {
                lock_path: self.lock_path.clone(),
                waited,
            }),
            Err(LockFailure::Io(e)) => Err(e),
            // The filesystem refuses locks: in auto mode, the lease takes over.
            Err(LockFailure::Unsupported(e)) if plan.requested == LockMode::Auto => {
                self.say_once(&format!(
                    "the filesystem refuses locks ({e}); using the lease file instead"
                ));
                match critical.take() {
                    Some(f) => self.leased(true, wait, lease_ttl, adopt, f),
                    None => unreachable!("a failed lock never ran the critical section"),
                }
            }
            Err(LockFailure::Unsupported(source)) => Err(Error::Io {
                action: "lock",
                path: self.lock_path.clone(),
                source,
            }),
        }
    }

    fn leased<T, R>(
        &self,
        use_lease: bool,
        wait: Duration,
        ttl: Duration,
        adopt: &dyn Fn() -> Option<R>,
        critical: impl FnOnce() -> T,
    ) -> Result<Locked<T, R>, Error> {
        if !use_lease {
            return Ok(Locked::Ran(critical()));
        }
        lease::with_lease(&self.lease_path, ttl, wait, adopt, critical).map_err(|failure| {
            match failure {
                LeaseFailure::Timeout(waited) => Error::LockTimeout {
                    lock_path: self.lease_path.clone(),
                    waited,
                },
                LeaseFailure::Io(e) => e,
            }
        })
    }

    /// Reports a degraded protection once per store.
    fn say_once(&self, reason: &str) {
        if !self.told_locks_unavailable.swap(true, Ordering::Relaxed) {
            self.emit(Event::LocksUnavailable {
                lock_path: self.lock_path.clone(),
                reason: reason.to_owned(),
            });
        }
    }

    /// Whether `session` is valid beyond this store's margin now.
    #[must_use]
    pub fn is_fresh(&self, session: &Session) -> bool {
        session.is_fresh(self.clock.now(), self.margin)
    }

    fn torn_read_schedule(&self) -> Vec<Duration> {
        self.torn_read_retries.clone().unwrap_or_else(|| {
            if self.lock_plan().filesystem.kind.is_networked() {
                crate::plan::NETWORK_POLL_SCHEDULE[1..].to_vec()
            } else {
                DEFAULT_TORN_READ_RETRIES.to_vec()
            }
        })
    }

    pub(crate) fn poll_schedule(&self) -> Vec<Duration> {
        self.poll_schedule
            .clone()
            .unwrap_or_else(|| self.lock_plan().default_poll_schedule())
    }

    /// The protection in effect: decided once per store, on first need, from the lock mode
    /// and the filesystem that holds the file (see [`LockPlan`]).
    #[must_use]
    pub fn lock_plan(&self) -> &LockPlan {
        self.plan.get_or_init(|| LockPlan::for_store(self))
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    pub(crate) fn emit(&self, event: Event) {
        if let Some(observer) = &self.observer {
            observer(&event);
        }
    }

    fn transport(&self) -> &dyn Transport {
        self.transport
            .get_or_init(|| Arc::new(UreqTransport::new()))
            .as_ref()
    }

    fn no_session(&self) -> Error {
        Error::NoSession {
            path: self.path.clone(),
        }
    }
}
