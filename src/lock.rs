//! The only place that touches OS locks: an exclusive advisory lock on a sidecar file.
//!
//! The lock is taken on `<session file>.lock`, never on the session file itself: a write
//! renames a new inode over the session file, so a lock on the old inode would protect
//! nothing (and on Windows a lock on the data file would block readers). The lock file is
//! opened read-write (an exclusive lock on NFS needs a writable descriptor), created 0600,
//! never deleted, and holds no data.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::Error;

/// The sidecar lock file of a session file: `<path>.lock`.
#[must_use]
pub fn lock_path_for(path: &Path) -> PathBuf {
    let mut os = path.as_os_str().to_owned();
    os.push(".lock");
    PathBuf::from(os)
}

/// How waiting for the lock ended.
#[derive(Debug)]
pub(crate) enum Locked<T, R> {
    /// The lock was taken, the critical section ran, the lock was released.
    Ran(T),
    /// While waiting, the caller's check found what it was waiting for (another process's
    /// fresh session) and waiting stopped without taking the lock.
    Resolved(R),
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

/// Takes the lock at `lock_path`, runs `critical` while holding it, releases it.
///
/// Waiting is try-lock with jittered exponential backoff (1 ms growing to 20 ms) until
/// `timeout`. `on_blocked` runs once, the first time the lock is found busy, so the caller
/// can say it is waiting. Between attempts `while_waiting` runs; if it returns `Some`, the
/// wait ends without the lock: the refresh protocol uses this to adopt a session another
/// process just saved instead of queueing for a lock it no longer needs.
pub(crate) fn with_lock<T, R>(
    lock_path: &Path,
    timeout: Duration,
    mut while_waiting: impl FnMut() -> Option<R>,
    on_blocked: impl FnOnce(),
    critical: impl FnOnce() -> T,
) -> Result<Locked<T, R>, LockFailure> {
    let file = open_lock_file(lock_path).map_err(LockFailure::Io)?;
    let mut lock = fd_lock::RwLock::new(file);
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(20));
    let mut on_blocked = Some(on_blocked);
    loop {
        match lock.try_write() {
            Ok(guard) => {
                let out = critical();
                drop(guard);
                return Ok(Locked::Ran(out));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if means_locks_unsupported(&e) => return Err(LockFailure::Unsupported(e)),
            Err(e) => {
                return Err(LockFailure::Io(Error::Io {
                    action: "lock",
                    path: lock_path.to_path_buf(),
                    source: e,
                }));
            }
        }
        if let Some(notify) = on_blocked.take() {
            notify();
        }
        if let Some(resolved) = while_waiting() {
            return Ok(Locked::Resolved(resolved));
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(LockFailure::Timeout(waited));
        }
        let pause = backoff.next().unwrap_or(Duration::from_millis(20));
        std::thread::sleep(pause.min(timeout - waited));
    }
}

/// Takes an exclusive lock on `file` without blocking and keeps it until every descriptor of
/// that open file is closed; `false` if another holder has it. Marks temp files as in use.
pub(crate) fn try_hold_until_closed(file: &File) -> bool {
    let Ok(clone) = file.try_clone() else {
        return false;
    };
    let mut lock = fd_lock::RwLock::new(clone);
    match lock.try_write() {
        Ok(guard) => {
            // flock belongs to the open file description: forgetting the guard keeps the lock
            // until the last descriptor (the caller's `file`) closes.
            std::mem::forget(guard);
            true
        }
        Err(_) => false,
    }
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
        crate::atomic::ensure_dir(dir)?;
    }
    crate::atomic::check_dir_of(lock_path)?;
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
        Err(e) => return Err(crate::atomic::open_error(lock_path, e)),
    };
    let meta = file
        .metadata()
        .map_err(Error::io("inspect the lock file", lock_path))?;
    crate::atomic::check_regular_and_owned(&meta, lock_path)?;
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

/// Jittered exponential backoff: each pause is drawn from [d/2, d], d growing 1.5× per step
/// up to `max`. An iterator, so it can be tested without sleeping.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        Backoff {
            next: first,
            max,
            rng: seed | 1,
        }
    }

    fn random_unit(&mut self) -> f64 {
        // xorshift64*: plenty for spreading waiters apart, and no dependency.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = self.next.mul_f64(1.5).min(self.max);
        Some(d.mul_f64(0.5 + 0.5 * self.random_unit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_stays_jittered_within_bounds() {
        let max = Duration::from_millis(20);
        let pauses: Vec<_> = Backoff::new(Duration::from_millis(1), max)
            .take(50)
            .collect();
        assert!(
            pauses
                .iter()
                .all(|p| *p <= max && *p >= Duration::from_micros(500))
        );
        assert!(pauses[40..].iter().all(|p| *p >= max / 2));
        assert!(pauses[0] <= Duration::from_millis(1));
    }

    #[test]
    fn a_held_lock_times_out_with_the_time_waited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json.lock");
        let mut holder = fd_lock::RwLock::new(open_lock_file(&path).expect("open"));
        let _held = holder.write().expect("lock");
        let mut blocked = 0;
        let r = with_lock(
            &path,
            Duration::from_millis(30),
            || None::<()>,
            || blocked += 1,
            || (),
        );
        assert!(matches!(r, Err(LockFailure::Timeout(w)) if w >= Duration::from_millis(30)));
        assert_eq!(blocked, 1);
    }

    #[test]
    fn waiting_ends_when_the_caller_finds_what_it_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json.lock");
        let mut holder = fd_lock::RwLock::new(open_lock_file(&path).expect("open"));
        let _held = holder.write().expect("lock");
        let mut polls = 0;
        let r = with_lock(
            &path,
            Duration::from_secs(10),
            || {
                polls += 1;
                (polls == 3).then_some("adopted")
            },
            || (),
            || "ran",
        );
        assert!(matches!(r, Ok(Locked::Resolved("adopted"))));
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
