//! RFC 6749 on the wire, without I/O: the refresh request, the token response, the error body.

use serde_json::{Map, Value};

use crate::error::Error;
use crate::secret::Secret;
use crate::session::{ClientAuth, Session};

/// A successful token response (RFC 6749 §5.1).
///
/// Parsing ignores nothing silently: fields credlock does not model (`id_token`, vendor fields)
/// are kept in `extra` and stored with the session.
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

impl TokenResponse {
    /// Parses a token response body.
    ///
    /// `access_token` and `token_type` are required strings; `expires_in` may be a number or a
    /// numeric string (some servers send one); `refresh_token` and `scope` are optional.
    ///
    /// # Errors
    /// [`ResponseError`] naming the field that is missing or of the wrong type, or saying the
    /// body is not a JSON object. It never quotes the body.
    pub fn from_json(body: &[u8]) -> Result<TokenResponse, ResponseError> {
        let mut map = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(ResponseError("the body is JSON but not an object".into())),
            Err(e) => {
                return Err(ResponseError(format!(
                    "the body is not JSON ({})",
                    describe_json_error(&e)
                )));
            }
        };
        let access_token = take_string(&mut map, "access_token")?
            .ok_or_else(|| ResponseError("no access_token".into()))?;
        let token_type = take_string(&mut map, "token_type")?
            .ok_or_else(|| ResponseError("no token_type".into()))?;
        if access_token.is_empty() {
            return Err(ResponseError("access_token is empty".into()));
        }
        let expires_in =
            match map.remove("expires_in") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => Some(
                    n.as_u64()
                        .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                        .ok_or_else(|| ResponseError("expires_in is negative".into()))?,
                ),
                Some(Value::String(s)) => Some(s.trim().parse::<u64>().map_err(|_| {
                    ResponseError("expires_in is a string but not a number".into())
                })?),
                Some(_) => return Err(ResponseError("expires_in is not a number".into())),
            };
        let refresh_token = take_string(&mut map, "refresh_token")?.filter(|s| !s.is_empty());
        let scope = take_string(&mut map, "scope")?;
        Ok(TokenResponse {
            access_token: Secret::new(access_token),
            token_type,
            expires_in,
            refresh_token: refresh_token.map(Secret::new),
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

    /// `expires_in`, in seconds.
    #[must_use]
    pub fn expires_in(&self) -> Option<u64> {
        self.expires_in
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

fn take_string(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ResponseError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ResponseError(format!("{key} is not a string"))),
    }
}

/// The error codes of RFC 6749 §5.2.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OAuthErrorCode {
    /// `invalid_request`
    InvalidRequest,
    /// `invalid_client`
    InvalidClient,
    /// `invalid_grant`: the refresh token is unknown, expired, revoked or already used.
    InvalidGrant,
    /// `unauthorized_client`
    UnauthorizedClient,
    /// `unsupported_grant_type`
    UnsupportedGrantType,
    /// `invalid_scope`
    InvalidScope,
    /// Any other code, as sent.
    Extension(String),
}

impl OAuthErrorCode {
    fn parse(code: &str) -> OAuthErrorCode {
        match code {
            "invalid_request" => OAuthErrorCode::InvalidRequest,
            "invalid_client" => OAuthErrorCode::InvalidClient,
            "invalid_grant" => OAuthErrorCode::InvalidGrant,
            "unauthorized_client" => OAuthErrorCode::UnauthorizedClient,
            "unsupported_grant_type" => OAuthErrorCode::UnsupportedGrantType,
            "invalid_scope" => OAuthErrorCode::InvalidScope,
            other => OAuthErrorCode::Extension(other.chars().take(64).collect()),
        }
    }

    /// The code as sent on the wire.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::Extension(s) => s,
        }
    }
}

