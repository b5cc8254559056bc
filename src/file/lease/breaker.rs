//! Breaking a stale lease: serialised by the breaker lock `<session file>.lease.break`, so
//! that what was judged stale is what gets removed.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::lease_file::{Seen, create_exclusive, inspect};
use super::record::{Holder, LeaseRecord};
use crate::basics::clock::unix_ms;
use crate::error::Error;
use crate::file::sidecar_names::{break_path_for, unique_token, with_suffix};

/// The breaker lock's time-to-live: the lease's, at most 30 s. It guards a few file operations,
/// so only a crashed breaker on another machine (a dead one on this machine is seen at once)
/// or one paused that long is broken.
pub(crate) fn break_ttl(lease_ttl: Duration) -> Duration {
    lease_ttl.min(Duration::from_secs(30))
}

/// The breaker lock, held: dropping it removes it if it is still ours.
#[derive(Debug)]
pub(crate) struct BreakLock {
    path: PathBuf,
    nonce: String,
}

impl BreakLock {
    /// One attempt at the breaker lock of `lease_path`: `None` if another process holds it
    /// (a stale one is broken first, and the attempt repeated once).
    pub(crate) fn take(
        lease_path: &Path,
        ttl: Duration,
        here: &Holder,
    ) -> Result<Option<BreakLock>, Error> {
        let path = break_path_for(lease_path);
        // The breaker lock has no breaker of its own: a stale one is set aside directly.
        let set_aside = |seen: &Seen| set_aside_if(&path, |now| same_lease(now, seen)).map(drop);
        let taken = take_file(&path, ttl, here, set_aside)?;
        Ok(taken.map(|record| BreakLock {
            path,
            nonce: record.nonce,
        }))
    }
}

impl Drop for BreakLock {
    fn drop(&mut self) {
        let nonce = &self.nonce;
        let _ = set_aside_if(
            &self.path,
            |seen| matches!(seen, Seen::Record(r) if r.nonce == *nonce),
        );
    }
}

/// Whether what a lease file holds no longer protects anyone: a stale record, or an
/// unreadable file (left empty or torn by a writer that died) older than the TTL. Its content
/// cannot date it, so its modification time does, by our clock; a lease being written this
/// instant is far younger than any TTL.
pub(crate) fn is_breakable(seen: &Seen, ttl: Duration, here: &Holder) -> bool {
    match seen {
        Seen::Absent => false,
        Seen::Record(r) => r.is_stale(SystemTime::now(), here),
        Seen::Unreadable { modified_ms } => modified_ms.is_none_or(|m| {
            let (now, ttl) = (
                unix_ms(SystemTime::now()),
                u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            );
            now > m.saturating_add(ttl) || m > now.saturating_add(ttl)
        }),
    }
}

/// Breaks the stale lease at `lease_path`, if it is still there and still stale once we hold
/// the breaker lock. Returns without breaking anything if another process holds that lock.
pub(crate) fn break_stale(lease_path: &Path, ttl: Duration, here: &Holder) -> Result<(), Error> {
    let Some(_breaking) = BreakLock::take(lease_path, break_ttl(ttl), here)? else {
        return Ok(());
    };
    // Judged again under the breaker lock: another breaker may have broken it and a new
    // holder taken the name since we looked. From here until the rename, nobody else can
    // remove what is there, and nothing can replace it.
    let judged = inspect(lease_path)?;
    if !is_breakable(&judged, ttl, here) {
        return Ok(());
    }
    if set_aside_if(lease_path, |seen| same_lease(seen, &judged))? {
        crate::trace::lease_broken(lease_path);
    }
    Ok(())
}

fn same_lease(a: &Seen, b: &Seen) -> bool {
    match (a, b) {
        (Seen::Record(x), Seen::Record(y)) => x.nonce == y.nonce,
        (Seen::Unreadable { .. }, Seen::Unreadable { .. }) => true,
        _ => false,
    }
}

/// Takes the lease-like file at `path` (a lease or a breaker lock) once: the record we wrote
/// if we now hold it, `None` if a live one is in the way. A stale one is removed first by
/// `remove_stale` (given what was judged stale), and the attempt repeated once.
pub(super) fn take_file(
    path: &Path,
    ttl: Duration,
    here: &Holder,
    remove_stale: impl Fn(&Seen) -> Result<(), Error>,
) -> Result<Option<LeaseRecord>, Error> {
    for _ in 0..2 {
        let record = here.record(ttl);
        if create_exclusive(path, &record)? {
            return Ok(Some(record));
        }
        match inspect(path)? {
            // Just released: try again.
            Seen::Absent => {}
            // An NFS retransmission can report EEXIST for a link that went through.
            Seen::Record(existing) if existing.nonce == record.nonce => return Ok(Some(record)),
            seen if is_breakable(&seen, ttl, here) => remove_stale(&seen)?,
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Removes the file at `path` if what a rename moves aside is what `judged` accepts: rename
/// it to a unique name (only one rename of the name can succeed), check, then delete it or
/// put it back with a no-replace rename (never over a newer file; see
/// [`crate::file::atomic::put_back`]). A file that did not match and cannot be put back is left at
/// its aside name (`<path>.broken.<pid>-<nanos>-<n>`), and the error names it. Returns whether it
/// removed the file.
pub(crate) fn set_aside_if(path: &Path, judged: impl Fn(&Seen) -> bool) -> Result<bool, Error> {
    let aside = with_suffix(path, &format!(".broken.{}", unique_token()));
    match crate::file::busy::retry_while_busy(|| crate::file::atomic::rename(path, &aside)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("set aside", path)(e)),
    }
    if inspect(&aside).is_ok_and(|seen| judged(&seen)) {
        std::fs::remove_file(&aside).map_err(Error::io("remove", &aside))?;
        return Ok(true);
    }
    crate::file::atomic::put_back(&aside, path)
        .map_err(|e| crate::file::atomic::left_aside(&aside, path, e))?;
    Ok(false)
}
