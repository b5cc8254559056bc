//! What the store tells an observer: waiting, refreshing, adopting, degrading.

use std::path::PathBuf;

/// Something worth telling a user or a log, reported to [`crate::Store::on_event`].
///
/// `Display` gives a one-line message without secrets, in the style of cargo's
/// "Blocking waiting for file lock".
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The lock is held by another process or thread; this one is waiting. Normal under
    /// contention (every process but one waits at each expiry), usually for milliseconds:
    /// a CLI says it only when asked to be verbose, and [`Event::StillWaitingForLock`]
    /// otherwise.
    WaitingForLock {
        /// The sidecar lock file.
        lock_path: PathBuf,
    },
    /// The same wait has lasted a noticeable time (about a second, once per wait): worth a
    /// line on a terminal, since the user sees the delay.
    StillWaitingForLock {
        /// The sidecar lock file.
        lock_path: PathBuf,
        /// How long it has waited so far.
        waited: std::time::Duration,
    },
    /// A refresh request is being sent.
    Refreshing {
        /// The session file.
        path: PathBuf,
    },
    /// The refreshed session was saved.
    Refreshed {
        /// The session file.
        path: PathBuf,
    },
    /// Another process refreshed first; its session was used, without a request.
    AdoptedNewerSession {
        /// The session file.
        path: PathBuf,
    },
    /// After `invalid_grant` and the polling window, the store still held the refresh token
    /// that failed, so the dead session was deleted.
    DeletedStaleSession {
        /// The session file.
        path: PathBuf,
    },
    /// The session file was readable by group or others; its mode was set to 0600.
    PermissionsTightened {
        /// The session file.
        path: PathBuf,
        /// The mode it had.
        from_mode: u32,
    },
    /// A read did not parse and was retried (a torn read through a network cache, or a
    /// corrupt file).
    RetryingTornRead {
        /// The session file.
        path: PathBuf,
    },
    /// A refresh failed for a reason that may pass (network, 408, 425, 429, 5xx, lock
    /// timeout), but the stored access token has not expired yet (only the refresh margin has
    /// passed), so it was handed out. `reason` is the failure, without secrets.
    UsingUnexpiredToken {
        /// The session file.
        path: PathBuf,
        /// Why the refresh failed.
        reason: String,
    },
    /// Protection is degraded: locks are off, or an advisory lock alone is taken where it may
    /// not reach other machines, so only the `invalid_grant` fallback stands between two
    /// machines refreshing at once. Reported once per store; `reason` says which. (Where the
    /// lease guards refreshes, [`Event::LeaseInForce`] is reported instead.)
    LocksUnavailable {
        /// The sidecar lock file.
        lock_path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The lease file guards refreshes, across machines: the filesystem's locks may not reach
    /// other machines (or it refuses locks, in `auto` mode), or the lease was asked for.
    /// Routine, not a warning: the lease relies only on the machines' clocks agreeing within
    /// its time-to-live. Reported once per store; `reason` says why the lease is used.
    LeaseInForce {
        /// The lease file.
        lease_path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Releasing the lock failed (the OS refused the unlock). Closing the lock file releases
    /// it anyway, so nothing stays locked; reported because it points at a filesystem whose
    /// locks misbehave.
    UnlockFailed {
        /// The sidecar lock file.
        lock_path: PathBuf,
        /// The OS error.
        reason: String,
    },
}

/// Whoever is told about [`Event`]s: the observer of [`crate::Store::on_event`].
pub(crate) type Observer = std::sync::Arc<dyn Fn(&Event) + Send + Sync>;

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::WaitingForLock { lock_path } => {
                write!(
                    f,
                    "Blocking waiting for file lock on {}",
                    lock_path.display()
                )
            }
            Event::StillWaitingForLock { lock_path, waited } => write!(
                f,
                "Blocking waiting for file lock on {} (another process holds it; {:.1} s so far)",
                lock_path.display(),
                waited.as_secs_f64()
            ),
            Event::Refreshing { path } => write!(f, "Refreshing the session in {}", path.display()),
            Event::Refreshed { path } => {
                write!(f, "Saved the refreshed session to {}", path.display())
            }
            Event::AdoptedNewerSession { path } => write!(
                f,
                "Another process refreshed the session in {} first; using its token",
                path.display()
            ),
            Event::DeletedStaleSession { path } => write!(
                f,
                "The session in {} was refused by the server and is deleted",
                path.display()
            ),
            Event::PermissionsTightened { path, from_mode } => write!(
                f,
                "{} had mode {from_mode:04o}; set it to 0600",
                path.display()
            ),
            Event::RetryingTornRead { path } => {
                write!(f, "{} did not parse; reading it again", path.display())
            }
            Event::UsingUnexpiredToken { path, reason } => write!(
                f,
                "warning: {reason}; the access token in {} has not expired yet, so it is used until the next try",
                path.display()
            ),
            Event::LocksUnavailable { lock_path, reason } => write!(
                f,
                "warning: the lock {} may not exclude every process sharing the session: {reason}",
                lock_path.display()
            ),
            Event::LeaseInForce { lease_path, reason } => write!(
                f,
                "The lease {} guards refreshes: {reason}",
                lease_path.display()
            ),
            Event::UnlockFailed { lock_path, reason } => write!(
                f,
                "warning: could not release the lock {} ({reason}); it is released when the file is closed",
                lock_path.display()
            ),
        }
    }
}
