//! A lock that works across machines without a lock manager: the lease file.
//!
//! On NFS without a lock manager, SMB or FUSE, `flock` does not reach other machines, but
//! atomic name operations do: creating a link that already exists fails with `EEXIST`
//! everywhere, and a rename is atomic. So a refresh first creates `<session file>.lease`,
//! holding who took it and when. Others wait by re-reading it (and the session: once the
//! holder's new session is visible they use it and stop waiting).
//!
//! A lease is stale once its time-to-live has passed, or at once when its holder is provably
//! gone: a process of this boot of this machine, in this PID namespace, that no longer
//! exists, or a lease taken before this machine last booted. "This machine" is its machine id
//! (`/etc/machine-id`), never its host name, which clones and containers share.
//!
//! The lease file appears with its content in one step: it is written to a temp file first
//! and hard-linked to the lease name (atomic, and fails with `EEXIST` if taken), so a waiter
//! never reads a half-written lease. Filesystems without hard links fall back to
//! `O_CREAT|O_EXCL` and then write.
//!
//! Removing a lease, to break a stale one or to release one's own, is serialised by a second,
//! short-lived lease, the breaker lock `<session file>.lease.break`: while it is held the lease
//! name can change only by creation (which cannot replace a lease), so what was judged under
//! it is what gets removed. The holder is fenced: right before it sends a refresh and right
//! before it saves, it checks that the lease still holds its nonce ([`Fence`], a value inside
//! the [`HeldLease`], and so inside the store's held guards).
//!
//! A holder keeps its lease alive while its critical section runs: a heartbeat thread renews
//! the record (same nonce, new creation time) every third of the TTL, under the breaker lock
//! and only while the lease still carries its nonce (`heartbeat.rs`). A request slower than
//! the TTL therefore never outlives the lease; a holder that is paused or killed stops
//! renewing, which is what lets the others break its lease.
//!
//! - `record.rs`: what a lease holds, and who we are (machine id, boot, PID namespace);
//! - `lease_file.rs`: creating and reading the lease file;
//! - `breaker.rs`: breaking a stale lease under the breaker lock;
//! - `fence.rs`: the fence a holder checks before it sends or saves;
//! - `heartbeat.rs`: renewing a held lease while its critical section runs.

mod breaker;
mod fence;
mod heartbeat;
mod lease_file;
mod record;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::basics::wait::{self, Acquired, Attempt, Backoff, Waited};
use crate::error::Error;
use breaker::{BreakLock, break_stale, break_ttl, set_aside_if, take_file};
pub(crate) use fence::Fence;
use heartbeat::Heartbeat;
use lease_file::{Seen, inspect};
pub use record::{Holder, LeaseRecord};

/// Why a lease was not taken.
#[derive(Debug)]
pub(crate) enum LeaseFailure {
    Timeout(Duration),
    Io(Error),
}

impl crate::trace::Outcome for LeaseFailure {
    fn outcome(&self) -> Option<&'static str> {
        Some(match self {
            LeaseFailure::Timeout(_) => "timeout",
            LeaseFailure::Io(e) => e.kind(),
        })
    }
}

/// The lease, held: the lease file is ours, a heartbeat renews it, and its [`Fence`] says
/// whether it is still ours. Dropping it stops and joins the heartbeat, then removes the
/// lease file if it is still ours (on every path, panics included).
#[must_use = "the lease is released as soon as this is dropped"]
#[derive(Debug)]
pub(crate) struct HeldLease {
    fence: Fence,
    // Dropped in declaration order: the heartbeat goes before the file it renews.
    _heartbeat: Heartbeat,
    _lease: OwnLease,
}

impl HeldLease {
    /// The fence to check right before a step that must never overlap another holder's.
    pub(crate) fn fence(&self) -> &Fence {
        &self.fence
    }
}

/// Takes the lease at `lease_path`, or stops waiting when `while_waiting` finds what the
/// caller waits for (as [`crate::file::lock::acquire`] does), within `timeout`.
pub(crate) fn acquire<R>(
    lease_path: &Path,
    ttl: Duration,
    timeout: Duration,
    while_waiting: &dyn Fn() -> Option<R>,
) -> Result<Acquired<HeldLease, R>, LeaseFailure> {
    let here = Holder::this_process();
    let attempt = || match try_acquire(lease_path, ttl, &here) {
        Ok(Some(lease)) => Attempt::Done(Ok(lease)),
        Ok(None) => Attempt::Pending(()),
        Err(e) => Attempt::Done(Err(LeaseFailure::Io(e))),
    };
    let pauses = Backoff::new(Duration::from_millis(2), Duration::from_millis(50));
    match wait::until(timeout, pauses, attempt, |_| while_waiting()) {
        Waited::Done(Ok(lease)) => Ok(Acquired::Held(HeldLease {
            fence: Fence::new(&lease.path, &lease.nonce, Arc::clone(&lease.expires_ms)),
            _heartbeat: lease.keep_alive(),
            _lease: lease,
        })),
        Waited::Done(Err(failure)) => Err(failure),
        Waited::Stopped(resolved, ()) => Ok(Acquired::Resolved(resolved)),
        Waited::TimedOut(waited, ()) => Err(LeaseFailure::Timeout(waited)),
    }
}

