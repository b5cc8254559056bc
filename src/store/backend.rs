//! The storage seam: what the refresh protocol asks of the place that keeps the session.
//!
//! - a read of the stored bytes;
//! - an exclusive, renewable, fenced guard ([`Held`], taken in `guards.rs`);
//! - a save under the guard, and a save that is a compare-and-swap on the refresh token
//!   that was sent, or, for a client-credentials session, on the access token that was stale
//!   (`Session::replacement_key`): a holder that lost its guard never overwrites a newer
//!   session;
//! - a delete under the guard, and a compare-and-delete on the refresh token that failed.
//!
//! Two backends answer it: a file (the lock, the lease and the atomic replace of
//! `crate::atomic`; the default, unchanged) and, with the `redis` feature, a Redis or Valkey
//! server (`crate::redis`: a guard key, and Lua scripts that check the guard's token and the
//! refresh token of the session they replace). Every write takes `&Held`, so its signature
//! says what protects it. A closed set of two rather than a trait object: both need the
//! store's encoding, events and guards, which a trait would have to hand back and forth.

use super::guards::Held;
use super::{Backend, Store};
use crate::error::Error;
use crate::file::atomic;
use crate::session::model::Session;

impl Store {
    /// The stored bytes, if any, read once (the file's torn-read retries are `Store::load`'s).
    pub(crate) fn current_bytes(&self) -> Result<Option<Vec<u8>>, Error> {
        match &self.backend {
            Backend::File => Ok(atomic::read(&self.path)?.map(|c| c.bytes)),
            #[cfg(feature = "redis")]
            Backend::Redis(entry) => entry.read(),
        }
    }

    /// Writes `bytes` (the encoding of `session`) under `held`, replacing whatever is stored.
    pub(crate) fn write_held(
        &self,
        held: &Held,
        bytes: &[u8],
        session: &Session,
    ) -> Result<(), Error> {
        let _ = session;
        match &self.backend {
            Backend::File => {
                // The fence, right before the replace: a holder whose lease was lost (paused
                // past its TTL, broken and retaken elsewhere) must not overwrite what the new
                // holder saved. The advisory lock alone makes this `Ok`.
                held.still_held()?;
                atomic::write(&self.path, bytes)
            }
            #[cfg(feature = "redis")]
            Backend::Redis(_) => {
                let guard = held.redis_guard();
                let rt = crate::redis::fingerprint(session.replacement_key().secret());
                match guard.save(bytes, &rt)? {
                    crate::redis::Written::Done => Ok(()),
                    _ => Err(guard.lost_error()),
                }
            }
        }
    }

    /// Writes `bytes` (the encoding of `new`, the answer to the refresh of `sent`). While the
    /// guard is ours, nothing else wrote meanwhile; once it may not be, `new` is saved only
    /// if the store still holds `sent`'s refresh token (the server consumed it: what is there
    /// can no longer be used); otherwise the newer session, or the absence a logout left, is
    /// kept and the error is [`Error::LeaseLost`].
    pub(crate) fn write_replacing(
        &self,
        held: &Held,
        bytes: &[u8],
        new: &Session,
        sent: &Session,
    ) -> Result<(), Error> {
        match &self.backend {
            Backend::File => {
                let _ = new;
                let Err(lost) = held.still_held() else {
                    return atomic::write(&self.path, bytes);
                };
                // Compared again right before the rename. A holder on another machine can
                // still save in between (nothing serialises us with it any more); then its
                // session is replaced by ours, whose refresh token the server issued too.
                let holds_what_we_sent = |current: Option<&[u8]>| {
                    current.is_some_and(|b| {
                        self.decode(b)
                            .is_ok_and(|s| s.replacement_key() == sent.replacement_key())
                    })
                };
                if atomic::write_if(&self.path, bytes, holds_what_we_sent)? {
                    Ok(())
                } else {
                    Err(lost)
                }
            }
            #[cfg(feature = "redis")]
            Backend::Redis(_) => {
                // One script: the compare and the write cannot be split by another holder.
                let guard = held.redis_guard();
                let replaced = crate::redis::fingerprint(sent.replacement_key().secret());
                let rt = crate::redis::fingerprint(new.replacement_key().secret());
                match guard.save_replacing(&replaced, bytes, &rt)? {
                    crate::redis::Written::Done => Ok(()),
                    _ => Err(guard.lost_error()),
                }
            }
        }
    }

    /// Deletes the stored session under `held`; whether there was one.
    pub(crate) fn remove_held(&self, held: &Held) -> Result<bool, Error> {
        match &self.backend {
            Backend::File => {
                // As for a save: a holder whose lease was lost removes nothing.
                held.still_held()?;
                atomic::remove(&self.path)
            }
            #[cfg(feature = "redis")]
            Backend::Redis(_) => {
                let guard = held.redis_guard();
                guard.delete()?.ok_or_else(|| guard.lost_error())
            }
        }
    }

    /// Deletes the stored session if, at the moment of deletion, it still holds `failed`'s
    /// refresh token; whether it did. Safe however `held` fares, so it asks no fence: the
    /// compare is on the stored session itself (right before the rename, or in the server's
    /// script), and a session that holds a token the server refused or revoked is dead
    /// whoever saved it; another holder's newer session holds another token and is never
    /// deleted. `held` is taken so that the signature says it runs under the guards.
    pub(crate) fn remove_if_holds(&self, held: &Held, failed: &Session) -> Result<bool, Error> {
        let _ = held;
        match &self.backend {
            Backend::File => {
                let holds_the_failed_token = |bytes: &[u8]| {
                    self.decode(bytes)
                        .is_ok_and(|s| s.replacement_key() == failed.replacement_key())
                };
                atomic::remove_if(&self.path, holds_the_failed_token)
            }
            #[cfg(feature = "redis")]
            Backend::Redis(entry) => entry.delete_if_holds(&crate::redis::fingerprint(
                failed.replacement_key().secret(),
            )),
        }
    }

    /// Whether the store is kept on a server rather than in a file.
    pub(crate) fn on_server(&self) -> bool {
        !matches!(self.backend, Backend::File)
    }
}

#[cfg(test)]
mod tests;
