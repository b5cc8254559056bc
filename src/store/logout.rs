//! Writes other than a refresh's save, each under the guards: save, delete, and logout with
//! its RFC 7009 revocation.

use std::time::Duration;

use super::Store;
use super::guards::Held;
use crate::error::Error;
use crate::file::atomic;
use crate::session::model::Session;
use crate::wire::form::FormRequest;
use crate::wire::http_answer::{self, Endpoint, Meaning};

/// Whether [`Store::logout`] revokes the refresh token at the server before deleting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// Revoke at the session's revocation endpoint first; if that fails, keep the session.
    Required,
    /// Delete the local copy only: the refresh token stays valid at the server until it
    /// expires or is revoked there.
    LocalOnly,
}

/// What [`Store::logout`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum LoggedOut {
    /// No session was stored; nothing was sent or changed.
    NothingStored,
    /// The session was deleted, after its refresh token was revoked if `revoked`.
    Deleted {
        /// Whether the server confirmed the revocation.
        revoked: bool,
    },
}

impl Store {
    /// Stores `session` (after a login done elsewhere), replacing any stored one, atomically
    /// and durably, under the lock so that it cannot be overwritten by a refresh in flight.
    ///
    /// # Errors
    /// [`Error::Io`] (the old file is then untouched and no temp file remains),
    /// [`Error::NotASessionFile`], [`Error::LockTimeout`]; for a protected store (see
    /// [`Store::with_protection`]) also [`Error::Keychain`] and [`Error::ProtectionRefused`],
    /// and nothing is written.
    pub fn save(&self, session: &Session) -> Result<(), Error> {
        let held = self.hold()?;
        let bytes = self.encode_new(session)?;
        self.write_held(&held, &bytes, session)
    }

    /// Deletes the stored session under the lock (logout). A refresh in flight elsewhere
    /// re-reads under the lock, finds nothing, and does not write the session back.
    /// Returns whether there was a session.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::NotASessionFile`], [`Error::LockTimeout`].
    pub fn delete(&self) -> Result<bool, Error> {
        let held = self.hold()?;
        self.remove_held(&held)
    }

