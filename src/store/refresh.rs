//! The refresh protocol, top to bottom: read → fresh? → take the guards (or adopt what
//! another process saved while waiting) → re-read → refresh → save. After `invalid_grant` the
//! fallback decides (`fallback.rs`) and the store carries the decision out.

use std::time::Duration;

use super::Store;
use crate::basics::secret::Secret;
use crate::basics::wait::Acquired;
use crate::error::Error;
use crate::session::model::{ClientCredentials, Session};
use crate::session::oauth_error::OAuthError;
use crate::store::access_token::AccessToken;
use crate::store::fallback::{self, Decision, Retry};
use crate::trace;
use crate::trace::event::Event;
use crate::wire::endpoint::require_secure_endpoint;
use crate::wire::form::FormRequest;
use crate::wire::http_answer::{self, Outcome};

use super::guards::Held;

impl Store {
    /// A valid access token: the stored one if it is valid beyond the margin (no lock, no
    /// request), else one refresh for all the processes that ask at once.
    ///
    /// When the stored token is stale: take the lock (while waiting, adopt a session another
    /// process saves), re-read, and if it is still stale, refresh, save, release. After
    /// `invalid_grant`, the fallback re-reads the store for a sibling's newer session before
    /// giving up, and deletes the session only if it still holds the refresh token that failed.
    ///
    /// # Errors
    /// - [`Error::NoSession`], [`Error::SessionExpired`], [`Error::Rejected`]: log in again
    ///   ([`Error::needs_login`]).
    /// - [`Error::Unavailable`], [`Error::LockTimeout`]: try again later
    ///   ([`Error::is_transient`]); the session is kept.
    /// - [`Error::NotSaved`]: the refresh worked but the save did not; the error carries the
    ///   new session.
    /// - [`Error::InvalidResponse`]: the server answered something unusable; session kept.
    /// - [`Error::InsecureEndpoint`]: the stored endpoint is plain http to a remote host; no
    ///   request was sent.
    /// - [`Error::MissingClientSecret`]: a client-credentials session
    ///   ([`Session::client_credentials`]) whose secret variable is not set; nothing was sent.
    ///   Such a session is renewed by a client-credentials request under the same guards, and
    ///   no refusal deletes it (there is no grant to lose).
    /// - [`Error::Corrupt`], [`Error::UnsupportedVersion`], [`Error::NotASessionFile`],
    ///   [`Error::Io`]: the file is left untouched.
    ///
    /// Waiting is bounded by the lock timeout for the advisory lock, and again for the lease
    /// where one is used.
    pub fn access_token(&self) -> Result<AccessToken, Error> {
        self.access_token_valid_for(Duration::ZERO)
    }

    /// A valid access token with at least `min_valid` left, as [`Store::access_token`] with
    /// a larger margin for this call only (a batch job that needs its token to outlive the
    /// job's step). `min_valid` is capped at three quarters of the token's lifetime
    /// ([`Session::effective_min_valid`]): against a server that issues shorter tokens than
    /// asked for, a token is still refreshed once, not on every call; the caller sees the
    /// shortfall in [`AccessToken::expires_at`].
    ///
    /// Any number of processes asking at once cause one refresh, and a refresh that fails
    /// for a reason that may pass hands out the stored token if it has not actually expired
    /// ([`crate::Event::UsingUnexpiredToken`]), as [`Store::access_token`] does.
    ///
    /// # Errors
    /// As [`Store::access_token`].
    pub fn access_token_valid_for(&self, min_valid: Duration) -> Result<AccessToken, Error> {
        let fresh = |s: &Session| self.is_fresh(s) && s.is_valid_for(self.clock.now(), min_valid);
        let session = self.load()?.ok_or_else(|| self.no_session())?;
        if fresh(&session) {
            return Ok(AccessToken::from_session(&session, false));
        }
        match self.refresh_unless(&session, fresh) {
            Err(e) if e.is_transient() => self.unexpired_despite(e),
            other => other,
        }
    }

    /// A new access token after an API rejected the access token `rejected` (HTTP 401): the
    /// server revoked it early, or the session has no expiry to go by. Refreshes under the same guards as
    /// [`Store::access_token`], and only if the store still holds the rejected token, so that
    /// any number of callers reporting the same rejection cause one refresh.
    ///
    /// # Errors
    /// As [`Store::access_token`].
    pub fn access_token_after_rejection(&self, rejected: &str) -> Result<AccessToken, Error> {
        let replaced = |s: &Session| s.access_token().secret() != rejected && self.is_fresh(s);
        let session = self.load()?.ok_or_else(|| self.no_session())?;
        if replaced(&session) {
            return Ok(AccessToken::from_session(&session, false));
        }
        self.refresh_unless(&session, replaced)
    }

