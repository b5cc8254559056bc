//! The stored session: who the client is, the tokens, and when they expire.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::{from_unix_ms, unix_ms};
use crate::error::Error;
use crate::oauth::TokenResponse;
use crate::secret::Secret;

/// The version of the session file format this crate writes and reads.
///
/// A file with a higher version is refused with [`Error::UnsupportedVersion`] and left untouched,
/// so an older credlock never overwrites a newer one's session.
pub const SESSION_FORMAT_VERSION: u32 = 1;

/// The validity margin caps at this fraction of a token's lifetime (one quarter), so that a
/// short-lived token is not considered stale the moment it is issued.
const MARGIN_LIFETIME_DIVISOR: u32 = 4;

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

/// The OAuth client a session belongs to: everything a process needs to refresh it.
///
/// `Debug` shows the endpoints without any user information (a file written by hand, or by
/// a credlock from before endpoints were validated, may carry a password there).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    token_endpoint: String,
    client_id: String,
    auth: ClientAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revocation_endpoint: Option<String>,
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
        crate::oauth::display_url(&self.token_endpoint)
    }

    /// The revocation endpoint as it may be shown, like
    /// [`Client::token_endpoint_for_display`].
    #[must_use]
    pub fn revocation_endpoint_for_display(&self) -> Option<String> {
        self.revocation_endpoint
            .as_deref()
            .map(crate::oauth::display_url)
    }

    /// A client that refreshes at `token_endpoint` as `client_id`, authenticating with `auth`.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] when the endpoint is not an absolute URL with a host (or
    /// carries user information); [`Error::InsecureEndpoint`] when it is not `https://`,
    /// unless its host is a loopback address (`localhost`, `127.0.0.0/8`, `[::1]`).
    ///
    /// # Examples
    /// ```
    /// use credlock::{Client, ClientAuth};
    /// let client = Client::new("https://auth.example.com/oauth/token", "my-cli", ClientAuth::None)?;
    /// assert_eq!(client.client_id(), "my-cli");
    /// assert!(Client::new("http://auth.example.com/token", "my-cli", ClientAuth::None).is_err());
    /// # Ok::<(), credlock::Error>(())
    /// ```
    pub fn new(
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
        auth: ClientAuth,
    ) -> Result<Client, Error> {
        let token_endpoint = token_endpoint.into();
        crate::oauth::require_secure_endpoint(&token_endpoint)?;
        Ok(Client {
            token_endpoint,
            client_id: client_id.into(),
            auth,
            revocation_endpoint: None,
        })
    }

    /// The same client with an RFC 7009 revocation endpoint, used by `logout --revoke`.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`], [`Error::InsecureEndpoint`] under the same rules as the
    /// token endpoint.
    pub fn with_revocation_endpoint(mut self, url: impl Into<String>) -> Result<Client, Error> {
        let url = url.into();
        crate::oauth::require_secure_endpoint(&url)?;
        self.revocation_endpoint = Some(url);
        Ok(self)
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
    version: u32,
    client: Client,
    access_token: Secret,
    token_type: String,
    refresh_token: Secret,
    obtained_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    extra: Map<String, Value>,
}

