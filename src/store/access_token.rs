//! The access token a store hands out.

use std::time::SystemTime;

use crate::basics::secret::Secret;
use crate::session::model::Session;

/// A valid access token, as [`crate::Store::access_token`] hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    token: Secret,
    token_type: String,
    expires_at: Option<SystemTime>,
    refreshed: bool,
}

/// A token this call refreshed is the refresh span's success; one another process saved was
/// adopted.
impl crate::trace::Outcome for AccessToken {
    fn outcome(&self) -> Option<&'static str> {
        (!self.refreshed).then_some("adopted")
    }
}

impl AccessToken {
    pub(crate) fn from_session(session: &Session, refreshed: bool) -> AccessToken {
        AccessToken {
            token: session.access_token().clone(),
            token_type: session.token_type().to_owned(),
            expires_at: session.expires_at(),
            refreshed,
        }
    }

    /// The token, for an `Authorization: Bearer …` header.
    #[must_use]
    pub fn secret(&self) -> &str {
        self.token.secret()
    }

    /// The token type, usually `Bearer`.
    #[must_use]
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// When the token expires, if the server said.
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Whether this call sent the refresh request that produced the token.
    #[must_use]
    pub fn refreshed(&self) -> bool {
        self.refreshed
    }
}
