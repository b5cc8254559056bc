//! After `invalid_grant`: look for a sibling's newer session before giving up, and delete
//! nothing unless the store still holds the very refresh token that failed.
//!
//! With working locks, a refresh under the lock that meets `invalid_grant` means the grant is
//! gone, or a process on another machine (whose lock we cannot see) rotated the token. Without
//! working locks (NFS `nolock`, SMB, FUSE), two processes can refresh at once and the loser
//! gets `invalid_grant` while the winner's response is still on its way. Either way, the
//! winner's session shows up in the store within moments: poll for it.

use crate::error::Error;
use crate::event::Event;
use crate::session::Session;
use crate::store::{AccessToken, Store};

/// Whether the fallback may refresh once with a newer but stale session it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    Allowed,
    Spent,
}

/// Runs after `failed`'s refresh token was refused. Polls the store on the configured
/// schedule for a session with another refresh token: a fresh one is adopted (nothing
/// written); a stale one is refreshed once (never recursively). If nothing newer appears,
/// compare-and-delete: delete only if the store still holds `failed`'s refresh token.
///
/// The caller holds the lock when locks are in use, so the final compare and the delete
/// cannot interleave with a local writer.
pub(crate) fn recover(store: &Store, failed: &Session, retry: Retry) -> Result<AccessToken, Error> {
    for delay in store.poll_schedule() {
        store.clock().sleep(delay);
        match store.load()? {
            None => return Err(expired(store, false)),
            Some(current) if current.refresh_token() != failed.refresh_token() => {
                if store.is_fresh(&current) {
                    store.emit(Event::AdoptedNewerSession {
                        path: store.path().to_path_buf(),
                    });
                    return Ok(AccessToken::from_session(&current, false));
                }
                if retry == Retry::Allowed {
                    return store.refresh_session(current, Retry::Spent);
                }
            }
            Some(_) => {}
        }
    }
    compare_and_delete(store, failed, retry)
}

fn compare_and_delete(store: &Store, failed: &Session, retry: Retry) -> Result<AccessToken, Error> {
    let holds_the_failed_token = |bytes: &[u8]| {
        Session::from_json(bytes, store.path())
            .is_ok_and(|s| s.refresh_token() == failed.refresh_token())
    };
    // The compare and the delete are one step (`remove_if` renames the file aside, checks,
    // then deletes or puts back), so a winner's save that lands between them survives even
    // where nothing serialises writers (locks off, or not reaching another machine).
    if crate::atomic::remove_if(store.path(), holds_the_failed_token)? {
        store.emit(Event::DeletedStaleSession {
            path: store.path().to_path_buf(),
        });
        return Err(expired(store, true));
    }
    match store.load()? {
        None => Err(expired(store, false)),
        Some(current) if store.is_fresh(&current) => {
            store.emit(Event::AdoptedNewerSession {
                path: store.path().to_path_buf(),
            });
            Ok(AccessToken::from_session(&current, false))
        }
        Some(current)
            if retry == Retry::Allowed && current.refresh_token() != failed.refresh_token() =>
        {
            store.refresh_session(current, Retry::Spent)
        }
        // A newer session that is stale, and our one retry is spent: leave it for the next
        // caller rather than delete a session this process did not see fail.
        Some(_) => Err(expired(store, false)),
    }
}

fn expired(store: &Store, deleted: bool) -> Error {
    Error::SessionExpired {
        path: store.path().to_path_buf(),
        deleted,
    }
}
