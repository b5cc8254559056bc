//! The only place that touches OS locks: an exclusive advisory lock on a sidecar file.
//!
//! The lock is taken on `<session file>.lock`, never on the session file itself: a write
//! renames a new inode over the session file, so a lock on the old inode would protect
//! nothing (and on Windows a lock on the data file would block readers). The lock file is
//! opened read-write (an exclusive lock on NFS needs a writable descriptor), created 0600,
//! never deleted, and holds no data.

//!
//! It is also the only module that touches `fd_lock` (clippy's `disallowed-methods` holds
//! the rest of the crate to that): the atomic writer marks its temp and set-aside files
//! through [`hold_until_closed`] and [`is_held_elsewhere`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::basics::wait::{self, Acquired, Attempt, Backoff, Waited};
use crate::error::Error;
use crate::file::checked_open::{check_dir_of, check_regular_and_owned, ensure_dir, open_error};
use crate::trace::event::{Event, Observer};

/// A wait a user notices (cargo's "Blocking waiting" appears at once; credlock's waits are
/// usually milliseconds, one per process at every expiry, so only a long one is said).
pub(crate) const NOTICEABLE_WAIT: Duration = Duration::from_secs(1);

/// What [`acquire`] tells its caller about waiting, at most once each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// The first try found the lock held.
    Started,
    /// The wait has lasted [`NOTICEABLE_WAIT`] or more (this long so far).
    Long(Duration),
}

/// Why the lock was not taken.
#[derive(Debug)]
pub(crate) enum LockFailure {
    /// Another holder kept it for the whole timeout.
    Timeout(Duration),
    /// The filesystem does not support locks (`ENOLCK`, `EOPNOTSUPP`, `ENOSYS`, `EBADF`).
    Unsupported(std::io::Error),
    /// Opening or creating the lock file failed.
    Io(Error),
}

impl crate::trace::Outcome for LockFailure {
    fn outcome(&self) -> Option<&'static str> {
        Some(match self {
            LockFailure::Timeout(_) => "timeout",
            LockFailure::Unsupported(_) => "unsupported",
            LockFailure::Io(e) => e.kind(),
        })
    }
}

/// The advisory lock, held. Dropping it releases the lock; an unlock the OS refuses is
/// reported as [`Event::UnlockFailed`] (closing the file, which follows, releases it anyway),
/// as cargo's `flock.rs` logs it rather than swallow it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub(crate) struct LockGuard {
    file: File,
    path: PathBuf,
    report: Option<Observer>,
    unlock: fn(&File) -> std::io::Result<()>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Err(e) = (self.unlock)(&self.file) {
            let event = Event::UnlockFailed {
                lock_path: self.path.clone(),
                reason: e.to_string(),
            };
            crate::trace::event(&event);
            if let Some(report) = &self.report {
                report(&event);
            }
        }
    }
}

#[cfg(unix)]
fn unlock(file: &File) -> std::io::Result<()> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::Unlock).map_err(std::io::Error::from)
}

#[cfg(not(unix))]
fn unlock(_file: &File) -> std::io::Result<()> {
    // Windows releases a handle's locks when it is closed, which the drop does next.
    Ok(())
}

