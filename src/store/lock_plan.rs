//! Which guards protect a refresh, and why: decided once per store from the requested
//! [`LockMode`] and the filesystem that holds the session file.

use std::path::Path;
use std::time::Duration;

use crate::file::filesystem::{self, Detected, FsKind};
use crate::store::options::{DEFAULT_POLL_SCHEDULE, LockMode, NETWORK_POLL_SCHEDULE};

/// The guards a refresh (and every write) is taken under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Guards {
    /// The advisory lock on the sidecar `<file>.lock`.
    Advisory,
    /// The advisory lock (which orders the processes of one machine cheaply), then the lease
    /// file (which reaches other machines where locks do not).
    AdvisoryThenLease,
    /// The lease file only.
    LeaseOnly,
    /// Nothing: concurrent refreshes are resolved only by the `invalid_grant` fallback.
    None,
    /// The guard key on the server that keeps the session (Redis, `docs/fleet.md`): set if
    /// absent with a time-to-live, renewed while held, removed by its owner only, fenced.
    ServerKey,
}

impl Guards {
    /// Whether the advisory lock is taken.
    #[must_use]
    pub fn advisory(self) -> bool {
        matches!(self, Guards::Advisory | Guards::AdvisoryThenLease)
    }

    /// Whether the lease file is taken (after the advisory lock, if both).
    #[must_use]
    pub fn lease(self) -> bool {
        matches!(self, Guards::AdvisoryThenLease | Guards::LeaseOnly)
    }
}

/// What the lease relies on, said wherever it is in force.
pub(crate) const LEASE_RELIES_ON: &str =
    "the lease relies on the machines' clocks agreeing within its time-to-live (120 s by default)";

/// The protection in effect for a store: the guards, and the reason for them beside them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockPlan {
    /// The mode asked for.
    pub requested: LockMode,
    /// What the filesystem is, and how that was found.
    pub filesystem: Detected,
    /// The guards taken.
    pub guards: Guards,
    /// Whether the guards may not exclude every process sharing the file: locks are off, or
    /// an advisory lock alone is taken where it may not reach other machines, so that only
    /// the `invalid_grant` fallback stands between two machines refreshing at once. A plan
    /// with the lease in force ([`Guards::lease`]) is not degraded: the lease reaches every
    /// machine, relying on their clocks agreeing within its time-to-live
    /// (`docs/filesystems.md`).
    pub degraded: bool,
    /// Why, in a sentence.
    pub reason: String,
}

impl LockPlan {
    /// The plan of a session kept on a server (Redis): its guard key, whatever `mode` asks
    /// (the lock modes are about files).
    #[must_use]
    pub(crate) fn on_server(mode: LockMode) -> LockPlan {
        LockPlan {
            requested: mode,
            filesystem: Detected {
                kind: FsKind::Unknown,
                evidence: "the session is kept on a Redis server, not in a file".to_owned(),
            },
            guards: Guards::ServerKey,
            degraded: false,
            reason: "a guard key on the Redis server, renewed while held and fenced, which every instance using the server sees (the lock modes apply to files only)".to_owned(),
        }
    }

    /// The plan for `mode` and the session file at `path`: its filesystem is detected, unless
    /// `forced` names it (as [`crate::Store::with_filesystem_kind`] does).
    #[must_use]
    pub(crate) fn for_path(mode: LockMode, forced: Option<&FsKind>, path: &Path) -> LockPlan {
        let detected = match forced {
            Some(kind) => Detected {
                kind: kind.clone(),
                evidence: "forced by Store::with_filesystem_kind".to_owned(),
            },
            None => filesystem::detect(path),
        };
        LockPlan::decide(mode, detected)
    }

    /// The plan for `mode` on a filesystem of kind `filesystem`.
    #[must_use]
    pub fn decide(mode: LockMode, filesystem: Detected) -> LockPlan {
        let fs = filesystem.kind.name();
        let reliable = filesystem.kind.locks_are_reliable();
        let (guards, degraded, reason) = match mode {
            LockMode::Off => (Guards::None, true, "locks are off: concurrent refreshes are resolved only by the invalid_grant fallback".to_owned()),
            LockMode::Lease => (Guards::LeaseOnly, false, format!("lease file on a {fs} filesystem, plus the invalid_grant fallback; {LEASE_RELIES_ON}")),
            LockMode::Advisory if reliable => (Guards::Advisory, false, format!("advisory lock on a {fs} filesystem")),
            LockMode::Advisory => (Guards::Advisory, true, format!("advisory lock forced on a {fs} filesystem, whose locks may not reach other machines")),
            LockMode::Auto if reliable => (Guards::Advisory, false, format!("advisory lock: the {fs} filesystem's locks are reliable")),
            LockMode::Auto => (Guards::AdvisoryThenLease, false, format!("locks on a {fs} filesystem may not reach other machines: advisory lock, then a lease file, plus the invalid_grant fallback with longer polling; {LEASE_RELIES_ON}")),
        };
        LockPlan {
            requested: mode,
            filesystem,
            guards,
            degraded,
            reason,
        }
    }

    /// One line: `auto: advisory lock (…)`, and `[degraded: …]` where the guards may not
    /// exclude every process.
    #[must_use]
    pub fn summary(&self) -> String {
        format!(
            "{}: {}{}",
            self.requested.name(),
            self.reason,
            if self.degraded {
                " [degraded: other machines are not excluded]"
            } else {
                ""
            }
        )
    }

    /// The default fallback schedule for this plan: longer where caches may be stale.
    #[must_use]
    pub fn default_poll_schedule(&self) -> Vec<Duration> {
        if self.filesystem.kind.is_networked() && self.filesystem.kind != FsKind::Unknown {
            NETWORK_POLL_SCHEDULE.to_vec()
        } else {
            DEFAULT_POLL_SCHEDULE.to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(kind: FsKind) -> Detected {
        Detected {
            kind,
            evidence: "test".to_owned(),
        }
    }

    #[test]
    fn each_mode_and_filesystem_gets_its_guards() {
        let cases = [
            (LockMode::Auto, FsKind::Local, Guards::Advisory, false),
            (
                LockMode::Auto,
                FsKind::Smb,
                Guards::AdvisoryThenLease,
                false,
            ),
            (LockMode::Advisory, FsKind::Local, Guards::Advisory, false),
            (LockMode::Advisory, FsKind::Smb, Guards::Advisory, true),
            (LockMode::Lease, FsKind::Local, Guards::LeaseOnly, false),
            (LockMode::Lease, FsKind::Smb, Guards::LeaseOnly, false),
            (LockMode::Off, FsKind::Local, Guards::None, true),
        ];
        for (mode, kind, guards, degraded) in cases {
            let plan = LockPlan::decide(mode, on(kind.clone()));
            assert_eq!(
                (plan.guards, plan.degraded),
                (guards, degraded),
                "{mode:?} on {kind:?}"
            );
        }
    }
}
