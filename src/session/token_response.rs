//! The successful token response (RFC 6749 §5.1), parsed leniently; built from its fields in
//! `builder.rs`.

mod builder;
mod salvage;

use serde_json::{Map, Value};

use crate::basics::encoding::describe_json_error;
use crate::basics::secret::Secret;

pub use builder::TokenResponseBuilder;

/// How long an access token is taken to live when the server sent an `expires_in` that cannot
/// be used (negative, absurd, not a number): the server meant it to expire, so "never"
/// would hand out a dead token until an API says 401; five minutes bounds that to a few
/// minutes at the cost of at most twelve refreshes an hour.
pub(crate) const UNKNOWN_EXPIRES_IN_SECS: u64 = 300;

/// An `expires_in` above this (ten years) is taken as unusable rather than trusted.
pub(crate) const MAX_EXPIRES_IN_SECS: u64 = 10 * 365 * 24 * 3600;

/// The top-level members of a body serde_json refuses as a whole (a number out of range,
/// invalid UTF-8, deep nesting in a vendor field), each parsed on its own; members that still
/// do not parse are left out. `None` unless it is an object carrying a token.
fn salvaged_object(body: &[u8]) -> Option<Map<String, Value>> {
    let text = String::from_utf8_lossy(body);
    let map: Map<String, Value> = salvage::top_level_members(&text)?
        .into_iter()
        .filter_map(|(key, raw)| Some((key, serde_json::from_str::<Value>(raw).ok()?)))
        .collect();
    (map.contains_key("access_token") || map.contains_key("refresh_token")).then_some(map)
}

/// A successful token response (RFC 6749 §5.1).
///
/// Parsing is lenient in the ways real servers are sloppy, because a 2xx answer to a refresh
/// has already consumed the refresh token that was sent: refusing it would lose the session.
/// Fields credlock does not model (`id_token`, vendor fields) are kept in `extra` and stored
/// with the session.
///
/// A response that did not arrive as JSON is built with [`TokenResponse::builder`] (or, with
/// the feature `oauth2`, converted from oauth2-rs's). `Debug` shows no token, only the names
/// of the extra fields; there is no `Display`.
#[derive(Clone, PartialEq)]
pub struct TokenResponse {
    pub(crate) access_token: Secret,
    pub(crate) token_type: String,
    pub(crate) expires_in: Option<u64>,
    pub(crate) refresh_token: Option<Secret>,
    pub(crate) scope: Option<String>,
    pub(crate) extra: Map<String, Value>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token)
            .field("scope", &self.scope)
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a token response body could not be used. The text never contains the body's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResponseError(String);

impl ResponseError {
    /// An unusable response, for `reason` (which must not quote it).
    pub(crate) fn new(reason: impl Into<String>) -> ResponseError {
        ResponseError(reason.into())
    }
}

/// A 2xx body without a usable access token, and the refresh token it carried, if any: a
/// rotated refresh token must be stored even when the rest of the body is unusable.
#[derive(Debug)]
pub(crate) struct Unusable {
    pub(crate) refresh_token: Option<Secret>,
    pub(crate) error: ResponseError,
}

impl TokenResponse {
    /// Parses a token response body, leniently:
    ///
    /// - `access_token` is required: a non-empty string.
    /// - `token_type` defaults to `Bearer` when missing or not a string; its case is kept
    ///   (compare it with [`TokenResponse::is_bearer`]). Other types (`mac`, `DPoP`) are kept
    ///   as sent: credlock stores and returns such a token, proving possession is the caller's.
    /// - `scope` may be a string or an array of strings (joined with spaces); anything else is
    ///   ignored, and a refresh then keeps the previous scope.
    /// - `expires_in` may be an integer, a float or a numeric string (`"3600"`, `"3600.0"`);
    ///   fractions are dropped; `0` means already expired. A value that cannot be used
    ///   (negative, over ten years, not a number) means "expiry unknown" and is read as 300 seconds, so the token is
    ///   refreshed after five minutes. A missing or null `expires_in` stays `None`: the server
    ///   said nothing, and the token is used until an API rejects it.
    /// - A leading byte-order mark and anything after the JSON object are ignored.
    /// - Other fields are kept.
    ///
    /// # Errors
    /// [`ResponseError`] when the body is not a JSON object, or has no usable `access_token`.
    /// It never quotes the body.
    pub fn from_json(body: &[u8]) -> Result<TokenResponse, ResponseError> {
        TokenResponse::parse(body).map_err(|u| u.error)
    }