/// Takes the lock at `lock_path`, or stops waiting when `while_waiting` finds what the caller
/// waits for.
///
/// Waiting is try-lock with jittered exponential backoff (1 ms growing to 20 ms) until
/// `timeout`. `on_blocked` runs once, the first time the lock is found busy, so the caller
/// can say it is waiting. Between attempts `while_waiting` runs; if it returns `Some`, the
/// wait ends without the lock: the refresh protocol uses this to adopt a session another
/// process just saved instead of queueing for a lock it no longer needs. `report` hears of a
/// failed unlock when the guard is dropped.
pub(crate) fn acquire<R>(
    lock_path: &Path,
    timeout: Duration,
    report: Option<Observer>,
    mut on_blocked: impl FnMut(Blocked),
    while_waiting: &dyn Fn() -> Option<R>,
) -> Result<Acquired<LockGuard, R>, LockFailure> {
    let file = open_lock_file(lock_path).map_err(LockFailure::Io)?;
    let attempt = || match try_lock(&file, true) {
        Ok(true) => Attempt::Done(Ok(())),
        Ok(false) => Attempt::Pending(()),
        Err(e) if means_locks_unsupported(&e) => Attempt::Done(Err(LockFailure::Unsupported(e))),
        Err(e) => Attempt::Done(Err(LockFailure::Io(Error::Io {
            action: "lock",
            path: lock_path.to_path_buf(),
            source: e,
        }))),
    };
    let mut told = None;
    let waiting = |waited| {
        match told {
            None => {
                on_blocked(Blocked::Started);
                told = Some(Blocked::Started);
            }
            Some(Blocked::Started) if waited >= NOTICEABLE_WAIT => {
                on_blocked(Blocked::Long(waited));
                told = Some(Blocked::Long(waited));
            }
            Some(_) => {}
        }
        while_waiting()
    };
    let pauses = Backoff::new(Duration::from_millis(1), Duration::from_millis(20));
    match wait::until(timeout, pauses, attempt, waiting) {
        Waited::Done(Ok(())) => Ok(Acquired::Held(LockGuard {
            file,
            path: lock_path.to_path_buf(),
            report,
            unlock,
        })),
        Waited::Done(Err(failure)) => Err(failure),
        Waited::Stopped(resolved, ()) => Ok(Acquired::Resolved(resolved)),
        Waited::TimedOut(waited, ()) => Err(LockFailure::Timeout(waited)),
    }
}

