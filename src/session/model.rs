//! The stored session: who the client is, the tokens, and when they expire.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::basics::clock::{from_unix_ms, unix_ms};
use crate::basics::secret::{Secret, display_url};
use crate::session::claims::UnverifiedClaims;
use crate::session::token_response::TokenResponse;

/// The highest version of the session file format this crate reads (and writes).
///
/// A file with a higher version is refused with [`crate::Error::UnsupportedVersion`] and left untouched,
/// so an older credlock never overwrites a newer one's session. A refresh session is still
/// written as version 1, which every credlock reads; a client-credentials session is written
/// as version 2, so that a credlock that does not know the grant refuses it instead of sending
/// its empty refresh token and deleting it after the `invalid_grant`.
pub const SESSION_FORMAT_VERSION: u32 = 2;

/// The format version of a session that holds a refresh token.
pub(crate) const REFRESH_FORMAT_VERSION: u32 = 1;

/// The validity margin caps at this fraction of a token's lifetime (one quarter), so that a
/// short-lived token is not considered stale the moment it is issued.
const MARGIN_LIFETIME_DIVISOR: u32 = 4;

/// A minimum validity asked for (`--min-valid`) caps at this fraction of a token's lifetime
/// (three quarters): a token is used for at least a quarter of its lifetime before such a
/// request refreshes it, so a server issuing tokens shorter than asked for still sees one
/// refresh per token, not one per call.
const MIN_VALID_LIFETIME_FRACTION: (u32, u32) = (3, 4);

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic with the form-urlencoded client id and secret (`client_secret_basic`).
    Basic {
        /// The client secret.
        secret: Secret,
    },
    /// `client_id` and `client_secret` in the request body (`client_secret_post`).
    Post {
        /// The client secret.
        secret: Secret,
    },
    /// A public client: only `client_id` in the body (`none`).
    None,
}

impl ClientAuth {
    /// The method's name as OAuth metadata spells it.
    #[must_use]
    pub fn method_name(&self) -> &'static str {
        match self {
            ClientAuth::Basic { .. } => "client_secret_basic",
            ClientAuth::Post { .. } => "client_secret_post",
            ClientAuth::None => "none",
        }
    }
}

/// How a client-credentials request authenticates the client (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SecretMethod {
    /// HTTP Basic (`client_secret_basic`).
    Basic,
    /// `client_id` and `client_secret` in the request body (`client_secret_post`).
    Post,
}

/// A client-credentials grant (RFC 6749 §4.4): what a session without a refresh token needs
/// to obtain its next access token.
///
/// The session keeps the **name** of the environment variable that holds the client secret,
/// never the secret: the secret alone mints tokens for as long as the client exists, and a
/// session is copied to every instance of a fleet (or kept on a shared Redis). Each process
/// reads the variable when, and only when, it sends a token request.
///
/// # Examples
/// ```
/// use credlock::ClientCredentials;
/// let grant = ClientCredentials::new("BILLING_CLIENT_SECRET")
///     .scope("invoices:read")
///     .audience("https://api.example.com");
/// assert_eq!(grant.secret_env(), "BILLING_CLIENT_SECRET");
/// assert_eq!(grant.method_name(), "client_secret_basic");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCredentials {
    pub(crate) method: SecretMethod,
    pub(crate) secret_env: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resource: Option<String>,
}

impl ClientCredentials {
    /// A grant whose client secret is in the environment variable `secret_env`, sent with
    /// HTTP Basic.
    #[must_use]
    pub fn new(secret_env: impl Into<String>) -> ClientCredentials {
        ClientCredentials {
            method: SecretMethod::Basic,
            secret_env: secret_env.into(),
            scope: None,
            audience: None,
            resource: None,
        }
    }

    /// The same grant, authenticating with `method`.
    #[must_use]
    pub fn method(mut self, method: SecretMethod) -> ClientCredentials {
        self.method = method;
        self
    }

    /// The same grant, asking for `scope` (space-separated).
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> ClientCredentials {
        self.scope = Some(scope.into());
        self
    }

    /// The same grant, asking for a token for `audience` (the `audience` parameter of Auth0
    /// and others).
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> ClientCredentials {
        self.audience = Some(audience.into());
        self
    }

