//! One login for many callers: [`Store::login_with`] runs a login under the store's guards
//! and saves its session, or adopts the one another process saved meanwhile.

use std::time::Duration;

use super::Store;
use crate::basics::wait::Acquired;
use crate::error::Error;
use crate::login::{Login, Prompt};
use crate::session::model::Session;
use crate::store::access_token::AccessToken;
use crate::trace::event::Event;

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
    /// where the [`LockPlan`](crate::LockPlan) uses one, with its normal time-to-live: its
    /// heartbeat renews it while the login runs). While waiting for them, and again once they are held, a session that
    /// differs from the one first read (another process's login, or a refresh) ends the wait:
    /// it is adopted ([`LoggedIn::Adopted`]) and `login` does not run. Otherwise `login` runs
    /// while the guards are held, so other callers of this method wait for it (up to
    /// `deadline` plus the lock timeout) and adopt what it saves. A failed login saves
    /// nothing and releases the guards. If it ended [`Error::LoginExpired`] or
    /// [`Error::LoginDenied`] (nobody approved it, or the user refused), the callers that
    /// waited for it return that error too rather than show the user another code or tab
    /// (the outcome is left in `<store>.login-ended` for the other processes), unless the
    /// refusal came as an `error=` in the browser's redirect, which anyone who read the
    /// `state` can send (a [`crate::Login`] flow run on this thread tells); after any other
    /// failure the next waiter runs its own login. `login` should bound its flow by
    /// the time left of the caller's deadline (the CLI does), since waiting counted too.
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
        let started = self.clock.now();
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
        self.login_under_guards(deadline, Some(started), &appeared, login)
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
        // The user asked to log in: another login that expired or was denied meanwhile is
        // no answer to that, so no recorded end is read.
        let outcome = self.login_under_guards(deadline, None, &|| None, login)?;
        Ok(outcome.session().clone())
    }

    /// Takes the guards (ending the wait with `adopt`'s session, if it finds one) and runs
    /// `login` under them.
    fn login_under_guards(
        &self,
        deadline: Duration,
        waiting_since: Option<std::time::SystemTime>,
        adopt: &dyn Fn() -> Option<Session>,
        login: impl FnOnce() -> Result<Session, Error>,
    ) -> Result<LoggedIn, Error> {
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
        let held = match self.take_guards_for(wait, ttl, adopt)? {
            Acquired::Held(held) => held,
            Acquired::Resolved(session) => return adopted(session),
        };
        if let Some(session) = adopt() {
            return adopted(session);
        }
        if let Some(ended) = waiting_since.and_then(|since| self.login_ended_since(since)) {
            return Err(ended);
        }
        let session = match login() {
            Ok(session) => session,
            Err(e) => {
                // Only an end the server stated over an authenticated channel, or the local
                // deadline, ends the waiters (see `record_login_end`).
                self.record_login_end(&e);
                return Err(e);
            }
        };
        let saved = held
            .still_held()
            .and_then(|()| self.encode_new(&session))
            .and_then(|bytes| self.write_held(&held, &bytes, &session));
        match saved {
            Ok(()) => {
                if !self.on_server() {
                    let _ = std::fs::remove_file(self.login_ended_path());
                }
                Ok(LoggedIn::Saved(session))
            }
            Err(e) => Err(Error::NotSaved {
                session: Box::new(session),
                source: Box::new(e),
            }),
        }
    }
}

/// How long a recorded login end is read: a few KiB at most.
const LOGIN_ENDED_LIMIT: u64 = 4096;

/// How far in the future a recorded login end may be dated (clock skew between machines
/// sharing the store) and still be read.
const LOGIN_ENDED_SKEW_MS: u64 = 5_000;

impl Store {
    /// `<store>.login-ended`: how the last login that was not approved ended, for the
    /// processes that waited for it.
    fn login_ended_path(&self) -> std::path::PathBuf {
        crate::file::sidecar_names::with_suffix(&self.path, ".login-ended")
    }

