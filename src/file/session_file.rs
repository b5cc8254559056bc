//! The session file's format: a session from a token response, and a session from the bytes
//! of a file (versioned, and described without quoting the content when it does not parse).

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;

use crate::basics::clock::unix_ms;
use crate::basics::encoding::describe_json_error;
use crate::basics::secret::Secret;
use crate::error::Error;
use crate::session::model::{
    Client, ClientAuth, ClientCredentials, REFRESH_FORMAT_VERSION, SESSION_FORMAT_VERSION, Session,
};
use crate::session::token_response::TokenResponse;

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
            version: REFRESH_FORMAT_VERSION,
            client,
            access_token,
            token_type,
            refresh_token,
            obtained_at_ms: unix_ms(now),
            expires_at_ms: expires_in.map(|s| unix_ms(now).saturating_add(s.saturating_mul(1000))),
            scope,
            extra,
            grant: None,
        })
    }

    /// A client-credentials session (RFC 6749 §4.4) for `client_id` at `token_endpoint`,
    /// holding no token yet: the first [`crate::Store::access_token`] obtains one, and every
    /// later one is obtained once per expiry for all the processes (and, on Redis, the
    /// instances) that share the store, under the same guards as a refresh. The session
    /// keeps the name of the variable that holds the client secret, not the secret.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] or [`Error::InsecureEndpoint`] for an endpoint that is not
    /// https (or http to loopback).
    ///
    /// # Examples
    /// ```
    /// use credlock::{ClientCredentials, Session, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::new(dir.path().join("machine.json"));
    /// let grant = ClientCredentials::new("BILLING_CLIENT_SECRET").audience("https://api.example.com");
    /// let session = Session::client_credentials("https://auth.example.com/oauth/token", "billing", grant)?;
    /// assert!(session.refresh_token().secret().is_empty());
    /// store.save(&session)?;
    /// // `store.access_token()` now requests a token once per expiry, for every process.
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_credentials(
        token_endpoint: &str,
        client_id: &str,
        grant: ClientCredentials,
    ) -> Result<Session, Error> {
        let client = Client::new(token_endpoint, client_id, ClientAuth::None)?;
        Ok(Session {
            version: SESSION_FORMAT_VERSION,
            client,
            access_token: Secret::new(""),
            token_type: "Bearer".to_owned(),
            refresh_token: Secret::new(""),
            obtained_at_ms: 0,
            // Expired since the epoch: the first use obtains a token.
            expires_at_ms: Some(0),
            scope: None,
            extra: serde_json::Map::new(),
            grant: Some(grant),
        })
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
                    .unwrap_or_else(|| describe_json_error(&e));
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
            ("grant", Object, false),
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
