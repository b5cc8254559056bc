//! RFC 6749 on the wire, without I/O: the refresh request, the token response, the error body.

use serde_json::{Map, Value};

use crate::error::Error;
use crate::http::{HttpResponse, parse_retry_after};
use crate::secret::{EchoGuard, Secret};
use crate::session::{ClientAuth, Session};

/// How long an access token is taken to live when the server sent an `expires_in` that cannot
/// be used (negative, absurd, not a number): the server meant it to expire, so "never"
/// would hand out a dead token until an API says 401; five minutes bounds that to a few
/// minutes at the cost of at most twelve refreshes an hour.
pub(crate) const UNKNOWN_EXPIRES_IN_SECS: u64 = 300;

/// An `expires_in` above this (ten years) is taken as unusable rather than trusted.
const MAX_EXPIRES_IN_SECS: u64 = 10 * 365 * 24 * 3600;

/// A successful token response (RFC 6749 §5.1).
///
/// Parsing is lenient in the ways real servers are sloppy, because a 2xx answer to a refresh
/// has already consumed the refresh token that was sent: refusing it would lose the session.
/// Fields credlock does not model (`id_token`, vendor fields) are kept in `extra` and stored
/// with the session.
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

/// The top-level members of a body serde_json refuses as a whole (a number out of range,
/// invalid UTF-8, deep nesting in a vendor field), each parsed on its own; members that still
/// do not parse are left out. `None` unless it is an object carrying a token.
fn salvaged_object(body: &[u8]) -> Option<Map<String, Value>> {
    let text = String::from_utf8_lossy(body);
    let map: Map<String, Value> = crate::salvage::top_level_members(&text)?
        .into_iter()
        .filter_map(|(key, raw)| Some((key, serde_json::from_str::<Value>(raw).ok()?)))
        .collect();
    (map.contains_key("access_token") || map.contains_key("refresh_token")).then_some(map)
}