impl Session {
    /// A session from a successful RFC 6749 §5.1 token response received at `now`
    /// (`expires_in` becomes an absolute expiry).
    ///
    /// # Errors
    /// [`Error::MissingRefreshToken`] when the response carries no refresh token: without one
    /// the session cannot outlive its access token, and storing it would only defer the failure.
    ///
    /// # Examples
    /// ```
    /// use std::time::SystemTime;
    /// use credlock::{Client, ClientAuth, Session, TokenResponse};
    /// let client = Client::new("https://auth.example.com/token", "cli", ClientAuth::None)?;
    /// let response = TokenResponse::from_json(
    ///     br#"{"access_token":"a","token_type":"Bearer","expires_in":3600,"refresh_token":"r","id_token":"x"}"#,
    /// )?;
    /// let session = Session::from_token_response(client, response, SystemTime::now())?;
    /// assert!(session.expires_at().is_some());
    /// assert!(session.extra().contains_key("id_token"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_token_response(
        client: Client,
        response: TokenResponse,
        now: SystemTime,
    ) -> Result<Session, Error> {
        let TokenResponse {
            access_token,
            token_type,
            expires_in,
            refresh_token,
            scope,
            extra,
        } = response;
        let refresh_token = refresh_token.ok_or(Error::MissingRefreshToken)?;
        Ok(Session {
            version: SESSION_FORMAT_VERSION,
            client,
            access_token,
            token_type,
            refresh_token,
            obtained_at_ms: unix_ms(now),
            expires_at_ms: expires_in.map(|s| unix_ms(now).saturating_add(s.saturating_mul(1000))),
            scope,
            extra,
        })
    }

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
        Session {
            version: SESSION_FORMAT_VERSION,
            client: self.client.clone(),
            access_token,
            token_type,
            refresh_token: refresh_token.unwrap_or_else(|| self.refresh_token.clone()),
            obtained_at_ms: unix_ms(now),
            expires_at_ms: expires_in.map(|s| unix_ms(now).saturating_add(s.saturating_mul(1000))),
            scope: scope.or_else(|| self.scope.clone()),
            extra,
        }
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

    /// The refresh token.
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
        if bytes.len() as u64 >= crate::atomic::MAX_FILE_BYTES && !self.extra.is_empty() {
            let mut lean = self.clone();
            lean.extra.clear();
            bytes = serde_json::to_vec(&lean).expect("a Session always serialises");
        }
        bytes.push(b'\n');
        bytes
    }

    /// Parses the bytes of a session file. `path` only names the file in errors.
    ///
    /// # Errors
    /// [`Error::UnsupportedVersion`] for a newer format, [`Error::Corrupt`] for anything that
    /// is not a session. Error text never contains the file's content.
    pub fn from_json(bytes: &[u8], path: &std::path::Path) -> Result<Session, Error> {
        match serde_json::from_slice::<Session>(bytes) {
            Ok(session) if session.version > SESSION_FORMAT_VERSION => {
                Err(Error::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found: u64::from(session.version),
                    supported: SESSION_FORMAT_VERSION,
                })
            }
            Ok(session) if session.version == 0 => Err(Error::Corrupt {
                path: path.to_path_buf(),
                reason: "format version 0 does not exist".to_owned(),
            }),
            Ok(session) => Ok(session),
            Err(e) => {
                // A newer format may not parse as this one: report the version, not the shape.
                #[derive(Deserialize)]
                struct VersionOnly {
                    version: u64,
                }
                if let Ok(v) = serde_json::from_slice::<VersionOnly>(bytes)
                    && v.version > u64::from(SESSION_FORMAT_VERSION)
                {
                    return Err(Error::UnsupportedVersion {
                        path: path.to_path_buf(),
                        found: v.version,
                        supported: SESSION_FORMAT_VERSION,
                    });
                }
                let reason = serde_json::from_slice::<Value>(bytes)
                    .ok()
                    .and_then(|v| misshapen_field(&v))
                    .unwrap_or_else(|| crate::oauth::describe_json_error(&e));
                Err(Error::Corrupt {
                    path: path.to_path_buf(),
                    reason,
                })
            }
        }
    }
}

/// The first field of a session file that is missing or of the wrong type, named (field names
/// are not secrets, values may be): what serde's own message would quote.
fn misshapen_field(v: &Value) -> Option<String> {
    #[derive(Clone, Copy)]
    enum Kind {
        Str,
        Uint,
        Object,
    }
    let check = |parent: &Value, prefix: &str, fields: &[(&str, Kind, bool)]| -> Option<String> {
        let Value::Object(map) = parent else {
            return Some(if prefix.is_empty() {
                "the file is not a JSON object".to_owned()
            } else {
                format!("field `{}` is not an object", prefix.trim_end_matches('.'))
            });
        };
        for (name, kind, required) in fields {
            let ok = match (map.get(*name), kind) {
                (None | Some(Value::Null), _) => !required,
                (Some(Value::String(_)), Kind::Str) => true,
                (Some(Value::Number(n)), Kind::Uint) => n.is_u64(),
                (Some(Value::Object(_)), Kind::Object) => true,
                _ => false,
            };
            if !ok {
                let what = match (map.get(*name), kind) {
                    (None | Some(Value::Null), _) => "is missing",
                    (_, Kind::Str) => "is not a string",
                    (_, Kind::Uint) => "is not an unsigned integer",
                    (_, Kind::Object) => "is not an object",
                };
                return Some(format!("field `{prefix}{name}` {what}"));
            }
        }
        None
    };
    use Kind::{Object, Str, Uint};
    check(
        v,
        "",
        &[
            ("version", Uint, true),
            ("client", Object, true),
            ("access_token", Str, true),
            ("token_type", Str, true),
            ("refresh_token", Str, true),
            ("obtained_at_ms", Uint, true),
            ("expires_at_ms", Uint, false),
            ("scope", Str, false),
            ("extra", Object, false),
        ],
    )
    .or_else(|| {
        check(
            &v["client"],
            "client.",
            &[
                ("token_endpoint", Str, true),
                ("client_id", Str, true),
                ("auth", Object, true),
                ("revocation_endpoint", Str, false),
            ],
        )
    })
    .or_else(|| {
        let auth = &v["client"]["auth"];
        if let Some(e) = check(auth, "client.auth.", &[("method", Str, true)]) {
            return Some(e);
        }
        let needs_secret = match auth["method"].as_str() {
            Some("basic" | "post") => true,
            Some("none") => false,
            _ => {
                return Some(
                    "field `client.auth.method` is not one of basic, post, none".to_owned(),
                );
            }
        };
        check(auth, "client.auth.", &[("secret", Str, needs_secret)])
    })
    .or_else(|| {
        v["version"]
            .as_u64()
            .filter(|v| u32::try_from(*v).is_err())
            .map(|_| "field `version` is out of range".to_owned())
    })
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
}
