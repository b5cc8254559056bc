//! The heartbeat: a held lease renewed from its own thread while the critical section runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use super::breaker::{BreakLock, break_ttl};
use super::lease_file::{Seen, inspect};
use super::record::{Holder, LeaseRecord};
use crate::basics::clock::unix_ms;
use crate::file::sidecar_names::with_suffix;

#[cfg(test)]
mod tests;

/// Renews a held lease from its own thread while the critical section runs, so that a
/// request slower than the TTL never outlives the lease. Each renewal rewrites the record
/// with the same nonce and a new creation time, under the breaker lock and only if the lease
/// still carries our nonce: a lease another process broke is never written back. A renewal
/// that finds the lease gone stops the heartbeat. Dropping the guard stops and joins it.
///
/// A paused or killed process stops renewing, which is what lets the others break its lease
/// once the TTL has passed; the fence then stops it, if it resumes, from sending or saving.
#[must_use = "the lease is renewed only while the heartbeat lives"]
#[derive(Debug)]
pub(crate) struct Heartbeat {
    stop: Arc<(Mutex<bool>, Condvar)>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts renewing the lease at `path` (ours, carrying `nonce`) every third of `ttl`,
    /// moving `expires_ms` on at each renewal.
    pub(crate) fn start(
        path: &Path,
        nonce: &str,
        ttl: Duration,
        expires_ms: &Arc<AtomicU64>,
    ) -> Heartbeat {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (path, nonce, expires_ms, stopped): (PathBuf, String, _, _) = (
            path.to_path_buf(),
            nonce.to_owned(),
            Arc::clone(expires_ms),
            Arc::clone(&stop),
        );
        let period = (ttl / 3).max(Duration::from_millis(1));
        let spawned = std::thread::Builder::new()
            .name("credlock-lease-heartbeat".into())
            .spawn(move || {
                let here = Holder::this_process();
                let mut pause = period;
                loop {
                    {
                        let (flag, wake) = &*stopped;
                        let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
                        let (guard, _) = wake
                            .wait_timeout_while(guard, pause, |stop| !*stop)
                            .unwrap_or_else(|e| e.into_inner());
                        if *guard {
                            return;
                        }
                    }
                    pause = match renew(&path, &nonce, ttl, &here) {
                        Renewal::Renewed { created_ms } => {
                            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                            expires_ms.store(created_ms.saturating_add(ttl_ms), Ordering::SeqCst);
                            period
                        }
                        // Another process broke it: nothing left to keep alive.
                        Renewal::Lost => return,
                        // The breaker lock is busy for a few milliseconds, or an I/O error:
                        // try again soon, well before the lease runs out.
                        Renewal::NotNow => (period / 8).max(Duration::from_millis(1)),
                    };
                }
            });
        Heartbeat {
            stop,
            // Without a thread (the system refused one) the lease is merely not renewed: it
            // protects us for its TTL, as before, and the fence still applies.
            thread: spawned.ok(),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one renewal attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Renewal {
    /// The record now carries this creation time (ms since the epoch, our clock).
    Renewed { created_ms: u64 },
    /// The lease no longer carries our nonce.
    Lost,
    /// Not now: the breaker lock is held by another process, or an I/O error.
    NotNow,
}

/// Renews our lease at `lease_path` once: under the breaker lock (so that no breaker judges
/// or renames it meanwhile), if it still carries `nonce`, replace it by rename with the same
/// record dated now. The rename is atomic: waiters read the old record or the new one.
fn renew(lease_path: &Path, nonce: &str, ttl: Duration, here: &Holder) -> Renewal {
    let Ok(Some(_breaking)) = BreakLock::take(lease_path, break_ttl(ttl), here) else {
        return Renewal::NotNow;
    };
    let mut record = match inspect(lease_path) {
        Ok(Seen::Record(r)) if r.nonce == nonce => r,
        Ok(_) => return Renewal::Lost,
        Err(_) => return Renewal::NotNow,
    };
    record.created_ms = unix_ms(SystemTime::now());
    match replace_record(lease_path, &record) {
        Ok(()) => Renewal::Renewed {
            created_ms: record.created_ms,
        },
        Err(_) => Renewal::NotNow,
    }
}

/// Writes `record` to a staging file next to `lease_path`, synced, and renames it over the
/// lease. Only for a lease we hold, under the breaker lock.
fn replace_record(lease_path: &Path, record: &LeaseRecord) -> std::io::Result<()> {
    let staging = with_suffix(lease_path, &format!(".{}.renew", record.nonce));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts.open(&staging).and_then(|mut f| {
        f.write_all(&record.to_json())?;
        crate::file::durable::sync_durably(&f)
    });
    let renamed = written.and_then(|()| {
        crate::file::busy::retry_while_busy(|| crate::file::atomic::rename(&staging, lease_path))
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    renamed
}