    /// The refresh protocol, once the session `stale` was read: take the guards (while
    /// waiting, adopt a session another process saves that is `done`), re-read under them,
    /// and refresh only if the session is still not `done`; the guards are released on
    /// return.
    fn refresh_unless(
        &self,
        stale: &Session,
        done: impl Fn(&Session) -> bool,
    ) -> Result<AccessToken, Error> {
        // Before the guards, from the session already read (not a second read of the file).
        self.roots_ready_for(stale.client().token_endpoint())?;
        let adopt = || self.load().ok().flatten().filter(|s| done(s));
        let held = match self.take_guards(&adopt)? {
            Acquired::Held(held) => held,
            Acquired::Resolved(session) => return Ok(self.adopted(&session)),
        };
        let session = self.load()?.ok_or_else(|| self.no_session())?;
        if done(&session) {
            // Another process refreshed while this one waited for the guards.
            return Ok(self.adopted(&session));
        }
        trace::Span::refresh(&self.path, &session)
            .run(|| self.refresh_session(&held, session, Retry::Allowed))
    }

    /// After a transient failure to refresh: the stored access token if it has not actually
    /// expired (only the margin has passed), since a valid token is still a valid token. The
    /// store is read again, so a logout meanwhile is honoured and a sibling's newer session
    /// is preferred.
    fn unexpired_despite(&self, error: Error) -> Result<AccessToken, Error> {
        let Ok(Some(session)) = self.load() else {
            return Err(error);
        };
        if !session.is_fresh(self.clock.now(), Duration::ZERO) {
            return Err(error);
        }
        self.emit(Event::UsingUnexpiredToken {
            path: self.path.clone(),
            reason: error.with_causes(),
        });
        Ok(AccessToken::from_session(&session, false))
    }

    /// A session another process saved, handed out without a request.
    fn adopted(&self, session: &Session) -> AccessToken {
        self.emit(Event::AdoptedNewerSession {
            path: self.path.clone(),
        });
        AccessToken::from_session(session, false)
    }

    /// Sends one refresh for `session` and handles its outcome; `retry` says whether the
    /// `invalid_grant` fallback may still refresh once with a newer session it finds.
    fn refresh_session(
        &self,
        held: &Held,
        session: Session,
        retry: Retry,
    ) -> Result<AccessToken, Error> {
        if let Some(grant) = session.client_credentials_grant().cloned() {
            return self.renew_client_credentials(held, session, &grant);
        }
        let request = FormRequest::refresh(&session);
        require_secure_endpoint(&request.url)?;
        // Under a lease: never send once another process may have taken it over.
        held.still_held()?;
        self.emit(Event::Refreshing {
            path: self.path.clone(),
        });
        let secrets_sent = request.secret_values();
        let response = self
            .transport()
            .post_form(&request)
            .map_err(|e| http_answer::transport_failure(&e, &self.path, &secrets_sent))?;
        let now = self.clock.now();
        match http_answer::classify(&response, now, &secrets_sent) {
            Outcome::Refreshed(token_response) => {
                let refreshed = session.refreshed(token_response, now);
                self.save_refreshed(held, refreshed, &session)
            }
            Outcome::RotatedOnly {
                refresh_token,
                reason,
            } => {
                // The server consumed the refresh token we sent: its replacement reaches the
                // disk before anything else, or the session is lost on the next call.
                let kept = session.with_rotated_refresh_token(refresh_token, now);
                let save_error = self.save_rotated(held, &kept, &session).err().map(Box::new);
                Err(Error::IncompleteRefresh {
                    path: self.path.clone(),
                    reason,
                    save_error,
                })
            }
            Outcome::InvalidGrant { stated } => {
                let schedule = self.poll_schedule();
                match fallback::decide(self, held, &session, retry, &schedule)? {
                    Decision::Adopt(newer) => Ok(self.adopted(&newer)),
                    Decision::RefreshOnce(newer) => trace::Span::refresh(&self.path, &newer)
                        .run(|| self.refresh_session(held, newer, Retry::Spent)),
                    Decision::Expired { deleted } => {
                        if deleted {
                            self.emit(Event::DeletedStaleSession {
                                path: self.path.clone(),
                            });
                        }
                        Err(Error::SessionExpired {
                            path: self.path.clone(),
                            deleted,
                            unexplained: !stated,
                        })
                    }
                }
            }
            Outcome::Rejected { status, oauth } => Err(Error::Rejected {
                path: self.path.clone(),
                status,
                oauth,
            }),
            Outcome::Unavailable {
                retry_after,
                reason,
            } => Err(Error::Unavailable {
                path: self.path.clone(),
                reason,
                retry_after,
            }),
            Outcome::Unusable(reason) => Err(Error::InvalidResponse {
                path: self.path.clone(),
                reason,
            }),
        }
    }