/// Why a token response body could not be used. The text never contains the body's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResponseError(String);

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
            other => OAuthErrorCode::Extension(other.to_owned()),
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
    ///
    /// The description is shortened to 200 characters, and dropped if what is left echoes
    /// any of `secrets_sent` in any encoding (any run of eight characters of one, decoded
    /// from percent, base64, hex, JSON or HTML escapes, case-folded); an echoing code becomes
    /// `[redacted]`. `error_uri` and other fields are never shown.
    #[must_use]
    pub fn from_json(body: &[u8], secrets_sent: &[&str]) -> Option<OAuthError> {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        let code = printable(map.get("error")?.as_str()?, 64);
        let guard = EchoGuard::new(secrets_sent);
        // Shortened first: only what is shown can leak, and checking it bounds the work.
        // Control characters are gone by then (a server could split an echo with them).
        let description = map
            .get("error_description")
            .and_then(Value::as_str)
            .map(|d| printable(d, 200))
            .filter(|d| !guard.echoes(d));
        let code = if guard.echoes(&code) {
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

/// The text without control characters (no terminal escapes into a user's stderr), at most
/// `max` characters of it.
fn printable(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
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
            .filter(|(k, _)| {
                matches!(
                    *k,
                    "refresh_token"
                        | "client_secret"
                        | "token"
                        | "code"
                        | "code_verifier"
                        | "device_code"
                )
            })
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
        FormRequest::for_client(session.client(), url)
    }

    /// A request to `url` authenticated as `client` (RFC 6749 §2.3.1), with no other field
    /// yet: a login's code exchange, device authorization and device-code polls.
    pub(crate) fn for_client(client: &crate::session::Client, url: &str) -> FormRequest {
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

/// Checks an endpoint before any credential is sent to it: an absolute `http` or `https` URL
/// with a host and no user information, and plain `http` only to a loopback host
/// (`localhost`, `127.0.0.0/8`, `[::1]`).
///
/// # Errors
/// [`Error::InvalidEndpoint`] for a URL that does not parse or is not usable as an endpoint;
/// [`Error::InsecureEndpoint`] for plain http to another host.
pub(crate) fn require_secure_endpoint(url: &str) -> Result<(), Error> {
    let invalid = |reason: &str| Error::InvalidEndpoint {
        url: display_url(url),
        reason: reason.to_owned(),
    };
    let uri = url
        .parse::<ureq::http::Uri>()
        .map_err(|e| invalid(&format!("not a valid URL ({e})")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("not a valid URL (not absolute)"))?;
    if authority.as_str().contains('@') {
        return Err(invalid(
            "credentials in the URL are not supported (configure the client secret instead)",
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid("not a valid URL (no host)"));
    }
    if authority.as_str().contains(':') && !host.contains(':') && uri.port_u16().is_none() {
        return Err(invalid("not a valid URL (bad port)"));
    }
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("https") => Ok(()),
        Some("http") => {
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(Error::InsecureEndpoint {
                    url: display_url(url),
                })
            }
        }
        _ => Err(invalid(
            "not a valid URL for a token endpoint (the scheme must be https)",
        )),
    }
}

/// An endpoint as shown in an error: at most 200 characters, without user information (which
/// may hold a password).
///
/// Any `@` before the query or fragment is taken for the end of user information, however
/// the URL is malformed (`https:/me:pw@host`, no scheme at all): when in doubt, redact. Only
/// the scheme, if one is recognisable before it, is kept.
pub(crate) fn display_url(url: &str) -> String {
    let head_end = url.find(['?', '#']).unwrap_or(url.len());
    let shown = match url[..head_end].rfind('@') {
        Some(at) => {
            let kept = url
                .find("://")
                .map(|i| i + 3)
                .or_else(|| url.find(':').map(|i| i + 1))
                .filter(|&end| end <= at)
                .unwrap_or(0);
            format!("{}[redacted]@{}", &url[..kept], &url[at + 1..])
        }
        None => url.to_owned(),
    };
    shown.chars().take(200).collect()
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
    /// A 2xx that rotated the refresh token but carries no usable access token: the new
    /// refresh token must still be stored.
    RotatedOnly {
        refresh_token: Secret,
        reason: String,
    },
    InvalidGrant,
    /// The server refused the request for another reason (other OAuth errors, other 4xx).
    Rejected {
        status: u16,
        oauth: Option<OAuthError>,
    },
    /// Try again later (429, 5xx).
    Unavailable {
        status: u16,
        retry_after: Option<std::time::Duration>,
    },
    /// A response that is neither a token nor an error (redirect, HTML, malformed JSON).
    Unusable(String),
}

/// Classifies a token endpoint response (RFC 6749 §5.1, §5.2) received at `now` (for a
/// `Retry-After` date).
pub(crate) fn classify(
    response: &HttpResponse,
    now: std::time::SystemTime,
    secrets_sent: &[&str],
) -> Outcome {
    let status = response.status;
    match status {
        200..=299 => match TokenResponse::parse(&response.body) {
            Ok(r) => Outcome::Refreshed(r),
            Err(Unusable {
                refresh_token: Some(refresh_token),
                error,
            }) => Outcome::RotatedOnly {
                refresh_token,
                reason: format!("HTTP {status} with a new refresh token but {error}"),
            },
            Err(Unusable { error, .. }) => Outcome::Unusable(format!("HTTP {status} but {error}")),
        },
        // 408 Request Timeout and 425 Too Early invite the same request again (RFC 9110
        // §15.5.9, RFC 8470): transient, like 429 and 5xx, never "log in again".
        408 | 425 | 429 | 500..=599 => Outcome::Unavailable {
            status,
            retry_after: response
                .retry_after
                .as_deref()
                .and_then(|v| parse_retry_after(v, now)),
        },
        300..=399 => Outcome::Unusable(format!(
            "HTTP {status}: a redirect, which a token endpoint must not send (not followed)"
        )),
        400..=499 => {
            let oauth = OAuthError::from_json(&response.body, secrets_sent);
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

    fn resp(status: u16, retry_after: Option<&str>, body: &[u8]) -> HttpResponse {
        HttpResponse {
            status,
            retry_after: retry_after.map(str::to_owned),
            body: body.to_vec(),
        }
    }

    fn now() -> std::time::SystemTime {
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
    }

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
            "https://auth example.com/token",
            "https:///token",
            "auth.example.com/token",
            "https://u:pw@as.example/t",
            "https://as.example:port/t",
            "",
        ] {
            assert!(require_secure_endpoint(bad).is_err(), "{bad}");
        }
        let e = require_secure_endpoint("https://").unwrap_err();
        assert!(matches!(e, Error::InvalidEndpoint { .. }), "{e}");
        assert!(!e.to_string().contains("must use https"), "{e}");
        let e = require_secure_endpoint("http://u:pw@127.0.0.1/t").unwrap_err();
        assert!(!e.to_string().contains("pw"), "{e}");
    }

    #[test]
    fn classification_follows_rfc6749() {
        let ig = br#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#;
        assert!(matches!(
            classify(&resp(400, None, ig), now(), &[]),
            Outcome::InvalidGrant
        ));
        let ic = br#"{"error":"invalid_client"}"#;
        assert!(matches!(
            classify(&resp(401, None, ic), now(), &[]),
            Outcome::Rejected {
                status: 401,
                oauth: Some(_)
            }
        ));
        assert!(matches!(
            classify(&resp(403, None, b"<html>"), now(), &[]),
            Outcome::Rejected {
                status: 403,
                oauth: None
            }
        ));
        assert!(matches!(
            classify(&resp(429, None, b""), now(), &[]),
            Outcome::Unavailable { status: 429, .. }
        ));
        assert!(matches!(
            classify(&resp(503, Some("5"), b""), now(), &[]),
            Outcome::Unavailable {
                status: 503,
                retry_after: Some(d)
            } if d == std::time::Duration::from_secs(5)
        ));
        assert!(matches!(
            classify(&resp(302, None, b""), now(), &[]),
            Outcome::Unusable(_)
        ));
        assert!(matches!(
            classify(&resp(200, None, b"<html>"), now(), &[]),
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
