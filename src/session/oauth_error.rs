//! The RFC 6749 §5.2 error response, with what a server echoes of our secrets scrubbed.

use serde_json::Value;

use crate::basics::secret::{ECHO_WITHHELD, EchoGuard};

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
#[non_exhaustive]
pub struct OAuthError {
    /// The `error` code.
    pub code: OAuthErrorCode,
    /// `error_description`, shortened, and replaced by "details withheld: they quote a secret
    /// that was sent" if it echoes one.
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
    /// The description is shortened to 200 characters, and replaced by "details withheld:
    /// they quote a secret that was sent" if what is left echoes any of `secrets_sent` in any
    /// encoding (any run of eight characters of one, decoded from percent, base64, hex, JSON
    /// or HTML escapes, case-folded); an echoing code becomes the same notice in brackets.
    /// `error_uri` and other fields are never shown.
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
            .map(|d| {
                if guard.echoes(&d) {
                    ECHO_WITHHELD.to_owned()
                } else {
                    d
                }
            });
        let code = if guard.echoes(&code) {
            format!("[{ECHO_WITHHELD}]")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echoed_secret_in_the_description_or_code_is_replaced_by_the_withheld_notice() {
        let withheld = Some(crate::basics::secret::ECHO_WITHHELD.to_owned());
        let body = br#"{"error":"invalid_grant","error_description":"token rt-123 is bad"}"#;
        let e = OAuthError::from_json(body, &["rt-123"]).expect("parses");
        assert_eq!(e.description, withheld);
        assert_eq!(
            e.to_string(),
            "invalid_grant (details withheld: they quote a secret that was sent)"
        );
        // Found by fuzzing: control characters splitting the echo.
        let body = r#"{"error":"x","error_description":"rt-1\u007f23"}"#;
        let e = OAuthError::from_json(body.as_bytes(), &["rt-123"]).expect("parses");
        assert_eq!(e.description, withheld);
        let body = r#"{"error":"rt-123\u001b[31m"}"#;
        let e = OAuthError::from_json(body.as_bytes(), &["rt-123"]).expect("parses");
        assert_eq!(
            e.code.as_str(),
            "[details withheld: they quote a secret that was sent]"
        );
    }
}
