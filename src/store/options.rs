//! The settings of a store and their defaults: the lock mode, the margin, the timeouts, the
//! polling schedules. [`crate::Store`]'s `with_…` setters write them; the planner
//! ([`crate::LockPlan`]) and the refresh protocol read them.

use std::time::Duration;

use crate::file::filesystem::FsKind;

/// Whether and how refreshes are serialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LockMode {
    /// The advisory lock on a local filesystem. Where locks do not reach other machines
    /// (NFS without a lock manager, SMB, FUSE, …) or the filesystem refuses them, the lease
    /// file as well (or instead), said once ([`crate::Event::LeaseInForce`]). The
    /// `invalid_grant` fallback is always the last line. See [`crate::LockPlan`].
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
pub(crate) const DEFAULT_TORN_READ_RETRIES: [Duration; 4] = [
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
];

/// Pauses before looking again for a session file that is missing on Windows (see
/// `Store::load`).
pub(crate) const WINDOWS_REPLACE_PAUSES: [Duration; 4] = [
    Duration::from_millis(2),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(20),
];

/// The re-reads after `invalid_grant` on a network filesystem: attribute caches hold old data
/// for seconds (NFS `actimeo` defaults to 3 s), so the local 175 ms window is too short.
pub const NETWORK_POLL_SCHEDULE: [Duration; 7] = [
    Duration::ZERO,
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(2000),
];

/// Everything a [`crate::Store`] is configured with, apart from its path and its seams (clock,
/// transport, observer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) margin: Duration,
    pub(crate) lock_timeout: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) lock_mode: LockMode,
    /// Set by [`crate::Store::with_filesystem_kind`]: detection is skipped.
    pub(crate) filesystem_kind: Option<FsKind>,
    /// `None`: [`DEFAULT_POLL_SCHEDULE`] or [`NETWORK_POLL_SCHEDULE`], as the plan says.
    pub(crate) poll_schedule: Option<Vec<Duration>>,
    /// `None`: [`DEFAULT_TORN_READ_RETRIES`], or longer on a network filesystem.
    pub(crate) torn_read_retries: Option<Vec<Duration>>,
    /// Set by [`crate::Store::with_protection`]: how a new session is written. `None`: as the
    /// file there is (plain JSON if there is none).
    pub(crate) protection: Option<crate::protection::Protection>,
    /// How long a keychain call may take.
    pub(crate) keychain_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            margin: DEFAULT_MARGIN,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            lease_ttl: DEFAULT_LEASE_TTL,
            lock_mode: LockMode::Auto,
            filesystem_kind: None,
            poll_schedule: None,
            torn_read_retries: None,
            protection: None,
            keychain_timeout: crate::protection::DEFAULT_KEYCHAIN_TIMEOUT,
        }
    }
}
