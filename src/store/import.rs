//! A session from a login done elsewhere, in one call: [`Store::import_token_response`] and
//! [`Store::import_json`] turn a token response into a session and save it as
//! [`Store::save`] does.

use super::Store;
use crate::error::Error;
use crate::session::model::{Client, Session};
use crate::session::token_response::{ResponseError, TokenResponse};

impl Store {
    /// Stores the session that `response` starts for `client`, and returns it: the token
    /// response of a login done elsewhere (another OAuth library, a device flow of one's own).
    ///
    /// The response is taken to have arrived now, by the store's clock: its `expires_in`
    /// becomes an absolute expiry from this moment. The session is saved as [`Store::save`]
    /// saves, under the lock, atomically and durably, replacing any stored session.
    ///
    /// # Errors
    /// - [`Error::MissingRefreshToken`]: the response has no refresh token; nothing was stored.
    /// - [`Error::InvalidTokenResponse`]: the access token is empty (as
    ///   [`TokenResponse::from_json`] refuses one); nothing was stored.
    /// - [`Error::NotSaved`]: the save failed (its source says why: [`Error::Io`],
    ///   [`Error::NotASessionFile`], [`Error::LockTimeout`]); the old file is untouched, and
    ///   the error carries the new session, so its access token can still be used.
    ///
    /// # Examples
    /// ```
    /// use credlock::{Client, ClientAuth, Secret, Store, TokenResponse};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::new(dir.path().join("session.json"));
    /// let client = Client::new("https://auth.example.com/oauth/token", "my-cli", ClientAuth::None)?;
    /// let response = TokenResponse::builder(Secret::new("at-1"))
    ///     .refresh_token(Secret::new("rt-1"))
    ///     .expires_in(std::time::Duration::from_secs(3600))
    ///     .build();
    /// let session = store.import_token_response(client, response)?;
    /// assert_eq!(store.load()?, Some(session));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn import_token_response(
        &self,
        client: Client,
        response: TokenResponse,
    ) -> Result<Session, Error> {
        if response.access_token().secret().is_empty() {
            // A built or converted response skips the parser's check: an empty token would
            // replace a working session and be handed out as valid until it expires.
            return Err(Error::InvalidTokenResponse {
                reason: ResponseError::new("access_token is empty"),
            });
        }
        let session = Session::from_token_response(client, response, self.clock.now())?;
        match self.save(&session) {
            Ok(()) => Ok(session),
            Err(source) => Err(Error::NotSaved {
                session: Box::new(session),
                source: Box::new(source),
            }),
        }
    }

    /// [`Store::import_token_response`] for the body of a token response (RFC 6749 §5.1
    /// JSON), read as leniently as [`TokenResponse::from_json`] reads a refresh's: what
    /// `credlock import` does with its standard input.
    ///
    /// # Errors
    /// - [`Error::InvalidTokenResponse`]: the body is not a JSON object or has no usable
    ///   access token; nothing was stored.
    /// - the errors of [`Store::import_token_response`].
    ///
    /// # Examples
    /// ```
    /// use credlock::{Client, ClientAuth, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::new(dir.path().join("session.json"));
    /// let client = Client::new("https://auth.example.com/oauth/token", "my-cli", ClientAuth::None)?;
    /// let body = br#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-1"}"#;
    /// let session = store.import_json(client, body)?;
    /// assert_eq!(session.refresh_token().secret(), "rt-1");
    /// assert_eq!(store.access_token()?.secret(), "at-1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn import_json(&self, client: Client, body: &[u8]) -> Result<Session, Error> {
        self.import_token_response(client, TokenResponse::from_json(body)?)
    }
}
