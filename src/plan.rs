//! Which protection is in effect for a store, and why: decided once from the requested
//! [`LockMode`] and the filesystem.

use std::time::Duration;

use crate::filesystem::{self, Detected};
use crate::store::{LockMode, Store};

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

/// The protection in effect for a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockPlan {
    /// The mode asked for.
    pub requested: LockMode,
    /// What the filesystem is, and how that was found.
    pub filesystem: Detected,
    /// Whether the advisory lock is taken.
    pub advisory: bool,
    /// Whether the lease file is taken (after the advisory lock, if both).
    pub lease: bool,
    /// Whether the OS lock does not (or may not) reach every process sharing the file, so that
    /// other machines are guarded only by the lease (if [`LockPlan::lease`]) and the
    /// `invalid_grant` fallback.
    pub degraded: bool,
    /// Why, in a sentence.
    pub reason: String,
}

impl LockPlan {
    /// The plan for `store`: its lock mode and the filesystem that holds its file (or the
    /// kind forced by [`Store::with_filesystem_kind`]).
    #[must_use]
    pub fn for_store(store: &Store) -> LockPlan {
        let detected = match store.filesystem_kind() {
            Some(kind) => filesystem::Detected {
                kind: kind.clone(),
                evidence: "forced by Store::with_filesystem_kind".to_owned(),
            },
            None => filesystem::detect(store.path()),
        };
        LockPlan::decide(store.lock_mode(), detected)
    }

    /// The plan for `mode` on a filesystem of kind `filesystem`.
    #[must_use]
    pub fn decide(mode: LockMode, filesystem: Detected) -> LockPlan {
        let fs = filesystem.kind.name();
        let reliable = filesystem.kind.locks_are_reliable();
        let (advisory, lease, degraded, reason) = match mode {
            LockMode::Off => (false, false, true, "locks are off: concurrent refreshes are resolved only by the invalid_grant fallback".to_owned()),
            LockMode::Lease => (false, true, !reliable, format!("lease file on a {fs} filesystem, plus the invalid_grant fallback")),
            LockMode::Advisory if reliable => (true, false, false, format!("advisory lock on a {fs} filesystem")),
            LockMode::Advisory => (true, false, true, format!("advisory lock forced on a {fs} filesystem, whose locks may not reach other machines")),
            LockMode::Auto if reliable => (true, false, false, format!("advisory lock: the {fs} filesystem's locks are reliable")),
            LockMode::Auto => (true, true, true, format!("locks on a {fs} filesystem may not reach other machines: advisory lock, then a lease file, plus the invalid_grant fallback with longer polling")),
        };
        LockPlan {
            requested: mode,
            filesystem,
            advisory,
            lease,
            degraded,
            reason,
        }
    }

    /// One line: `auto: advisory lock (…)`.
    #[must_use]
    pub fn summary(&self) -> String {
        format!(
            "{}: {}{}",
            self.requested.name(),
            self.reason,
            if self.degraded {
                " [degraded: other machines are not excluded by the OS lock]"
            } else {
                ""
            }
        )
    }

    /// The default fallback schedule for this plan: longer where caches may be stale.
    #[must_use]
    pub fn default_poll_schedule(&self) -> Vec<Duration> {
        if self.filesystem.kind.is_networked()
            && self.filesystem.kind != crate::filesystem::FsKind::Unknown
        {
            NETWORK_POLL_SCHEDULE.to_vec()
        } else {
            crate::store::DEFAULT_POLL_SCHEDULE.to_vec()
        }
    }
}
