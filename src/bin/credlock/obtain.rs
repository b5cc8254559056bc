//! The token every tool integration hands out: the `CREDLOCK_ACCESS_TOKEN` override when it
//! is set (CI), else the store's, refreshed if needed.

use std::time::{Duration, SystemTime};

use credlock::Secret;

use crate::{Failure, Global};

/// The environment variable that replaces the store (as `GH_TOKEN` does for gh).
pub const OVERRIDE_VAR: &str = "CREDLOCK_ACCESS_TOKEN";

/// A token ready to hand to a tool.
pub struct Obtained {
    pub token: Secret,
    /// `None` for the override (its lifetime is unknown) or a session without `expires_in`.
    pub expires_at: Option<SystemTime>,
}

/// The override, if set and not empty.
pub fn override_token() -> Option<Secret> {
    std::env::var(OVERRIDE_VAR)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Secret::new(t.trim()))
}

/// Whether the override is active (for `status`; the value is never shown).
pub fn override_active() -> bool {
    override_token().is_some()
}

/// A valid token. With `min_valid`, a token with less than that left is refreshed even where
/// the store's margin would still hand it out (the margin is capped at a quarter of the
/// lifetime; `--min-valid` is not). The forced refresh goes through the after-rejection
/// path, so that any number of processes wanting more time for the same token cause one.
///
/// A refresh that worked but could not be saved is an error here (unlike `credlock token`,
/// which prints the token first): a tool that got the token would use it while the next
/// refresh would spend the rotated refresh token.
pub fn token(g: &Global, min_valid: Option<Duration>) -> Result<Obtained, Failure> {
    if let Some(token) = override_token() {
        return Ok(Obtained {
            token,
            expires_at: None,
        });
    }
    let store = g.store();
    let mut got = store.access_token()?;
    if let Some(min) = min_valid {
        // Saturating: a --min-valid too far to add to the clock asks for more than any token has.
        let short = |t: &credlock::AccessToken| {
            t.expires_at()
                .is_some_and(|e| SystemTime::now().checked_add(min).is_none_or(|m| e < m))
        };
        if short(&got) && !got.refreshed() {
            got = store.access_token_after_rejection(got.secret())?;
        }
        if short(&got) {
            eprintln!(
                "credlock: warning: the token has less than --min-valid ({} s) left even after a refresh; the server issues shorter-lived tokens",
                min.as_secs()
            );
        }
    }
    Ok(Obtained {
        token: Secret::new(got.secret()),
        expires_at: got.expires_at(),
    })
}

/// Standard input as text, at most 64 KiB (a credential request or a token, never more).
pub fn read_stdin(what: &str) -> Result<String, Failure> {
    use std::io::Read;
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| Failure::Other(format!("could not read {what} on stdin: {e}")))?;
    Ok(text)
}