    /// The same grant, asking for a token for `resource` (RFC 8707).
    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> ClientCredentials {
        self.resource = Some(resource.into());
        self
    }

    /// The name of the environment variable that holds the client secret.
    #[must_use]
    pub fn secret_env(&self) -> &str {
        &self.secret_env
    }

    /// The client authentication method as OAuth metadata spells it.
    #[must_use]
    pub fn method_name(&self) -> &'static str {
        match self.method {
            SecretMethod::Basic => "client_secret_basic",
            SecretMethod::Post => "client_secret_post",
        }
    }

    /// The scope asked for, if any.
    #[must_use]
    pub fn requested_scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The audience asked for, if any.
    #[must_use]
    pub fn requested_audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The resource asked for, if any.
    #[must_use]
    pub fn requested_resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }
}

/// A session file larger than this is not a session: credlock refuses to read it, and
/// [`Session::to_json`] never writes one this large.
pub(crate) const MAX_SESSION_FILE_BYTES: u64 = 1024 * 1024;

/// The OAuth client a session belongs to: everything a process needs to refresh it.
///
/// `Debug` shows the endpoints without any user information (a file written by hand, or by
/// a credlock from before endpoints were validated, may carry a password there).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub(crate) token_endpoint: String,
    pub(crate) client_id: String,
    pub(crate) auth: ClientAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) revocation_endpoint: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("token_endpoint", &self.token_endpoint_for_display())
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field(
                "revocation_endpoint",
                &self.revocation_endpoint_for_display(),
            )
            .finish()
    }
}

impl Client {
    /// The token endpoint as it may be shown (in logs, `credlock status`): without user
    /// information, at most 200 characters.
    #[must_use]
    pub fn token_endpoint_for_display(&self) -> String {
        display_url(&self.token_endpoint)
    }

    /// The revocation endpoint as it may be shown, like
    /// [`Client::token_endpoint_for_display`].
    #[must_use]
    pub fn revocation_endpoint_for_display(&self) -> Option<String> {
        self.revocation_endpoint.as_deref().map(display_url)
    }

    /// The token endpoint URL.
    #[must_use]
    pub fn token_endpoint(&self) -> &str {
        &self.token_endpoint
    }

    /// The client id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// How the client authenticates.
    #[must_use]
    pub fn auth(&self) -> &ClientAuth {
        &self.auth
    }

    /// The revocation endpoint, if the session names one.
    #[must_use]
    pub fn revocation_endpoint(&self) -> Option<&str> {
        self.revocation_endpoint.as_deref()
    }
}

/// One OAuth session: the client, the access token, the rotating refresh token, the expiry.
///
/// This is what the session file holds (JSON, with a `version` field). Fields of the token
/// response that credlock does not model, such as `id_token`, are kept in [`Session::extra`]
/// and survive every round trip; a refresh replaces them with the new response's.
///
/// `Debug` prints no secret: tokens are [`Secret`]s and the extra fields show only their names.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub(crate) version: u32,
    pub(crate) client: Client,
    pub(crate) access_token: Secret,
    pub(crate) token_type: String,
    pub(crate) refresh_token: Secret,
    pub(crate) obtained_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub(crate) extra: Map<String, Value>,
    /// A client-credentials session's grant; its `refresh_token` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) grant: Option<ClientCredentials>,
}

impl Session {
    /// The session after a successful refresh at `now`: new access token and expiry; the new
    /// refresh token if the server rotated it, else the old one; the old scope if the response
    /// names none (RFC 6749 §5.1).
    #[must_use]
    pub fn refreshed(&self, response: TokenResponse, now: SystemTime) -> Session {
        let TokenResponse {
            access_token,
            token_type,
            expires_in,
            refresh_token,
            scope,
            extra,
        } = response;
        // A client-credentials session has no refresh token to keep: one the server sends
        // anyway (RFC 6749 §4.4.3 says it should not) is not used.
        let refresh_token = match (&self.grant, refresh_token) {
            (None, Some(rotated)) => rotated,
            _ => self.refresh_token.clone(),
        };
        Session {
            version: self.format_version(),
            client: self.client.clone(),
            access_token,
            token_type,
            refresh_token,
            obtained_at_ms: unix_ms(now),
            expires_at_ms: expires_in.map(|s| unix_ms(now).saturating_add(s.saturating_mul(1000))),
            scope: scope.or_else(|| self.scope.clone()),
            extra,
            grant: self.grant.clone(),
        }
    }

