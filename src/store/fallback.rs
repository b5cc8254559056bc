//! After `invalid_grant`: look for a sibling's newer session before giving up, and delete
//! nothing unless the store still holds the very refresh token that failed.
//!
//! With working locks, a refresh under the lock that meets `invalid_grant` means the grant is
//! gone, or a process on another machine (whose lock we cannot see) rotated the token. Without
//! working locks (NFS `nolock`, SMB, FUSE), two processes can refresh at once and the loser
//! gets `invalid_grant` while the winner's response is still on its way. Either way, the
//! winner's session shows up in the store within moments: poll for it.
//!
//! This module decides; the store carries the decision out (adopts, refreshes once, or
//! reports the session expired).

use std::time::Duration;

use crate::error::Error;
use crate::session::model::Session;

/// Whether the fallback may refresh once with a newer but stale session it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    Allowed,
    Spent,
}

/// What to do after a refresh token was refused.
#[derive(Debug)]
pub(crate) enum Decision {
    /// A sibling saved a fresh session: use it, send nothing.
    Adopt(Session),
    /// A sibling saved a newer session that is stale too: refresh it, once.
    RefreshOnce(Session),
    /// Nothing newer appeared: the grant is gone. `deleted` if the store still held the
    /// refresh token that failed and that session was removed.
    Expired {
        /// Whether the stale session was deleted.
        deleted: bool,
    },
}

/// What the fallback needs of the store: its reads, its freshness rule, its clock, and the
/// compare-and-delete, which runs under the store's guards (`Held`).
pub(crate) trait StoreAccess {
    /// The store's guards, held: what the compare-and-delete runs under.
    type Held;
    /// The stored session, read as [`crate::Store::load`] reads it.
    fn load(&self) -> Result<Option<Session>, Error>;
    /// Whether `session` is valid beyond the store's margin now.
    fn is_fresh(&self, session: &Session) -> bool;
    /// Waits `pause` on the store's clock.
    fn pause(&self, pause: Duration);
    /// Deletes the stored session if, at the moment of deletion, it still holds `failed`'s
    /// refresh token; whether it did. The compare makes it safe however `held` fares (even a
    /// lease lost meanwhile): another holder's newer session is never deleted.
    fn remove_if_holds_refresh_token_of(
        &self,
        held: &Self::Held,
        failed: &Session,
    ) -> Result<bool, Error>;
}