    /// Leaves the end of a login nobody approved (expired, or denied) where the callers
    /// waiting for it look once they hold the guards. Best effort: without it, they log in
    /// themselves, as before.
    fn record_login_end(&self, e: &Error) {
        // A sidecar file of a session file; a session on a server has none (its waiters log
        // in themselves, as before).
        if self.on_server() {
            return;
        }
        let (kind, detail) = match e {
            Error::LoginExpired { what } => ("login_expired", Some(what.clone())),
            // A denial through the browser's redirect can be forged by anyone who read the
            // login's `state`: it ends this login, never the callers waiting for it.
            Error::LoginDenied {
                via_redirect: true, ..
            } => return,
            Error::LoginDenied { description, .. } => ("login_denied", description.clone()),
            _ => return,
        };
        let record = serde_json::json!({
            "kind": kind,
            "at_ms": crate::basics::clock::unix_ms(self.clock.now()),
            "detail": detail,
        });
        let _ = open_sidecar(&self.login_ended_path(), true)
            .and_then(|mut f| std::io::Write::write_all(&mut f, record.to_string().as_bytes()));
    }

    /// The error of a login that was not approved and ended after `since` (while this
    /// caller waited for the guards), if one did.
    fn login_ended_since(&self, since: std::time::SystemTime) -> Option<Error> {
        use std::io::Read;
        if self.on_server() {
            return None;
        }
        let mut bytes = Vec::new();
        open_sidecar(&self.login_ended_path(), false)
            .ok()?
            .take(LOGIN_ENDED_LIMIT)
            .read_to_end(&mut bytes)
            .ok()?;
        let record: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        // Strictly after: a login that ended in the same millisecond this caller began may
        // have ended before it; then this caller logs in itself, as it would have anyway.
        let at_ms = record["at_ms"].as_u64()?;
        if at_ms <= crate::basics::clock::unix_ms(since) {
            return None;
        }
        // Nor from the future, beyond a small skew between machines: a record dated ahead
        // (a clock far ahead, or planted) would otherwise end every login started before
        // that date.
        if at_ms
            > crate::basics::clock::unix_ms(self.clock.now()).saturating_add(LOGIN_ENDED_SKEW_MS)
        {
            return None;
        }
        // The text is shown to the user: bounded, and without control characters (terminal
        // escapes) or the invisible marks that reorder or hide text.
        let detail = record["detail"].as_str().map(|d| {
            d.chars()
                .filter(|&c| {
                    !c.is_control()
                        && !matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
                })
                .take(200)
                .collect::<String>()
        });
        match record["kind"].as_str()? {
            "login_expired" => Some(Error::LoginExpired {
                what: format!(
                    "another process's login, which this one waited for, ended unapproved: {}",
                    detail.unwrap_or_else(|| "expired".to_owned())
                ),
            }),
            "login_denied" => Some(Error::LoginDenied {
                description: detail,
                via_redirect: false,
            }),
            _ => None,
        }
    }
}

/// Opens the `.login-ended` file as the lease and lock files are opened: not through a
/// symbolic link, without blocking on a FIFO, only if it is a regular file owned by the
/// current user (or root) in a directory that not every user may write without the sticky
/// bit (another user could plant a record that ends every login with their text); created
/// 0600.
fn open_sidecar(path: &std::path::Path, write: bool) -> std::io::Result<std::fs::File> {
    crate::file::checked_open::check_dir_of(path).map_err(std::io::Error::other)?;
    let mut options = std::fs::OpenOptions::new();
    if write {
        // Truncated only once its owner is checked (below).
        options.write(true).create(true).truncate(false);
    } else {
        options.read(true);
    }
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o600)
            .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits().cast_signed());
    }
    let file = options.open(path)?;
    crate::file::checked_open::check_regular_and_owned(&file.metadata()?, path)
        .map_err(std::io::Error::other)?;
    if write {
        file.set_len(0)?;
    }
    Ok(file)
}