    /// The format version this session is written with: 2 for a client-credentials session
    /// (which an older credlock must refuse), else 1.
    pub(crate) fn format_version(&self) -> u32 {
        if self.grant.is_some() {
            SESSION_FORMAT_VERSION
        } else {
            REFRESH_FORMAT_VERSION
        }
    }

    /// What a save after a token request compares to decide that nothing newer was saved
    /// meanwhile: the refresh token that was sent, or, for a client-credentials session (no
    /// refresh token), the access token that was stale. Every token response replaces the
    /// access token, so the stale one names the session the request was sent for.
    pub(crate) fn replacement_key(&self) -> &Secret {
        match self.grant {
            Some(_) => &self.access_token,
            None => &self.refresh_token,
        }
    }

    /// The client-credentials grant of a session that renews its access token with one
    /// (RFC 6749 §4.4) rather than a refresh token; `None` for a refresh session.
    #[must_use]
    pub fn client_credentials_grant(&self) -> Option<&ClientCredentials> {
        self.grant.as_ref()
    }

    /// The session after a 2xx refresh response that carried a new refresh token but no
    /// usable access token: the new refresh token, and the old access token marked expired at
    /// `now`, so that the next use refreshes with the new refresh token.
    #[must_use]
    pub(crate) fn with_rotated_refresh_token(
        &self,
        refresh_token: Secret,
        now: SystemTime,
    ) -> Session {
        let mut session = self.clone();
        session.refresh_token = refresh_token;
        session.obtained_at_ms = unix_ms(now);
        session.expires_at_ms = Some(unix_ms(now));
        session
    }

    /// The same session with another expiry. Useful to tests and demos that need a session
    /// that expired without waiting for it.
    #[must_use]
    pub fn with_expires_at(mut self, expires_at: SystemTime) -> Session {
        self.expires_at_ms = Some(unix_ms(expires_at));
        self
    }

    /// The OpenID Connect ID token the login (or the last refresh) returned, if any, as sent.
    ///
    /// credlock does **not** validate it: not its signature, nor `iss`, `aud`, `exp`,
    /// `iat` or `nonce`. It is kept as the token endpoint sent it; whoever relies on its
    /// claims must validate it first.
    #[must_use]
    pub fn id_token(&self) -> Option<&str> {
        self.extra
            .get("id_token")
            .and_then(serde_json::Value::as_str)
    }

    /// Which account the ID token says this session is, read **without verifying** the token
    /// (see [`UnverifiedClaims`]): for showing a user, never for an access decision. `None`
    /// when there is no ID token, or it is not a JWT whose payload names `sub`, `email`,
    /// `preferred_username`, `name` or `iss`.
    #[must_use]
    pub fn unverified_id_token_claims(&self) -> Option<UnverifiedClaims> {
        self.id_token().and_then(UnverifiedClaims::decode)
    }

    /// The client this session belongs to.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The access token.
    #[must_use]
    pub fn access_token(&self) -> &Secret {
        &self.access_token
    }

    /// The refresh token; empty for a client-credentials session
    /// ([`Session::client_credentials_grant`]).
    #[must_use]
    pub fn refresh_token(&self) -> &Secret {
        &self.refresh_token
    }

    /// The token type, usually `Bearer`.
    #[must_use]
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// The granted scope, if the server named one.
    #[must_use]
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// When the access token was obtained.
    #[must_use]
    pub fn obtained_at(&self) -> SystemTime {
        from_unix_ms(self.obtained_at_ms)
    }