/// An RFC 6749 §5.2 error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// The `error` code.
    pub code: OAuthErrorCode,
    /// `error_description`, shortened, and dropped if it echoes a secret that was sent.
    pub description: Option<String>,
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code.as_str())?;
        if let Some(d) = &self.description {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl OAuthError {
    /// Parses an error body; `None` if it is not a JSON object with a string `error`.
    /// The content type is not trusted: some servers send JSON as `text/plain`.
    /// A description that contains any of `secrets_sent` is dropped.
    #[must_use]
    pub fn from_json(body: &[u8], secrets_sent: &[&str]) -> Option<OAuthError> {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        let code = printable(map.get("error")?.as_str()?);
        // Checked after control characters are gone (a server could split an echoed secret
        // with them) and before shortening (a cut could leave half a secret).
        let echoes = |text: &str| {
            secrets_sent
                .iter()
                .any(|s| !s.is_empty() && text.contains(s))
        };
        let description = map
            .get("error_description")
            .and_then(Value::as_str)
            .map(printable)
            .filter(|d| !echoes(d))
            .map(|d| d.chars().take(200).collect::<String>());
        let code = if echoes(&code) {
            "[redacted]".to_owned()
        } else {
            code
        };
        Some(OAuthError {
            code: OAuthErrorCode::parse(&code),
            description,
        })
    }
}

/// The text without control characters (no terminal escapes into a user's stderr).
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// A form POST to an OAuth endpoint, ready for a [`crate::Transport`].
///
/// `Debug` shows the URL and the names of the form fields, never their values or the
/// `Authorization` header.
#[derive(Clone)]
pub struct FormRequest {
    /// Where to POST.
    pub url: String,
    /// The `Authorization` header value, for HTTP Basic client authentication.
    pub authorization: Option<Secret>,
    /// The form fields, in order. Values may be secrets.
    pub form: Vec<(&'static str, Secret)>,
    /// Secrets sent in encoded form (the Basic client secret), to recognise an echo.
    echo_guard: Vec<Secret>,
}

impl std::fmt::Debug for FormRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormRequest")
            .field("url", &self.url)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "fields",
                &self.form.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl FormRequest {
    /// The `application/x-www-form-urlencoded` body.
    #[must_use]
    pub fn body(&self) -> Secret {
        let mut out = String::new();
        for (i, (k, v)) in self.form.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(&form_urlencode(k));
            out.push('=');
            out.push_str(&form_urlencode(v.secret()));
        }
        Secret::new(out)
    }

    /// The secret values this request carries (token, refresh token, client secret, the
    /// Basic credentials), to recognise them if a server echoes one.
    pub(crate) fn secret_values(&self) -> Vec<&str> {
        let mut values: Vec<&str> = self
            .form
            .iter()
            .filter(|(k, _)| matches!(*k, "refresh_token" | "client_secret" | "token"))
            .map(|(_, v)| v.secret())
            .collect();
        values.extend(self.echo_guard.iter().map(Secret::secret));
        if let Some(a) = &self.authorization {
            values.push(a.secret().trim_start_matches("Basic "));
        }
        values
    }

    /// The refresh request for `session` (RFC 6749 §6), with its client authentication.
    #[must_use]
    pub fn refresh(session: &Session) -> FormRequest {
        let mut req = FormRequest::authenticated(session, session.client().token_endpoint());
        req.form
            .insert(0, ("grant_type", Secret::new("refresh_token")));
        req.form
            .insert(1, ("refresh_token", session.refresh_token().clone()));
        req
    }

    /// The RFC 7009 revocation request for the session's refresh token; `Ok(None)` if the
    /// session names no revocation endpoint.
    ///
    /// # Errors
    /// [`Error::InsecureEndpoint`] if the endpoint (as read from the file) is plain http to a
    /// host that is not loopback: the refresh token and client secret are not sent there.
    pub fn revoke(session: &Session) -> Result<Option<FormRequest>, Error> {
        let Some(url) = session.client().revocation_endpoint() else {
            return Ok(None);
        };
        require_secure_endpoint(url)?;
        let mut req = FormRequest::authenticated(session, url);
        req.form
            .insert(0, ("token", session.refresh_token().clone()));
        req.form
            .insert(1, ("token_type_hint", Secret::new("refresh_token")));
        Ok(Some(req))
    }

    fn authenticated(session: &Session, url: &str) -> FormRequest {
        let client = session.client();
        let id = client.client_id();
        let echo_guard = match client.auth() {
            ClientAuth::Basic { secret } => vec![secret.clone()],
            _ => Vec::new(),
        };
        let (authorization, form) = match client.auth() {
            ClientAuth::Basic { secret } => {
                // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
                let pair = format!("{}:{}", form_urlencode(id), form_urlencode(secret.secret()));
                (
                    Some(Secret::new(format!("Basic {}", base64(pair.as_bytes())))),
                    vec![],
                )
            }
            ClientAuth::Post { secret } => (
                None,
                vec![
                    ("client_id", Secret::new(id)),
                    ("client_secret", secret.clone()),
                ],
            ),
            ClientAuth::None => (None, vec![("client_id", Secret::new(id))]),
        };
        FormRequest {
            url: url.to_owned(),
            authorization,
            form,
            echo_guard,
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
#[must_use]
pub fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    out
}

/// The inverse of [`form_urlencode`]; `None` for a malformed escape or non-UTF-8 result.
#[must_use]
pub fn form_urldecode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Standard base64 with padding (RFC 4648 §4).
#[must_use]
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Refuses to send credentials over plain HTTP, except to a loopback host.
pub(crate) fn require_secure_endpoint(url: &str) -> Result<(), Error> {
    let insecure = || Error::InsecureEndpoint {
        url: url.chars().take(200).collect(),
    };
    let lower = url.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("https://") {
        return if rest.is_empty() {
            Err(insecure())
        } else {
            Ok(())
        };
    }
    let rest = lower.strip_prefix("http://").ok_or_else(insecure)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(insecure());
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback { Ok(()) } else { Err(insecure()) }
}

/// A serde_json error described without quoting the input: serde's own messages can contain
/// a fragment of the document (`invalid type: string "…"`), which may be a token.
#[must_use]
pub fn describe_json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "valid JSON of the wrong shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// What a token endpoint's HTTP response means for the refresh protocol.
#[derive(Debug)]
pub(crate) enum Outcome {
    Refreshed(TokenResponse),
    InvalidGrant,
    /// Log in again; keep the stored session (other OAuth errors, other 4xx).
    Rejected {
        status: u16,
        oauth: Option<OAuthError>,
    },
    /// Try again later (429, 5xx).
    Unavailable {
        status: u16,
        retry_after: Option<String>,
    },
    /// A response that is neither a token nor an error (redirect, HTML, malformed JSON).
    Unusable(String),
}

/// Classifies a token endpoint response (RFC 6749 §5.1, §5.2).
pub(crate) fn classify(
    status: u16,
    retry_after: Option<String>,
    body: &[u8],
    secrets_sent: &[&str],
) -> Outcome {
    match status {
        200..=299 => match TokenResponse::from_json(body) {
            Ok(r) => Outcome::Refreshed(r),
            Err(e) => Outcome::Unusable(format!("HTTP {status} but {e}")),
        },
        429 | 500..=599 => Outcome::Unavailable {
            status,
            retry_after,
        },
        300..=399 => Outcome::Unusable(format!(
            "HTTP {status}: a redirect, which a token endpoint must not send (not followed)"
        )),
        400..=499 => {
            let oauth = OAuthError::from_json(body, secrets_sent);
            match oauth {
                Some(OAuthError {
                    code: OAuthErrorCode::InvalidGrant,
                    ..
                }) => Outcome::InvalidGrant,
                oauth => Outcome::Rejected { status, oauth },
            }
        }
        _ => Outcome::Unusable(format!("unexpected HTTP status {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn basic_credentials_are_form_urlencoded_first() {
        assert_eq!(
            form_urlencode("p@ss:w/rd+%&=?"),
            "p%40ss%3Aw%2Frd%2B%25%26%3D%3F"
        );
        assert_eq!(
            form_urldecode("p%40ss%3Aw%2Frd%2B%25%26%3D%3F").as_deref(),
            Some("p@ss:w/rd+%&=?")
        );
        assert_eq!(form_urldecode("a+b").as_deref(), Some("a b"));
        assert_eq!(form_urldecode("%4"), None);
    }

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        for ok in [
            "https://as.example/t",
            "http://127.0.0.1:8080/t",
            "http://localhost/t",
            "http://[::1]:9/t",
            "http://127.5.6.7/t",
        ] {
            assert!(require_secure_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://as.example/t",
            "http://localhost.evil.com/t",
            "http://127.0.0.1@evil.com/t",
            "ftp://x",
            "https://",
            "http://10.0.0.1/t",
        ] {
            assert!(require_secure_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn classification_follows_rfc6749() {
        let ig = br#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#;
        assert!(matches!(
            classify(400, None, ig, &[]),
            Outcome::InvalidGrant
        ));
        let ic = br#"{"error":"invalid_client"}"#;
        assert!(matches!(
            classify(401, None, ic, &[]),
            Outcome::Rejected {
                status: 401,
                oauth: Some(_)
            }
        ));
        assert!(matches!(
            classify(403, None, b"<html>", &[]),
            Outcome::Rejected {
                status: 403,
                oauth: None
            }
        ));
        assert!(matches!(
            classify(429, None, b"", &[]),
            Outcome::Unavailable { status: 429, .. }
        ));
        assert!(matches!(
            classify(503, Some("5".into()), b"", &[]),
            Outcome::Unavailable { status: 503, .. }
        ));
        assert!(matches!(
            classify(302, None, b"", &[]),
            Outcome::Unusable(_)
        ));
        assert!(matches!(
            classify(200, None, b"<html>", &[]),
            Outcome::Unusable(_)
        ));
    }

    #[test]
    fn an_echoed_secret_is_dropped_from_the_description() {
        let body = br#"{"error":"invalid_grant","error_description":"token rt-123 is bad"}"#;
        let e = OAuthError::from_json(body, &["rt-123"]).expect("parses");
        assert_eq!(e.description, None);
        // Found by fuzzing: control characters splitting the echo.
        let body = r#"{"error":"x","error_description":"rt-1\u007f23"}"#;
        let e = OAuthError::from_json(body.as_bytes(), &["rt-123"]).expect("parses");
        assert_eq!(e.description, None);
        let body = r#"{"error":"rt-123\u001b[31m"}"#;
        let e = OAuthError::from_json(body.as_bytes(), &["rt-123"]).expect("parses");
        assert_eq!(e.code.as_str(), "[redacted]");
    }

    #[test]
    fn wrong_types_are_named_without_values() {
        let e = TokenResponse::from_json(br#"{"access_token":12345678,"token_type":"Bearer"}"#)
            .unwrap_err();
        assert_eq!(e.to_string(), "access_token is not a string");
        let e = TokenResponse::from_json(br#"{"access_token":"sekrit","token_type":["sekrit"]}"#)
            .unwrap_err();
        assert!(!e.to_string().contains("sekrit"));
    }
}
