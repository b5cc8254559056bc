//! The guard of one session on Redis: `SET guard token NX PX ttl`, renewed every third of the
//! TTL by a heartbeat while the critical section runs, and removed on drop by a script that
//! compares the token (a holder that lost its guard never removes the next holder's).
//!
//! The fence: right before a step that must never overlap another holder's (sending the
//! refresh, an unconditional write), [`Guard::still_held`] runs a script that checks the
//! guard key still holds our token and renews it to the full TTL, then checks by our own
//! monotonic clock that the TTL, counted from before that round trip, has not run out. The saves and deletes
//! check the token again inside their scripts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

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
    /// When our guard runs out by our clock (monotonic): from before the last command that
    /// set or renewed it, plus the TTL.
    expires: Arc<Mutex<Instant>>,
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
    let set: [&[u8]; 6] = [
        b"SET",
        entry.guard_key.as_bytes(),
        token.as_bytes(),
        b"NX",
        b"PX",
        ttl_ms.as_bytes(),
    ];
    let attempt = || {
        let before = Instant::now();
        let taken = |reply: Value| match reply {
            Value::Nil => Ok(false),
            Value::Bytes(ok) if ok == b"OK" => Ok(true),
            other => Err(entry.error(Failure::Refused(format!(
                "the guard's SET answered {other:?} instead of OK or nil"
            )))),
        };
        let answered = match entry.server.call(&set) {
            // The SET may have run and only its answer been lost: asked again with the same
            // token (on a new connection), a guard that holds our token is ours, rather than
            // left to block every instance for its TTL.
            Err(Failure::Unreachable(_)) => entry.server.call(&set).and_then(|again| match again {
                Value::Nil => entry
                    .server
                    .call(&[b"GET", entry.guard_key.as_bytes()])
                    .map(|held| match held {
                        Value::Bytes(b) if b == token.as_bytes() => Value::Bytes(b"OK".to_vec()),
                        _ => Value::Nil,
                    }),
                other => Ok(other),
            }),
            other => other,
        };
        match answered.map_err(|f| entry.error(f)).and_then(taken) {
            Ok(false) => Attempt::Pending(()),
            // Counted from before the first SET: the earliest it may have run.
            Ok(true) => Attempt::Done(Ok(before + ttl)),
            Err(e) => Attempt::Done(Err(e)),
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
    fn start(entry: &Entry, token: String, ttl: Duration, expires: Instant) -> Guard {
        let expires = Arc::new(Mutex::new(expires));
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let heartbeat = {
            let entry = entry.clone();
            let token = token.clone();
            let expires = Arc::clone(&expires);
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
                        let before = Instant::now();
                        let renewed = entry.server.call(&[
                            b"EVAL",
                            scripts::RENEW.as_bytes(),
                            b"1",
                            entry.guard_key.as_bytes(),
                            token.as_bytes(),
                            ttl_ms.as_bytes(),
                        ]);
                        match renewed {
                            Ok(Value::Int(1)) => extend(&expires, before + ttl),
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
            expires,
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

    /// The fence: `Ok` if the guard still holds our token, renewed by the same script to its
    /// full TTL, and that TTL, counted from before the round trip, has not run out by our
    /// clock once the answer is in (a slow round trip cannot eat the time the request
    /// needs). The script also runs, harmlessly, every write the refresh will need, so a
    /// user the ACL does not allow them is refused here, before anything is sent. Otherwise
    /// [`Error::LeaseLost`] (or [`Error::StoreUnavailable`] if the server cannot say,
    /// [`Error::StoreRefused`] if it refuses): the caller must neither send nor save
    /// unconditionally.
    ///
    /// # Errors
    /// [`Error::LeaseLost`], [`Error::StoreUnavailable`], [`Error::StoreRefused`].
    pub(crate) fn still_held(&self) -> Result<(), Error> {
        let lost = || Error::LeaseLost {
            lease_path: self.entry.guard_location().into(),
        };
        if self.lost.load(Ordering::SeqCst) || Instant::now() >= current(&self.expires) {
            return Err(lost());
        }
        let before = Instant::now();
        let ttl_ms = ms(self.ttl).max(1).to_string();
        let held = self.entry.eval(
            scripts::FENCE,
            &[
                &self.entry.session_key,
                &self.entry.guard_key,
                &self.entry.probe_key,
            ],
            &[self.token.as_bytes(), ttl_ms.as_bytes()],
        )?;
        if held != 1 {
            return Err(lost());
        }
        extend(&self.expires, before + self.ttl);
        if self.lost.load(Ordering::SeqCst) || Instant::now() >= current(&self.expires) {
            return Err(lost());
        }
        Ok(())
    }

    /// The error for a write the scripts refused because the guard is no longer ours.
    pub(crate) fn lost_error(&self) -> Error {
        Error::LeaseLost {
            lease_path: self.entry.guard_location().into(),
        }
    }
}

fn current(expires: &Mutex<Instant>) -> Instant {
    *expires
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Moves our deadline on to `to`, never back (a heartbeat and the fence may both renew).
fn extend(expires: &Mutex<Instant>, to: Instant) {
    let mut at = expires
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if to > *at {
        *at = to;
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