    /// [`TokenResponse::from_json`], keeping the refresh token of a body it refuses.
    pub(crate) fn parse(body: &[u8]) -> Result<TokenResponse, Unusable> {
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let unusable = |refresh_token, reason: String| Unusable {
            refresh_token,
            error: ResponseError(reason),
        };
        let mut map = match serde_json::Deserializer::from_slice(body)
            .into_iter::<Value>()
            .next()
        {
            Some(Ok(Value::Object(map))) => map,
            Some(Ok(_)) => return Err(unusable(None, "the body is JSON but not an object".into())),
            // The server has rotated the refresh token already: a body serde_json refuses for
            // a field credlock does not read still gives up the ones it does.
            Some(Err(e)) => salvaged_object(body).ok_or_else(|| {
                unusable(
                    None,
                    format!("the body is not JSON ({})", describe_json_error(&e)),
                )
            })?,
            None => return Err(unusable(None, "the body is empty".into())),
        };
        let refresh_token = match map.remove("refresh_token") {
            Some(Value::String(s)) if !s.is_empty() => Some(Secret::new(s)),
            _ => None,
        };
        let access_token = match map.remove("access_token") {
            Some(Value::String(s)) if !s.is_empty() => Secret::new(s),
            Some(Value::String(_)) => {
                return Err(unusable(refresh_token, "access_token is empty".into()));
            }
            None | Some(Value::Null) => {
                return Err(unusable(refresh_token, "no access_token".into()));
            }
            Some(_) => {
                return Err(unusable(
                    refresh_token,
                    "access_token is not a string".into(),
                ));
            }
        };
        let token_type = match map.remove("token_type") {
            Some(Value::String(s)) if !s.trim().is_empty() => s,
            _ => "Bearer".to_owned(),
        };
        let scope = match map.remove("scope") {
            Some(Value::String(s)) => Some(s),
            Some(Value::Array(items)) => items
                .iter()
                .map(Value::as_str)
                .collect::<Option<Vec<&str>>>()
                .map(|parts| parts.join(" ")),
            _ => None,
        };
        let expires_in = match map.remove("expires_in") {
            None | Some(Value::Null) => None,
            Some(v) => Some(expires_in_seconds(&v).unwrap_or(UNKNOWN_EXPIRES_IN_SECS)),
        };
        Ok(TokenResponse {
            access_token,
            token_type,
            expires_in,
            refresh_token,
            scope,
            extra: map,
        })
    }

    /// The access token.
    #[must_use]
    pub fn access_token(&self) -> &Secret {
        &self.access_token
    }

    /// The refresh token, if the response carries one.
    #[must_use]
    pub fn refresh_token(&self) -> Option<&Secret> {
        self.refresh_token.as_ref()
    }

    /// `expires_in`, in seconds (300 when the server sent a value that cannot be used).
    #[must_use]
    pub fn expires_in(&self) -> Option<u64> {
        self.expires_in
    }

    /// The token type as sent (`Bearer` when the server sent none).
    #[must_use]
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// Whether the token type is `Bearer`, compared case-insensitively (RFC 6749 §5.1).
    #[must_use]
    pub fn is_bearer(&self) -> bool {
        self.token_type.eq_ignore_ascii_case("bearer")
    }

    /// The response as JSON (the inverse of [`TokenResponse::from_json`]).
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        let mut map = self.extra.clone();
        map.insert("access_token".into(), self.access_token.secret().into());
        map.insert("token_type".into(), self.token_type.clone().into());
        if let Some(e) = self.expires_in {
            map.insert("expires_in".into(), e.into());
        }
        if let Some(r) = &self.refresh_token {
            map.insert("refresh_token".into(), r.secret().into());
        }
        if let Some(s) = &self.scope {
            map.insert("scope".into(), s.clone().into());
        }
        serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
    }
}

