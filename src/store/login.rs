//! One login for many callers: [`Store::login_with`] runs a login under the store's guards
//! and saves its session, or adopts the one another process saved meanwhile.

use std::time::Duration;

use super::Store;
use crate::atomic;
use crate::error::Error;
use crate::event::Event;
use crate::lease::Fence;
use crate::session::Session;
use crate::wait::Acquired;

/// What [`Store::login_with`] did.
#[derive(Debug, Clone)]
#[must_use]
pub enum LoggedIn {
    /// This call ran the login and saved its session.
    Saved(Session),
    /// Another process's login (or refresh) saved a session while this one waited for the
    /// guards; this call adopted it and did not log in.
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
    /// Runs a login (`login`, such as a [`crate::Login`] flow) under the store's guards and
    /// saves its session: one login for any number of callers.
    ///
    /// The store is read first; then the guards are taken (advisory lock, and the lease
    /// where the [`LockPlan`](crate::LockPlan) uses one, with its normal time-to-live: its
    /// heartbeat renews it while the login runs). While waiting for them, and again once they are held, a session that
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
        let wait = deadline.saturating_add(self.options.lock_timeout);
        // The normal time-to-live, not one stretched over the login: the heartbeat keeps a
        // live holder's lease alive however long the user takes, and a holder that is
        // killed must not block the other machines for the rest of its deadline.
        let ttl = self.options.lease_ttl;
        let adopted = |session: Session| {
            self.emit(Event::AdoptedNewerSession {
                path: self.path.clone(),
            });
            Ok(LoggedIn::Adopted(session))
        };
        let _held = match self.take_guards_for(wait, ttl, &appeared)? {
            Acquired::Held(held) => held,
            Acquired::Resolved(session) => return adopted(session),
        };
        if let Some(session) = appeared() {
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