    /// Logs out: under the guards, reads the session, revokes its refresh token at the
    /// session's revocation endpoint (RFC 7009) if `revocation` asks for it, and deletes the
    /// session, all in one critical section, so a refresh in another process can neither
    /// slip a newer refresh token past the revocation nor write the session back.
    ///
    /// With [`Revocation::Required`], a revocation that fails keeps the session: the refresh
    /// token is still live at the server, and the user can try again (or log out locally with
    /// [`Revocation::LocalOnly`], which deletes without a request). With no session stored,
    /// nothing is created, locked or sent.
    ///
    /// # Errors
    /// - [`Error::NoRevocationEndpoint`]: revocation required, but the session names no
    ///   revocation endpoint; the session was kept.
    /// - [`Error::RevocationUnavailable`] (transient) and [`Error::RevocationRefused`]: the
    ///   revocation did not succeed; the session was kept.
    /// - [`Error::InsecureEndpoint`]: the revocation endpoint is plain http to a remote host;
    ///   nothing was sent and the session was kept.
    /// - [`Error::Corrupt`] and the other read errors, with [`Revocation::Required`] (a
    ///   corrupt file has no token to revoke; [`Revocation::LocalOnly`] deletes it).
    /// - [`Error::LockTimeout`], [`Error::Io`], [`Error::NotASessionFile`].
    ///
    /// # Examples
    /// ```no_run
    /// use credlock::{LoggedOut, Revocation, Store};
    /// let store = Store::new("/home/me/.config/my-cli/session.json");
    /// match store.logout(Revocation::Required)? {
    ///     LoggedOut::Deleted { revoked } => println!("logged out (revoked: {revoked})"),
    ///     LoggedOut::NothingStored => println!("no session was stored"),
    /// }
    /// # Ok::<(), credlock::Error>(())
    /// ```
    pub fn logout(&self, revocation: Revocation) -> Result<LoggedOut, Error> {
        // A cheap look first, so that logging out with nothing stored creates no directory,
        // no lock file and no lease.
        if !self.stored_once_deletes_settle()? {
            return Ok(LoggedOut::NothingStored);
        }
        let held = self.hold()?;
        // Under a lease another process may take over: nothing is sent, and nothing is
        // deleted unconditionally, once it may have.
        let session = match revocation {
            Revocation::LocalOnly => {
                if !self.stored_once_deletes_settle()? {
                    return Ok(LoggedOut::NothingStored);
                }
                held.still_held()?;
                return Ok(if self.remove_held(&held)? {
                    LoggedOut::Deleted { revoked: false }
                } else {
                    LoggedOut::NothingStored
                });
            }
            Revocation::Required => match self.load()? {
                None => return Ok(LoggedOut::NothingStored),
                Some(session) => session,
            },
        };
        self.revoke(&held, &session)?;
        // Whatever became of the lease meanwhile, a file that still holds the refresh token
        // just revoked is dead and goes; one that holds another (saved by a process that took
        // the lease over, or by a writer that takes no lock) is kept.
        if self.remove_if_holds(&held, &session)? || !self.stored_once_deletes_settle()? {
            return Ok(LoggedOut::Deleted { revoked: true });
        }
        held.still_held()?;
        Err(Error::Io {
            action: "delete the session file",
            path: self.path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a newer session was saved during the logout and was kept (its refresh token was not revoked): log out again",
            ),
        })
    }

    /// Whether a session file is at the path, once any compare-and-delete under way is over:
    /// one has the file renamed aside for a moment and may put it back. `false` only when
    /// there is no file and no compare-and-delete is in progress; `true` also while one still
    /// is after the torn-read pauses (the caller then meets the file, or its absence, under
    /// the lock).
    fn stored_once_deletes_settle(&self) -> Result<bool, Error> {
        let mut pauses: Option<std::vec::IntoIter<Duration>> = None;
        if self.on_server() {
            return Ok(self.current_bytes()?.is_some());
        }
        loop {
            if atomic::exists(&self.path)? {
                return Ok(true);
            }
            if !atomic::delete_in_progress(&self.path) {
                // A put-back may have landed between the look and the check.
                return atomic::exists(&self.path);
            }
            match pauses
                .get_or_insert_with(|| self.torn_read_schedule().into_iter())
                .next()
            {
                Some(pause) => self.clock.sleep(pause),
                None => return Ok(true),
            }
        }
    }

    /// Sends the RFC 7009 revocation of `session`'s refresh token; `Ok` only on HTTP 200.
    /// Under a lease, nothing is sent once another process may have taken it over.
    fn revoke(&self, held: &Held, session: &Session) -> Result<(), Error> {
        held.still_held()?;
        let request = FormRequest::revoke(session)?.ok_or_else(|| Error::NoRevocationEndpoint {
            path: self.path.clone(),
        })?;
        let unavailable = |reason: String| Error::RevocationUnavailable {
            path: self.path.clone(),
            reason,
        };
        let secrets_sent = request.secret_values();
        let response =
            self.transport().post_form(&request).map_err(
                |e| match http_answer::transport_meaning(&e, &secrets_sent) {
                    Ok(reason) => unavailable(reason),
                    Err(setup) => setup,
                },
            )?;
        let now = self.clock.now();
        // A revocation is done on a 200 only; any answer but a transient one is a refusal.
        let oauth =
            match http_answer::interpret(Endpoint::Revocation, &response, now, &secrets_sent) {
                Meaning::Success => return Ok(()),
                Meaning::Unavailable { reason, .. } => return Err(unavailable(reason)),
                Meaning::Refused { oauth, .. } => oauth,
                _ => None,
            };
        Err(Error::RevocationRefused {
            path: self.path.clone(),
            status: response.status,
            oauth,
            public_client: matches!(
                session.client().auth(),
                crate::session::model::ClientAuth::None
            ),
        })
    }
}