/// One non-blocking attempt at an exclusive lock on `file`: `Ok(true)` if taken, `Ok(false)`
/// if another holder has it. With `keep`, a lock taken stays until [`unlock`] or the file's
/// last descriptor closes; without, it is released at once.
#[allow(
    clippy::disallowed_methods,
    reason = "the one place credlock takes an OS lock"
)]
fn try_lock(file: &File, keep: bool) -> std::io::Result<bool> {
    let mut lock = fd_lock::RwLock::new(file);
    match lock.try_write() {
        Ok(guard) => {
            if keep {
                // flock belongs to the open file description: forgetting the guard keeps the
                // lock until the `LockGuard` unlocks it, or the file closes.
                std::mem::forget(guard);
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes an exclusive lock on `file` without blocking and keeps it until every descriptor of
/// that open file is closed; `false` if another holder has it. Marks temp files as in use.
pub(crate) fn hold_until_closed(file: &File) -> bool {
    file.try_clone()
        .is_ok_and(|clone| matches!(try_lock(&clone, true), Ok(true)))
}

/// Whether another open file holds an exclusive lock on `file`'s file (a set-aside file whose
/// compare-and-delete is still running). Takes no lock that outlives the call; a file that
/// cannot be locked at all counts as held.
pub(crate) fn is_held_elsewhere(file: &File) -> bool {
    file.try_clone()
        .is_ok_and(|clone| !matches!(try_lock(&clone, false), Ok(true)))
}

/// Opens (creating if needed) the lock file: read-write, mode 0600, directory 0700.
///
/// Like the session file, it is opened without following a symbolic link and without blocking
/// (a FIFO planted at the name would otherwise hang the open), and what was opened is checked
/// on the descriptor: a regular file, owned by the current user or root, in a directory that
/// is not writable by others without the sticky bit. Anything else is refused at once with
/// [`Error::NotASessionFile`] naming the lock file (or [`Error::Io`] for the directory).
pub(crate) fn open_lock_file(lock_path: &Path) -> Result<File, Error> {
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_dir(dir)?;
    }
    check_dir_of(lock_path)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600).custom_flags(
            (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
        );
    }
    let file = match opts.open(lock_path) {
        Ok(f) => f,
        // Opening a directory for writing fails with EISDIR: say what it is.
        Err(e) if std::fs::symlink_metadata(lock_path).is_ok_and(|m| m.is_dir()) => {
            let _ = e;
            return Err(Error::NotASessionFile {
                path: lock_path.to_path_buf(),
                reason: "it is a directory, not credlock's lock file".into(),
            });
        }
        Err(e) => return Err(open_error(lock_path, e)),
    };
    let meta = file
        .metadata()
        .map_err(Error::io("inspect the lock file", lock_path))?;
    check_regular_and_owned(&meta, lock_path)?;
    Ok(file)
}

/// Whether a lock call's error means "this filesystem has no working locks" rather than a
/// fault: cargo's `flock.rs` draws the same line (its issue #2615).
pub(crate) fn means_locks_unsupported(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        let unsupported = [Errno::NOLCK, Errno::OPNOTSUPP, Errno::NOSYS, Errno::BADF];
        e.raw_os_error()
            .is_some_and(|code| unsupported.iter().any(|u| u.raw_os_error() == code))
            || e.kind() == std::io::ErrorKind::Unsupported
    }
    #[cfg(not(unix))]
    {
        e.kind() == std::io::ErrorKind::Unsupported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by_another(path: &Path) -> File {
        let holder = open_lock_file(path).expect("open");
        assert!(hold_until_closed(&holder), "locked");
        holder
    }

    #[test]
    fn a_held_lock_times_out_with_the_time_waited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json.lock");
        let _held = held_by_another(&path);
        let mut blocked = vec![];
        let r = acquire(
            &path,
            Duration::from_millis(30),
            None,
            |b| blocked.push(b),
            &|| None::<()>,
        );
        assert!(matches!(r, Err(LockFailure::Timeout(w)) if w >= Duration::from_millis(30)));
        assert_eq!(blocked, [Blocked::Started]);
    }

    #[test]
    fn a_wait_is_told_when_it_starts_and_once_more_when_it_gets_noticeable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json.lock");
        let _held = held_by_another(&path);
        let mut blocked = vec![];
        let r = acquire(
            &path,
            NOTICEABLE_WAIT + Duration::from_millis(300),
            None,
            |b| blocked.push(b),
            &|| None::<()>,
        );
        assert!(matches!(r, Err(LockFailure::Timeout(_))));
        assert_eq!(blocked.len(), 2, "{blocked:?}");
        assert_eq!(blocked[0], Blocked::Started);
        assert!(
            matches!(blocked[1], Blocked::Long(w) if w >= NOTICEABLE_WAIT),
            "{blocked:?}"
        );
    }

    #[test]
    fn waiting_ends_when_the_caller_finds_what_it_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json.lock");
        let _held = held_by_another(&path);
        let polls = std::cell::Cell::new(0);
        let r = acquire(&path, Duration::from_secs(10), None, |_| (), &|| {
            polls.set(polls.get() + 1);
            (polls.get() == 3).then_some("adopted")
        });
        assert!(matches!(r, Ok(Acquired::Resolved("adopted"))));
    }

    #[test]
    fn the_lock_is_held_until_the_guard_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json.lock");
        let Ok(Acquired::Held(guard)) =
            acquire(&path, Duration::from_secs(1), None, |_| (), &|| None::<()>)
        else {
            panic!("taken");
        };
        let other = open_lock_file(&path).expect("open");
        assert!(is_held_elsewhere(&other), "held while the guard lives");
        drop(guard);
        assert!(!is_held_elsewhere(&other), "released on drop");
    }

    #[test]
    fn a_failed_unlock_is_reported_as_an_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json.lock");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&seen);
        let report: Observer = std::sync::Arc::new(move |e: &Event| {
            sink.lock().expect("lock").push(e.clone());
        });
        let Ok(Acquired::Held(mut guard)) =
            acquire(&path, Duration::from_secs(1), Some(report), |_| (), &|| {
                None::<()>
            })
        else {
            panic!("taken");
        };
        guard.unlock = |_| Err(std::io::Error::from_raw_os_error(37));
        drop(guard);
        let seen = seen.lock().expect("lock");
        assert!(
            matches!(&seen[..], [Event::UnlockFailed { lock_path, .. }] if *lock_path == path),
            "{seen:?}"
        );
        let other = open_lock_file(&path).expect("open");
        assert!(!is_held_elsewhere(&other), "closing released it anyway");
    }

    #[cfg(unix)]
    #[test]
    fn the_lock_file_is_created_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json.lock");
        drop(open_lock_file(&path).expect("open"));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