/// The lease file this process created. Dropping it removes the file if it is still ours.
#[must_use = "the lease is released when this is dropped"]
#[derive(Debug)]
pub(crate) struct OwnLease {
    path: PathBuf,
    nonce: String,
    /// When the lease runs out by our clock; the heartbeat moves it on at each renewal.
    expires_ms: Arc<AtomicU64>,
    ttl: Duration,
}

impl OwnLease {
    /// Starts renewing the lease every third of its TTL until the returned guard drops.
    fn keep_alive(&self) -> Heartbeat {
        Heartbeat::start(&self.path, &self.nonce, self.ttl, &self.expires_ms)
    }
}

impl Drop for OwnLease {
    fn drop(&mut self) {
        held_registry().retain(|(path, nonce, _)| !(*path == self.path && *nonce == self.nonce));
        release(&self.path, &self.nonce, self.ttl);
    }
}

/// Removes the lease at `path` if it still carries `nonce`. Only our own lease: if we were
/// paused past the TTL, another process may have broken it and taken a new one, which must
/// stay. Under the breaker lock nobody else removes the lease, so what we read is what we
/// remove.
fn release(path: &Path, nonce: &str, ttl: Duration) {
    let here = Holder::this_process();
    let ttl = break_ttl(ttl);
    let attempt = || match BreakLock::take(path, ttl, &here) {
        Ok(Some(breaking)) => Attempt::Done(Some(breaking)),
        Ok(None) => Attempt::Pending(()),
        Err(_) => Attempt::Done(None),
    };
    let pauses = Backoff::new(Duration::from_millis(1), Duration::from_millis(20));
    let waited = wait::until(ttl + Duration::from_secs(1), pauses, attempt, |_| {
        None::<Infallible>
    });
    // An I/O error, or a breaker holding on past its TTL: leave the lease, which its TTL
    // ends (or, on this machine, our exit).
    let Waited::Done(Some(_breaking)) = waited else {
        return;
    };
    let ours = |seen: &Seen| matches!(seen, Seen::Record(r) if r.nonce == *nonce);
    if inspect(path).is_ok_and(|seen| ours(&seen)) {
        let _ = set_aside_if(path, ours);
    }
}

/// The leases this process holds (path, nonce, TTL), for [`release_held_leases`].
type HeldRegistry = std::sync::Mutex<Vec<(PathBuf, String, Duration)>>;

fn held_registry() -> std::sync::MutexGuard<'static, Vec<(PathBuf, String, Duration)>> {
    static HELD: HeldRegistry = std::sync::Mutex::new(Vec::new());
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Releases every lease this process holds, as dropping them would: for a process about to
/// exit on a signal (Ctrl-C, SIGTERM) in the middle of a critical section, whose
/// destructors will not run. On this machine a dead holder's lease is broken at once
/// anyway; other machines would otherwise wait for its time-to-live. The advisory lock
/// needs nothing: the OS releases it with the process.
pub fn release_held_leases() {
    let held = std::mem::take(&mut *held_registry());
    for (path, nonce, ttl) in held {
        release(&path, &nonce, ttl);
    }
}

/// One attempt: `Some` if we now hold the lease; `None` if a live lease is in the way (a
/// stale one is broken first, under the breaker lock, and the attempt repeated once).
pub(crate) fn try_acquire(
    lease_path: &Path,
    ttl: Duration,
    here: &Holder,
) -> Result<Option<OwnLease>, Error> {
    let taken = take_file(lease_path, ttl, here, |_| {
        break_stale(lease_path, ttl, here)
    })?;
    Ok(taken.map(|record| held(lease_path, &record, ttl)))
}

fn held(lease_path: &Path, record: &LeaseRecord, ttl: Duration) -> OwnLease {
    held_registry().push((lease_path.to_path_buf(), record.nonce.clone(), ttl));
    OwnLease {
        path: lease_path.to_path_buf(),
        nonce: record.nonce.clone(),
        expires_ms: Arc::new(AtomicU64::new(
            record
                .created_ms
                .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        )),
        ttl,
    }
}