/// Decides what follows the refusal of `failed`'s refresh token. Polls the store after each
/// pause of `schedule` for a session with another refresh token: a fresh one is adopted; a
/// stale one is refreshed once if `retry` allows (never recursively). If nothing newer
/// appears, compare-and-delete: delete only if the store still holds `failed`'s refresh token.
///
/// The caller holds the guards (`held`) when locks are in use, so the final compare and the
/// delete cannot interleave with a local writer.
pub(crate) fn decide<S: StoreAccess>(
    store: &S,
    held: &S::Held,
    failed: &Session,
    retry: Retry,
    schedule: &[Duration],
) -> Result<Decision, Error> {
    for delay in schedule {
        store.pause(*delay);
        match store.load()? {
            None => return Ok(Decision::Expired { deleted: false }),
            Some(current) if current.refresh_token() != failed.refresh_token() => {
                if store.is_fresh(&current) {
                    return Ok(Decision::Adopt(current));
                }
                if retry == Retry::Allowed {
                    return Ok(Decision::RefreshOnce(current));
                }
            }
            Some(_) => {}
        }
    }
    // The compare and the delete are one step (the file is renamed aside, checked, then
    // deleted or put back), so a winner's save that lands between them survives even where
    // nothing serialises writers (locks off, or not reaching another machine).
    if store.remove_if_holds_refresh_token_of(held, failed)? {
        return Ok(Decision::Expired { deleted: true });
    }
    Ok(match store.load()? {
        None => Decision::Expired { deleted: false },
        Some(current) if store.is_fresh(&current) => Decision::Adopt(current),
        Some(current)
            if retry == Retry::Allowed && current.refresh_token() != failed.refresh_token() =>
        {
            Decision::RefreshOnce(current)
        }
        // A newer session that is stale, and our one retry is spent: leave it for the next
        // caller rather than delete a session this process did not see fail.
        Some(_) => Decision::Expired { deleted: false },
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::time::SystemTime;

    use super::*;
    use crate::session::model::{Client, ClientAuth};
    use crate::session::token_response::TokenResponse;

    /// A store whose reads are scripted, one answer per read.
    struct Scripted {
        reads: RefCell<VecDeque<Option<Session>>>,
        holds_failed: bool,
        pauses: RefCell<Vec<Duration>>,
    }

    impl StoreAccess for Scripted {
        type Held = ();
        fn load(&self) -> Result<Option<Session>, Error> {
            Ok(self
                .reads
                .borrow_mut()
                .pop_front()
                .expect("a scripted read"))
        }
        fn is_fresh(&self, session: &Session) -> bool {
            session.is_fresh(SystemTime::now(), Duration::ZERO)
        }
        fn pause(&self, pause: Duration) {
            self.pauses.borrow_mut().push(pause);
        }
        fn remove_if_holds_refresh_token_of(&self, (): &(), _: &Session) -> Result<bool, Error> {
            Ok(self.holds_failed)
        }
    }

    fn session(refresh_token: &str, fresh: bool) -> Session {
        let client = Client::new("https://as.example/t", "c", ClientAuth::None).expect("client");
        let body = format!(r#"{{"access_token":"a","refresh_token":"{refresh_token}"}}"#);
        let response = TokenResponse::from_json(body.as_bytes()).expect("response");
        let s = Session::from_token_response(client, response, SystemTime::now()).expect("s");
        let at = SystemTime::now() + Duration::from_secs(if fresh { 3600 } else { 0 });
        s.with_expires_at(at)
    }

    fn scripted(reads: Vec<Option<Session>>, holds_failed: bool) -> Scripted {
        Scripted {
            reads: RefCell::new(reads.into()),
            holds_failed,
            pauses: RefCell::new(Vec::new()),
        }
    }

    const SCHEDULE: [Duration; 2] = [Duration::ZERO, Duration::from_millis(25)];

    #[test]
    fn a_fresh_session_of_a_sibling_is_adopted_and_a_stale_one_refreshed_once() {
        let failed = session("rt-1", false);
        let store = scripted(
            vec![Some(failed.clone()), Some(session("rt-2", true))],
            false,
        );
        let d = decide(&store, &(), &failed, Retry::Allowed, &SCHEDULE).expect("decided");
        assert!(matches!(d, Decision::Adopt(s) if s.refresh_token().secret() == "rt-2"));
        assert_eq!(*store.pauses.borrow(), SCHEDULE.to_vec());
        let store = scripted(vec![Some(session("rt-2", false))], false);
        let d = decide(&store, &(), &failed, Retry::Allowed, &SCHEDULE).expect("decided");
        assert!(matches!(d, Decision::RefreshOnce(s) if s.refresh_token().secret() == "rt-2"));
    }

    #[test]
    fn with_the_retry_spent_only_the_failed_session_is_deleted() {
        let failed = session("rt-1", false);
        let stale = session("rt-2", false);
        let store = scripted(
            vec![Some(stale.clone()), Some(stale.clone()), Some(stale)],
            false,
        );
        let d = decide(&store, &(), &failed, Retry::Spent, &SCHEDULE).expect("decided");
        assert!(matches!(d, Decision::Expired { deleted: false }), "{d:?}");
        let store = scripted(vec![Some(failed.clone()), Some(failed.clone())], true);
        let d = decide(&store, &(), &failed, Retry::Spent, &SCHEDULE).expect("decided");
        assert!(matches!(d, Decision::Expired { deleted: true }), "{d:?}");
    }
}
