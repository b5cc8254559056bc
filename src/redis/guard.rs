//! The guard of one session on Redis: `SET guard token NX PX ttl`, renewed every third of the
//! TTL by a heartbeat while the critical section runs, and removed on drop by a script that
//! compares the token (a holder that lost its guard never removes the next holder's).
//!
//! The fence: right before a step that must never overlap another holder's (sending the
//! refresh, an unconditional write), [`Guard::still_held`] checks that our TTL has not run
//! out by our own clock and that the guard key still holds our token. The saves and deletes
//! check the token again inside their scripts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::conn::{Failure, Value};
use super::{Entry, GuardFailure, Written, scripts};
use crate::basics::clock::unix_ms;
use crate::basics::wait::{self, Acquired, Attempt, Backoff, Waited};
use crate::error::Error;

/// The guard, held. Dropping it stops the heartbeat and removes the guard if it is still ours.
#[must_use = "the guard is released as soon as this is dropped"]
pub(crate) struct Guard {
    entry: Entry,
    token: String,
    ttl: Duration,
    expires_ms: Arc<AtomicU64>,
    lost: Arc<AtomicBool>,
    heartbeat: Option<(Sender<()>, JoinHandle<()>)>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("guard", &self.entry.guard_key)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn new_token() -> String {
    let mut bytes = [0u8; 16];
    // OS randomness; if it ever failed, the time and PID still make the token unique enough
    // to tell holders apart.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        let t = unix_ms(SystemTime::now()).to_le_bytes();
        bytes[..8].copy_from_slice(&t);
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Takes the guard of `entry` for `ttl` (renewed by a heartbeat while held), waiting up to
/// `timeout`; while waiting, `adopt` may end the wait with what another holder saved, and once
/// the wait is over it is asked once more before the wait counts as timed out.
pub(crate) fn acquire<R>(
    entry: &Entry,
    ttl: Duration,
    timeout: Duration,
    adopt: &dyn Fn() -> Option<R>,
) -> Result<Acquired<Guard, R>, GuardFailure> {
    let token = new_token();
    let ttl_ms = ms(ttl).max(1).to_string();
    let attempt = || {
        let before = SystemTime::now();
        let set = entry.server.call(&[
            b"SET",
            entry.guard_key.as_bytes(),
            token.as_bytes(),
            b"NX",
            b"PX",
            ttl_ms.as_bytes(),
        ]);
        match set {
            Ok(Value::Nil) => Attempt::Pending(()),
            Ok(_) => Attempt::Done(Ok(unix_ms(before).saturating_add(ms(ttl)))),
            Err(f) => Attempt::Done(Err(entry.error(f))),
        }
    };
    let pauses = Backoff::new(Duration::from_millis(2), Duration::from_millis(50));
    match wait::until(timeout, pauses, attempt, |_| adopt()) {
        Waited::Done(Ok(expires)) => Ok(Acquired::Held(Guard::start(entry, token, ttl, expires))),
        Waited::Done(Err(e)) => Err(GuardFailure::Error(e)),
        Waited::Stopped(resolved, ()) => Ok(Acquired::Resolved(resolved)),
        // The holder may have saved just now: look once more before failing.
        Waited::TimedOut(waited, ()) => match adopt() {
            Some(resolved) => Ok(Acquired::Resolved(resolved)),
            None => Err(GuardFailure::Timeout(waited)),
        },
    }
}

impl Guard {
    fn start(entry: &Entry, token: String, ttl: Duration, expires: u64) -> Guard {
        let expires_ms = Arc::new(AtomicU64::new(expires));
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let heartbeat = {
            let entry = entry.clone();
            let token = token.clone();
            let expires_ms = Arc::clone(&expires_ms);
            let lost = Arc::clone(&lost);
            std::thread::Builder::new()
                .name("credlock-redis-heartbeat".to_owned())
                .spawn(move || {
                    let every = (ttl / 3).max(Duration::from_millis(1));
                    let ttl_ms = ms(ttl).max(1).to_string();
                    loop {
                        match stopped.recv_timeout(every) {
                            Err(RecvTimeoutError::Timeout) => {}
                            _ => return,
                        }
                        let before = SystemTime::now();
                        let renewed = entry.server.call(&[
                            b"EVAL",
                            scripts::RENEW.as_bytes(),
                            b"1",
                            entry.guard_key.as_bytes(),
                            token.as_bytes(),
                            ttl_ms.as_bytes(),
                        ]);
                        match renewed {
                            Ok(Value::Int(1)) => expires_ms
                                .store(unix_ms(before).saturating_add(ms(ttl)), Ordering::SeqCst),
                            // Taken over (our TTL ran out while we were paused): stop.
                            Ok(_) | Err(Failure::Refused(_)) => {
                                lost.store(true, Ordering::SeqCst);
                                return;
                            }
                            // Unreachable for now: try again at the next beat; our own
                            // deadline (not moved on) fences us meanwhile.
                            Err(Failure::Unreachable(_)) => {}
                        }
                    }
                })
                .ok()
                .map(|handle| (stop, handle))
        };
        Guard {
            entry: entry.clone(),
            token,
            ttl,
            expires_ms,
            lost,
            heartbeat,
        }
    }

    /// Saves `data` (whose refresh token's fingerprint is `rt`) while this guard is ours.
    ///
    /// # Errors
    /// [`Error::StoreUnavailable`], [`Error::StoreRefused`].
    pub(crate) fn save(&self, data: &[u8], rt: &str) -> Result<Written, Error> {
        let n = self.entry.eval(
            scripts::SAVE_GUARDED,
            &self.entry.keys(),
            &[self.token.as_bytes(), data, rt.as_bytes()],
        )?;
        Ok(if n == 1 {
            Written::Done
        } else {
            Written::GuardLost
        })
    }

    /// Saves `data` (fingerprint `rt`) only over the session whose refresh token's
    /// fingerprint is `replaced`, whoever holds the guard now (a newer session is never
    /// replaced).
    ///
    /// # Errors
    /// [`Error::StoreUnavailable`], [`Error::StoreRefused`].
    pub(crate) fn save_replacing(
        &self,
        replaced: &str,
        data: &[u8],
        rt: &str,
    ) -> Result<Written, Error> {
        let n = self.entry.eval(
            scripts::SAVE_REPLACING,
            &self.entry.keys(),
            &[
                self.token.as_bytes(),
                replaced.as_bytes(),
                data,
                rt.as_bytes(),
            ],
        )?;
        Ok(match n {
            1 => Written::Done,
            0 => Written::Changed,
            _ => Written::GuardLost,
        })
    }

    /// Deletes the session while this guard is ours: `Ok(Some(existed))`, or `Ok(None)` if
    /// the guard is lost (nothing deleted).
    ///
    /// # Errors
    /// [`Error::StoreUnavailable`], [`Error::StoreRefused`].
    pub(crate) fn delete(&self) -> Result<Option<bool>, Error> {
        let n = self.entry.eval(
            scripts::DELETE_GUARDED,
            &self.entry.keys(),
            &[self.token.as_bytes()],
        )?;
        Ok((n >= 0).then_some(n == 1))
    }

    /// The fence: `Ok` if our TTL has not run out by our clock and the guard still holds our
    /// token. Otherwise [`Error::LeaseLost`] (or [`Error::StoreUnavailable`] if the server
    /// cannot say): the caller must neither send nor save unconditionally.
    ///
    /// # Errors
    /// [`Error::LeaseLost`], [`Error::StoreUnavailable`], [`Error::StoreRefused`].
    pub(crate) fn still_held(&self) -> Result<(), Error> {
        let lost = || Error::LeaseLost {
            lease_path: self.entry.guard_location().into(),
        };
        if self.lost.load(Ordering::SeqCst)
            || unix_ms(SystemTime::now()) >= self.expires_ms.load(Ordering::SeqCst)
        {
            return Err(lost());
        }
        match self
            .entry
            .server
            .call(&[b"GET", self.entry.guard_key.as_bytes()])
            .map_err(|f| self.entry.error(f))?
        {
            Value::Bytes(b) if b == self.token.as_bytes() => Ok(()),
            _ => Err(lost()),
        }
    }

    /// The error for a write the scripts refused because the guard is no longer ours.
    pub(crate) fn lost_error(&self) -> Error {
        Error::LeaseLost {
            lease_path: self.entry.guard_location().into(),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.heartbeat.take() {
            drop(stop);
            let _ = handle.join();
        }
        // Only our own guard: after a pause past the TTL it may be another holder's. If the
        // server is unreachable, the TTL ends it.
        let _ = self.entry.server.call(&[
            b"EVAL",
            scripts::RELEASE.as_bytes(),
            b"1",
            self.entry.guard_key.as_bytes(),
            self.token.as_bytes(),
        ]);
    }
}
