//! One login for many callers: [`Store::login_with`] runs a login under the store's guards
//! and saves its session, or adopts the one another process saved meanwhile.

use std::time::Duration;

use super::Store;
use crate::access_token::AccessToken;
use crate::atomic;
use crate::error::Error;
use crate::event::Event;
use crate::lease::Fence;
use crate::login::{Login, Prompt};
use crate::session::Session;
use crate::wait::Acquired;

/// What [`Store::login_with`] did.
#[derive(Debug, Clone)]
#[must_use]
pub enum LoggedIn {
    /// This call ran the login and saved its session.
    Saved(Session),
    /// Another process's login (or refresh) saved a session while this one waited for the
    /// guards; this call adopted it and did not log in. Never the outcome of
    /// [`Store::relogin_with`].
    Adopted(Session),
}

impl LoggedIn {
    /// The session now stored.
    #[must_use]
    pub fn session(&self) -> &Session {
        match self {
            LoggedIn::Saved(s) | LoggedIn::Adopted(s) => s,
        }
    }

    /// Whether this call logged in (rather than adopting another process's session).
    #[must_use]
    pub fn logged_in(&self) -> bool {
        matches!(self, LoggedIn::Saved(_))
    }
}

impl Store {
    /// A valid access token, logging in first when that is what it takes: log in on first
    /// use, in one call.
    ///
    /// Returns [`Store::access_token`]'s token (refreshed if needed) when the stored session
    /// gives one. When it cannot because a login is needed ([`Error::needs_login`]: nothing
    /// stored, the session expired, the refresh token was refused), runs `login`'s flow
    /// ([`Login::run`], showing the device code or URL through `show`) under the store's
    /// guards as [`Store::login_with`] does (so that many processes starting at once log in
    /// once, and the others adopt its session), and returns the new session's token.
    ///
    /// # Errors
    /// - the errors of [`Store::access_token`] that a login would not cure (transient ones,
    ///   a corrupt file, a rejected client), unchanged;
    /// - the login's errors ([`Error::LoginDenied`], [`Error::LoginExpired`], …); nothing
    ///   was saved;
    /// - those of [`Store::login_with`].
    pub fn access_token_or_login(
        &self,
        login: &Login,
        show: &mut dyn FnMut(Prompt<'_>),
    ) -> Result<AccessToken, Error> {
        match self.access_token() {
            Err(e) if e.needs_login() => {}
            other => return other,
        }
        let outcome = self.login_with(login.deadline(), || login.run(show))?;
        Ok(AccessToken::from_session(outcome.session(), false))
    }

    /// Runs a login (`login`, such as a [`crate::Login`] flow) under the store's guards and
    /// saves its session: one login for any number of callers.
    ///
    /// The store is read first; then the guards are taken (advisory lock, and the lease
    /// where the [`LockPlan`](crate::LockPlan) uses one, its time-to-live stretched to cover
    /// `deadline`). While waiting for them, and again once they are held, a session that
    /// differs from the one first read (another process's login, or a refresh) ends the wait:
    /// it is adopted ([`LoggedIn::Adopted`]) and `login` does not run. Otherwise `login` runs
    /// while the guards are held, so other callers of this method wait for it (up to
    /// `deadline` plus the lock timeout) and adopt what it saves. A failed login saves
    /// nothing, releases the guards, and the next waiter runs its own.
    ///
    /// # Errors
    /// - whatever `login` returns; nothing was saved.
    /// - [`Error::NotSaved`]: the login worked but its session could not be saved (or the
    ///   lease was lost meanwhile); the error carries the new session.
    /// - [`Error::LockTimeout`]: another login held the guards for the whole wait.
    /// - [`Error::Corrupt`] and the other read errors, [`Error::Io`].
    pub fn login_with(
        &self,
        deadline: Duration,
        login: impl FnOnce() -> Result<Session, Error>,
    ) -> Result<LoggedIn, Error> {
        let before = self.load()?;
        let refresh_token =
            |s: &Option<Session>| s.as_ref().map(|s| s.refresh_token().secret().to_owned());
        let seen = refresh_token(&before);
        let appeared = move || {
            self.load()
                .ok()
                .flatten()
                .filter(|s| Some(s.refresh_token().secret()) != seen.as_deref())
        };
        self.login_under_guards(deadline, &appeared, login)
    }

    /// Runs a login under the store's guards and saves its session, whatever is stored and
    /// whatever is saved while it waits: for a user who asked to log in (again: another
    /// account, a scope the session lacks), where [`Store::login_with`] would adopt a
    /// session that a routine refresh saved meanwhile (a refresh that rotates the refresh
    /// token cannot be told from another login) and so never log in.
    ///
    /// It waits, as [`Store::login_with`] does, for a refresh or login in progress to
    /// release the guards (up to `deadline` plus the lock timeout), then runs `login` under
    /// them, so that no refresh can overwrite its session. Two such calls at once log in one
    /// after the other.
    ///
    /// # Errors
    /// As [`Store::login_with`].
    pub fn relogin_with(
        &self,
        deadline: Duration,
        login: impl FnOnce() -> Result<Session, Error>,
    ) -> Result<Session, Error> {
        // Read first, as `login_with` does: a corrupt or foreign file is reported, not
        // replaced.
        self.load()?;
        let outcome = self.login_under_guards(deadline, &|| None, login)?;
        Ok(outcome.session().clone())
    }

    /// Takes the guards (ending the wait with `adopt`'s session, if it finds one) and runs
    /// `login` under them.
    fn login_under_guards(
        &self,
        deadline: Duration,
        adopt: &dyn Fn() -> Option<Session>,
        login: impl FnOnce() -> Result<Session, Error>,
    ) -> Result<LoggedIn, Error> {
        let wait = deadline.saturating_add(self.options.lock_timeout);
        let ttl = self.options.lease_ttl.max(wait);
        let adopted = |session: Session| {
            self.emit(Event::AdoptedNewerSession {
                path: self.path.clone(),
            });
            Ok(LoggedIn::Adopted(session))
        };
        let _held = match self.take_guards_for(wait, ttl, adopt)? {
            Acquired::Held(held) => held,
            Acquired::Resolved(session) => return adopted(session),
        };
        if let Some(session) = adopt() {
            return adopted(session);
        }
        let session = login()?;
        let fenced = Fence::current(&self.lease_path).still_held();
        match fenced.and_then(|()| atomic::write(&self.path, &session.to_json())) {
            Ok(()) => Ok(LoggedIn::Saved(session)),
            Err(e) => Err(Error::NotSaved {
                session: Box::new(session),
                source: Box::new(e),
            }),
        }
    }
}
