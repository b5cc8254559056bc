//! Taking the guards the [`LockPlan`](crate::LockPlan) calls for: the advisory lock (which
//! orders the processes of one machine cheaply), then the lease (which reaches other machines
//! where locks do not). Each is a guard, released when dropped; while waiting for either, the
//! caller's check may end the wait with what another process saved.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Store;
use crate::basics::wait::Acquired;
use crate::error::Error;
use crate::file::lease::{self, HeldLease, LeaseFailure};
use crate::file::lock::{self, LockFailure, LockGuard};
use crate::store::options::LockMode;
use crate::trace;
use crate::trace::event::Event;

/// The guards, held: the critical section. A step run under guards its caller took (a
/// refresh's request and save, a revocation, the fallback's compare-and-delete) takes
/// `&Held`, and right before a step that must never overlap another holder's asks
/// [`Held::still_held`], the lease's fence. Dropping it releases the lease first (its
/// heartbeat, then its file; then its trace span ends), then the advisory lock: the reverse
/// of the order they were taken in.
#[must_use = "the guards are released as soon as this is dropped"]
#[derive(Debug)]
pub(crate) struct Held {
    lease: Option<(HeldLease, trace::Hold)>,
    _lock: Option<LockGuard>,
    /// The guard of a session kept on Redis (its only guard).
    #[cfg(feature = "redis")]
    redis: Option<crate::redis::Guard>,
}

impl Held {
    /// The fence: `Ok` if no lease is in force (the advisory lock only, or no guard), or if
    /// the lease is still ours ([`crate::file::lease::Fence::still_held`]). Otherwise
    /// [`Error::LeaseLost`]: the caller must neither send nor save.
    ///
    /// # Errors
    /// [`Error::LeaseLost`].
    pub(super) fn still_held(&self) -> Result<(), Error> {
        #[cfg(feature = "redis")]
        if let Some(guard) = &self.redis {
            return guard.still_held();
        }
        match &self.lease {
            Some((lease, _)) => lease.fence().still_held(),
            None => Ok(()),
        }
    }

    /// The Redis guard of a store on Redis, whose guards are taken by `take_guards_for`.
    #[cfg(feature = "redis")]
    pub(super) fn redis_guard(&self) -> &crate::redis::Guard {
        self.redis
            .as_ref()
            .expect("a store on Redis holds its Redis guard")
    }
}

impl Store {
    /// Takes every guard of the plan, for a write that never ends its wait early.
    pub(super) fn hold(&self) -> Result<Held, Error> {
        match self.take_guards(&|| None::<Infallible>)? {
            Acquired::Held(held) => Ok(held),
            Acquired::Resolved(never) => match never {},
        }
    }

    /// Takes every guard of the plan, unless `adopt`, asked while waiting, finds what the
    /// caller waits for.
    pub(super) fn take_guards<R>(
        &self,
        adopt: &dyn Fn() -> Option<R>,
    ) -> Result<Acquired<Held, R>, Error> {
        self.take_guards_for(self.options.lock_timeout, self.options.lease_ttl, adopt)
    }

    /// [`Store::take_guards`] with another wait and lease time-to-live (a login holds the
    /// guards for minutes, not for one request).
    pub(super) fn take_guards_for<R>(
        &self,
        wait: Duration,
        lease_ttl: Duration,
        adopt: &dyn Fn() -> Option<R>,
    ) -> Result<Acquired<Held, R>, Error> {
        #[cfg(feature = "redis")]
        if let super::Backend::Redis(entry) = &self.backend {
            return match crate::redis::acquire(entry, lease_ttl, wait, adopt) {
                Ok(Acquired::Held(guard)) => Ok(Acquired::Held(Held {
                    lease: None,
                    _lock: None,
                    redis: Some(guard),
                })),
                Ok(Acquired::Resolved(r)) => Ok(Acquired::Resolved(r)),
                Err(crate::redis::GuardFailure::Timeout(waited)) => Err(Error::LockTimeout {
                    lock_path: self.lock_path.clone(),
                    waited,
                }),
                Err(crate::redis::GuardFailure::Error(e)) => Err(e),
            };
        }
        let plan = self.lock_plan();
        if plan.degraded {
            self.say_once(&plan.reason);
        } else if plan.guards.lease() {
            self.say_lease_once(&plan.reason);
        }
        let mut use_lease = plan.guards.lease();
        let lock = if plan.guards.advisory() {
            let waiting = |blocked| {
                let lock_path = self.lock_path.clone();
                self.emit(match blocked {
                    lock::Blocked::Started => Event::WaitingForLock { lock_path },
                    lock::Blocked::Long(waited) => Event::StillWaitingForLock { lock_path, waited },
                });
            };
            let acquired = trace::Span::lock_wait(&self.lock_path).run(|| {
                lock::acquire(&self.lock_path, wait, self.observer.clone(), waiting, adopt)
            });
            match acquired {
                Ok(Acquired::Held(guard)) => Some(guard),
                Ok(Acquired::Resolved(r)) => return Ok(Acquired::Resolved(r)),
                // The filesystem refuses locks: in auto mode, the lease takes over.
                Err(LockFailure::Unsupported(e)) if plan.requested == LockMode::Auto => {
                    self.say_lease_once(&format!(
                        "the filesystem refuses locks ({e}), so the lease file is used instead; {}",
                        crate::store::lock_plan::LEASE_RELIES_ON
                    ));
                    use_lease = true;
                    None
                }
                Err(failure) => return Err(self.lock_error(failure)),
            }
        } else {
            None
        };
        let lease = if use_lease {
            let span = trace::Span::lease(&self.lease_path);
            let lease_acquired = lease::acquire(&self.lease_path, lease_ttl, wait, adopt);
            span.record(&lease_acquired);
            match lease_acquired {
                // The span stays open while the lease is held: the critical section nests in it.
                Ok(Acquired::Held(lease)) => Some((lease, span.hold())),
                Ok(Acquired::Resolved(r)) => return Ok(Acquired::Resolved(r)),
                Err(LeaseFailure::Timeout(waited)) => {
                    return Err(Error::LockTimeout {
                        lock_path: self.lease_path.clone(),
                        waited,
                    });
                }
                Err(LeaseFailure::Io(e)) => return Err(e),
            }
        } else {
            None
        };
        Ok(Acquired::Held(Held {
            lease,
            _lock: lock,
            #[cfg(feature = "redis")]
            redis: None,
        }))
    }

    /// The error for a lock that was not taken.
    fn lock_error(&self, failure: LockFailure) -> Error {
        match failure {
            LockFailure::Timeout(waited) => Error::LockTimeout {
                lock_path: self.lock_path.clone(),
                waited,
            },
            LockFailure::Io(e) => e,
            LockFailure::Unsupported(source) => Error::Io {
                action: "lock",
                path: self.lock_path.clone(),
                source,
            },
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
        let taken = lock::acquire(
            &self.lock_path,
            self.options.lock_timeout,
            self.observer.clone(),
            |_| (),
            &|| None::<Infallible>,
        );
        match taken {
            Ok(Acquired::Held(guard)) => {
                drop(guard);
                Ok(true)
            }
            Ok(Acquired::Resolved(never)) => match never {},
            Err(failure) => Err(self.lock_error(failure)),
        }
    }

    /// Reports the lease in force once per store (routine, where a degraded plan warns).
    fn say_lease_once(&self, reason: &str) {
        if !self.told_locks_unavailable.swap(true, Ordering::Relaxed) {
            self.emit(Event::LeaseInForce {
                lease_path: self.lease_path.clone(),
                reason: reason.to_owned(),
            });
        }
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
}