    /// Obtains the next access token of a client-credentials session with one token request
    /// (RFC 6749 §4.4), under the guards the refresh takes, and saves it as a refresh's
    /// answer is saved: compared on the access token that was stale. There is no grant to
    /// lose, so no `invalid_grant` fallback: every refusal keeps the session.
    fn renew_client_credentials(
        &self,
        held: &Held,
        session: Session,
        grant: &ClientCredentials,
    ) -> Result<AccessToken, Error> {
        let missing = || Error::MissingClientSecret {
            path: self.path.clone(),
            variable: grant.secret_env().to_owned(),
        };
        let secret = std::env::var(grant.secret_env())
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(missing)?;
        let request = FormRequest::client_credentials(&session, grant, Secret::new(secret));
        require_secure_endpoint(&request.url)?;
        held.still_held()?;
        self.emit(Event::Refreshing {
            path: self.path.clone(),
        });
        let secrets_sent = request.secret_values();
        let response = self
            .transport()
            .post_form(&request)
            .map_err(|e| http_answer::transport_failure(&e, &self.path, &secrets_sent))?;
        let now = self.clock.now();
        match http_answer::classify(&response, now, &secrets_sent) {
            Outcome::Refreshed(token_response) => {
                let renewed = session.refreshed(token_response, now);
                self.save_refreshed(held, renewed, &session)
            }
            Outcome::InvalidGrant { .. } | Outcome::Rejected { .. } => Err(Error::Rejected {
                path: self.path.clone(),
                status: response.status,
                oauth: OAuthError::from_json(&response.body, &secrets_sent),
            }),
            Outcome::Unavailable {
                retry_after,
                reason,
            } => Err(Error::Unavailable {
                path: self.path.clone(),
                reason,
                retry_after,
            }),
            Outcome::RotatedOnly { reason, .. } | Outcome::Unusable(reason) => {
                Err(Error::InvalidResponse {
                    path: self.path.clone(),
                    reason,
                })
            }
        }
    }

    /// Saves the session a refresh of `sent` returned (see [`Store::save_rotated`]); either
    /// way the caller gets the new session (inside [`Error::NotSaved`] if unsaved).
    fn save_refreshed(
        &self,
        held: &Held,
        session: Session,
        sent: &Session,
    ) -> Result<AccessToken, Error> {
        match self.save_rotated(held, &session, sent) {
            Ok(()) => {
                self.emit(Event::Refreshed {
                    path: self.path.clone(),
                });
                Ok(AccessToken::from_session(&session, true))
            }
            Err(e) => Err(Error::NotSaved {
                session: Box::new(session),
                source: Box::new(e),
            }),
        }
    }

    /// Saves `new`, the outcome of a 2xx to the refresh of `sent`. Under a lease that another
    /// process may have taken over meanwhile, the server has still consumed the refresh token
    /// we sent: `new` is saved if the file still holds the one we sent (nothing newer was
    /// saved, and what is there can no longer be used); otherwise the newer session, or the
    /// absence a logout left, is kept and the error is [`Error::LeaseLost`].
    fn save_rotated(&self, held: &Held, new: &Session, sent: &Session) -> Result<(), Error> {
        let bytes = self.encode_successor(new)?;
        self.write_replacing(held, &bytes, new, sent)
    }
}

/// What the fallback reads and does: this store's reads, margin, clock and compare-and-delete
/// (under its guards).
impl fallback::StoreAccess for Store {
    type Held = Held;

    fn load(&self) -> Result<Option<Session>, Error> {
        Store::load(self)
    }

    fn is_fresh(&self, session: &Session) -> bool {
        Store::is_fresh(self, session)
    }

    fn pause(&self, pause: Duration) {
        self.clock.sleep(pause);
    }

    fn remove_if_holds_refresh_token_of(
        &self,
        held: &Held,
        failed: &Session,
    ) -> Result<bool, Error> {
        self.remove_if_holds(held, failed)
    }
}