/// `expires_in` as whole seconds, if it is usable: a number of seconds from zero (already
/// expired) to ten years, sent as an integer, a float or a numeric string.
fn expires_in_seconds(v: &Value) -> Option<u64> {
    let seconds = match v {
        Value::Number(n) => n.as_u64().map(|s| s as f64).or_else(|| n.as_f64())?,
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<u64>() {
                Ok(n) => n as f64,
                Err(_) => s.parse::<f64>().ok()?,
            }
        }
        _ => return None,
    };
    let whole = if seconds.is_finite() && seconds >= 0.0 {
        seconds.floor() as u64
    } else {
        return None;
    };
    (whole <= MAX_EXPIRES_IN_SECS).then_some(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_are_named_without_values() {
        let e = TokenResponse::from_json(br#"{"access_token":12345678,"token_type":"Bearer"}"#)
            .unwrap_err();
        assert_eq!(e.to_string(), "access_token is not a string");
        let e = TokenResponse::from_json(br#"{"access_token":["sekrit"],"token_type":"x"}"#)
            .unwrap_err();
        assert!(!e.to_string().contains("sekrit"));
    }

    #[test]
    fn success_bodies_are_read_the_way_real_servers_send_them() {
        let parse = |body: &str| TokenResponse::from_json(body.as_bytes()).expect(body);
        let r = parse(r#"{"access_token":"a","token_type":["x"]}"#);
        assert_eq!(r.token_type(), "Bearer");
        let r = parse(r#"{"access_token":"a","token_type":"bearer","x-vendor":1}"#);
        assert_eq!(r.token_type(), "bearer", "case kept for display");
        assert!(r.is_bearer());
        assert!(r.extra.contains_key("x-vendor"));
        assert!(!parse(r#"{"access_token":"a","token_type":"DPoP"}"#).is_bearer());
        let r = parse(r#"{"access_token":"a","scope":["openid","email"]}"#);
        assert_eq!(r.scope.as_deref(), Some("openid email"));
        assert_eq!(parse(r#"{"access_token":"a","scope":[1]}"#).scope, None);
        for (v, want) in [
            ("3600", Some(3600)),
            ("\"3600\"", Some(3600)),
            ("\" 3600.0 \"", Some(3600)),
            ("3599.9", Some(3599)),
            ("null", None),
            ("-5", Some(UNKNOWN_EXPIRES_IN_SECS)),
            ("0", Some(0)),
            ("0.5", Some(0)),
            ("1e300", Some(UNKNOWN_EXPIRES_IN_SECS)),
            ("18446744073709551615", Some(UNKNOWN_EXPIRES_IN_SECS)),
            ("\"NaN\"", Some(UNKNOWN_EXPIRES_IN_SECS)),
            ("\"inf\"", Some(UNKNOWN_EXPIRES_IN_SECS)),
            ("\"soon\"", Some(UNKNOWN_EXPIRES_IN_SECS)),
            ("true", Some(UNKNOWN_EXPIRES_IN_SECS)),
            ("[1]", Some(UNKNOWN_EXPIRES_IN_SECS)),
        ] {
            let r = parse(&format!(r#"{{"access_token":"a","expires_in":{v}}}"#));
            assert_eq!(r.expires_in(), want, "expires_in {v}");
        }
        assert!(TokenResponse::from_json(b"\xEF\xBB\xBF{\"access_token\":\"a\"} trailing").is_ok());
    }

    #[test]
    fn a_refused_success_body_still_yields_its_refresh_token() {
        for body in [
            r#"{"refresh_token":"r2"}"#,
            r#"{"refresh_token":"r2","access_token":""}"#,
            r#"{"refresh_token":"r2","access_token":{"v":1}}"#,
        ] {
            let u = TokenResponse::parse(body.as_bytes()).expect_err(body);
            assert_eq!(
                u.refresh_token.as_ref().map(Secret::secret),
                Some("r2"),
                "{body}"
            );
        }
        for body in [&b"<html>"[..], b"[]", b"", br#"{"refresh_token":""}"#] {
            assert!(
                TokenResponse::parse(body)
                    .expect_err("refused")
                    .refresh_token
                    .is_none()
            );
        }
    }
}
