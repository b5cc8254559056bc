//! The token every tool integration hands out: the `CREDLOCK_ACCESS_TOKEN` override when it
//! is set (CI), else the store's, refreshed if needed.

use std::time::{Duration, SystemTime};

use credlock::Secret;

use crate::{Failure, Global};

pub use credlock_cli::config::{OVERRIDE_VAR, override_token};

/// A token ready to hand to a tool.
pub struct Obtained {
    pub token: Secret,
    /// `None` for the override (its lifetime is unknown) or a session without `expires_in`.
    pub expires_at: Option<SystemTime>,
    /// What the store knows of the token; `None` for the override.
    pub stored: Option<FromStore>,
}

/// A token that came from the session (for `token --json`).
pub struct FromStore {
    pub token_type: String,
    /// This call refreshed it.
    pub refreshed: bool,
    /// It is the token the session file holds (false: a refresh or login worked, its save
    /// failed).
    pub saved: bool,
}

impl Obtained {
    /// The token the store handed out (saved in the session file).
    pub fn from_store(token: &credlock::AccessToken) -> Obtained {
        Obtained {
            token: Secret::new(token.secret()),
            expires_at: token.expires_at(),
            stored: Some(FromStore {
                token_type: token.token_type().to_owned(),
                refreshed: token.refreshed(),
                saved: true,
            }),
        }
    }

    /// The `token --json` object (`docs/json.md`): the same keys for the store's token and
    /// the override, null where they do not apply. `error` is the reason a token that
    /// works was not saved.
    pub fn json(&self, error: Option<&credlock::Error>) -> serde_json::Value {
        use credlock::internal::rfc3339;
        let stored = self.stored.as_ref();
        serde_json::json!({
            "access_token": self.token.secret(),
            "token_type": stored.map(|s| s.token_type.as_str()),
            "expires_at": self.expires_at.map(rfc3339),
            "refreshed": stored.map(|s| s.refreshed),
            "saved": stored.map(|s| s.saved),
            "source": if stored.is_some() { "store" } else { "override" },
            "error": error.map(crate::error_json),
        })
    }
}

/// Whether the override is active (for `status`; the value is never shown).
pub fn override_active() -> bool {
    override_token().is_some()
}

/// A valid token. With `min_valid`, one with at least that much left (capped at three
/// quarters of the token's lifetime, see `Store::access_token_valid_for`): any number of
/// processes wanting more time for the same token cause one refresh, and a refresh that fails
/// for a reason that may pass still hands out a token that has not expired, with a warning.
///
/// A refresh that worked but could not be saved is an error here (unlike `credlock token`,
/// which prints the token first): a tool that got the token would use it while the next
/// refresh would spend the rotated refresh token.
pub fn token(g: &Global, min_valid: Option<Duration>) -> Result<Obtained, Failure> {
    if let Some(token) = override_token() {
        return Ok(Obtained {
            token,
            expires_at: None,
            stored: None,
        });
    }
    let store = g.store();
    let got = match min_valid {
        Some(min) => store.access_token_valid_for(min)?,
        None => store.access_token()?,
    };
    if let Some(min) = min_valid {
        warn_if_short(&store, &got, min);
    }
    Ok(Obtained::from_store(&got))
}

/// Says so on stderr when the token has less than `min` left because the server's tokens do
/// not live long enough for it (a token handed out because its refresh failed was already
/// reported by the store's warning).
fn warn_if_short(store: &credlock::Store, got: &credlock::AccessToken, min: Duration) {
    let Some(left) = got
        .expires_at()
        .map(|e| e.duration_since(SystemTime::now()).unwrap_or_default())
    else {
        return;
    };
    if left >= min {
        return;
    }
    let lifetime = store
        .load()
        .ok()
        .flatten()
        .filter(|s| s.access_token().secret() == got.secret())
        .and_then(|s| s.lifetime());
    if let Some(lifetime) = lifetime.filter(|l| *l * 3 / 4 < min) {
        eprintln!(
            "credlock: warning: the token has {} s left, less than --min-valid ({} s): this server issues tokens that live {} s, and --min-valid is capped at three quarters of that",
            left.as_secs(),
            min.as_secs(),
            lifetime.as_secs()
        );
    }
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