    /// When the access token expires; `None` when the server gave no `expires_in`, in which
    /// case credlock treats the token as valid until the server says otherwise (an API's 401,
    /// reported through [`crate::Store::access_token_after_rejection`]). An `expires_in` that
    /// could not be read counts as 300 seconds (see [`TokenResponse::from_json`]).
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at_ms.map(from_unix_ms)
    }

    /// The token response fields credlock does not model (such as `id_token`).
    #[must_use]
    pub fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// The file format version this session was read with.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The margin actually applied: `margin`, capped at a quarter of the token's lifetime so
    /// that a short-lived token is not stale the moment it is issued.
    #[must_use]
    pub fn effective_margin(&self, margin: Duration) -> Duration {
        match self.expires_at_ms {
            None => Duration::ZERO,
            Some(exp) => {
                let lifetime = Duration::from_millis(exp.saturating_sub(self.obtained_at_ms));
                margin.min(lifetime / MARGIN_LIFETIME_DIVISOR)
            }
        }
    }

    /// The minimum validity actually required of this token when `min_valid` is asked for
    /// ([`crate::Store::access_token_valid_for`]): `min_valid`, capped at three quarters of
    /// the token's lifetime, so that a server issuing shorter tokens than asked for still
    /// sees one refresh per token, not one per call. Zero for a token without an expiry.
    #[must_use]
    pub fn effective_min_valid(&self, min_valid: Duration) -> Duration {
        let (numerator, denominator) = MIN_VALID_LIFETIME_FRACTION;
        match self.lifetime() {
            None => Duration::ZERO,
            Some(lifetime) => min_valid.min(lifetime / denominator * numerator),
        }
    }

    /// How long the access token was issued for (from when it was obtained to its expiry);
    /// `None` without an expiry.
    #[must_use]
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_at_ms
            .map(|exp| Duration::from_millis(exp.saturating_sub(self.obtained_at_ms)))
    }

    /// Whether the access token has more than [`Session::effective_min_valid`] left at `now`.
    pub(crate) fn is_valid_for(&self, now: SystemTime, min_valid: Duration) -> bool {
        match self.expires_at_ms {
            None => true,
            Some(exp) => {
                let min_ms = u64::try_from(self.effective_min_valid(min_valid).as_millis())
                    .unwrap_or(u64::MAX);
                unix_ms(now).saturating_add(min_ms) < exp
            }
        }
    }

    /// Whether the access token is still valid at `now` with `margin` to spare (the margin
    /// capped as [`Session::effective_margin`] says). A session without an expiry is fresh.
    #[must_use]
    pub fn is_fresh(&self, now: SystemTime, margin: Duration) -> bool {
        match self.expires_at_ms {
            None => true,
            Some(exp) => {
                let margin_ms =
                    u64::try_from(self.effective_margin(margin).as_millis()).unwrap_or(u64::MAX);
                unix_ms(now).saturating_add(margin_ms) < exp
            }
        }
    }

    /// The session as the bytes of a session file: compact JSON (pretty-printing can blow a
    /// long list in a vendor field up several times over), and always a file credlock reads
    /// back: should the fields credlock does not model make it larger than a session file may
    /// be (1 MiB), they are dropped and the tokens kept.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising fails only for maps with non-string keys or failing `Serialize` impls;
        // a session has neither.
        let mut bytes = serde_json::to_vec(self).expect("a Session always serialises");
        if bytes.len() as u64 >= MAX_SESSION_FILE_BYTES && !self.extra.is_empty() {
            let mut lean = self.clone();
            lean.extra.clear();
            bytes = serde_json::to_vec(&lean).expect("a Session always serialises");
        }
        bytes.push(b'\n');
        bytes
    }
}
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("version", &self.version)
            .field("client", &self.client)
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("refresh_token", &self.refresh_token)
            .field("obtained_at_ms", &self.obtained_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("scope", &self.scope)
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .field("grant", &self.grant)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(json: &str) -> TokenResponse {
        TokenResponse::from_json(json.as_bytes()).expect("valid response")
    }

    fn client() -> Client {
        Client::new("https://as.example/token", "cli", ClientAuth::None).expect("https")
    }

    #[test]
    fn expires_in_becomes_an_absolute_expiry() {
        let now = from_unix_ms(1_000_000);
        let s = Session::from_token_response(
            client(),
            response(
                r#"{"access_token":"a","token_type":"Bearer","expires_in":60,"refresh_token":"r"}"#,
            ),
            now,
        )
        .expect("session");
        assert_eq!(s.expires_at(), Some(from_unix_ms(1_060_000)));
    }

    #[test]
    fn margin_is_capped_at_a_quarter_of_the_lifetime() {
        let now = from_unix_ms(0);
        let s = Session::from_token_response(
            client(),
            response(
                r#"{"access_token":"a","token_type":"Bearer","expires_in":4,"refresh_token":"r"}"#,
            ),
            now,
        )
        .expect("session");
        let margin = Duration::from_secs(30);
        assert_eq!(s.effective_margin(margin), Duration::from_secs(1));
        assert!(s.is_fresh(from_unix_ms(2_999), margin));
        assert!(!s.is_fresh(from_unix_ms(3_000), margin));
    }

    #[test]
    fn min_valid_is_capped_at_three_quarters_of_the_lifetime_and_honoured_below_it() {
        let now = from_unix_ms(0);
        let s = Session::from_token_response(
            client(),
            response(
                r#"{"access_token":"a","token_type":"Bearer","expires_in":600,"refresh_token":"r"}"#,
            ),
            now,
        )
        .expect("session");
        assert_eq!(s.lifetime(), Some(Duration::from_secs(600)));
        let asked = Duration::from_secs(900);
        assert_eq!(s.effective_min_valid(asked), Duration::from_secs(450));
        // A token just obtained is good enough for an impossible request ...
        assert!(s.is_valid_for(now, asked));
        // ... until a quarter of its lifetime has passed.
        assert!(s.is_valid_for(from_unix_ms(149_999), asked));
        assert!(!s.is_valid_for(from_unix_ms(150_000), asked));
        // Below the cap, what was asked for.
        let asked = Duration::from_secs(100);
        assert_eq!(s.effective_min_valid(asked), asked);
        assert!(!s.is_valid_for(from_unix_ms(500_000), asked));
    }

    #[test]
    fn a_refresh_without_refresh_token_keeps_the_old_one_and_the_scope() {
        let now = from_unix_ms(0);
        let s = Session::from_token_response(
            client(),
            response(
                r#"{"access_token":"a","token_type":"Bearer","refresh_token":"r","scope":"x y"}"#,
            ),
            now,
        )
        .expect("session");
        let t = s.refreshed(
            response(r#"{"access_token":"b","token_type":"Bearer"}"#),
            now,
        );
        assert_eq!(t.refresh_token().secret(), "r");
        assert_eq!(t.access_token().secret(), "b");
        assert_eq!(t.scope(), Some("x y"));
    }

    #[test]
    fn debug_hides_tokens_and_extra_values() {
        let s = Session::from_token_response(
            Client::new("https://as.example/token", "cli", ClientAuth::Basic { secret: Secret::new("client-secret-zz") })
                .expect("https"),
            response(r#"{"access_token":"access-zz","token_type":"Bearer","refresh_token":"refresh-zz","id_token":"idtok-zz"}"#),
            from_unix_ms(0),
        )
        .expect("session");
        let dbg = format!("{s:?}");
        for needle in ["client-secret-zz", "access-zz", "refresh-zz", "idtok-zz"] {
            assert!(!dbg.contains(needle), "{needle} leaked in {dbg}");
        }
        assert!(dbg.contains("id_token"));
    }

    #[test]
    fn the_unverified_claims_name_the_account_and_a_malformed_id_token_gives_none() {
        let with_id_token = |id_token: &str| {
            let body = serde_json::json!({
                "access_token": "a", "token_type": "Bearer", "refresh_token": "r",
                "id_token": id_token,
            });
            Session::from_token_response(client(), response(&body.to_string()), from_unix_ms(0))
                .expect("session")
        };
        // {"alg":"none"} . {"sub":"u-1","email":"jane@example.com","iss":"https://id.example"}
        let jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1LTEiLCJlbWFpbCI6ImphbmVAZXhhbXBsZS5jb20iLCJpc3MiOiJodHRwczovL2lkLmV4YW1wbGUifQ.";
        let claims = with_id_token(jwt)
            .unverified_id_token_claims()
            .expect("claims");
        assert_eq!(claims.sub.as_deref(), Some("u-1"));
        assert_eq!(claims.account(), Some("jane@example.com"));
        assert_eq!(claims.iss.as_deref(), Some("https://id.example"));
        assert!(!format!("{claims:?}").contains(jwt));
        assert_eq!(with_id_token("idtok-zz").unverified_id_token_claims(), None);
    }
}
