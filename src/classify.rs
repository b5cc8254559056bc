//! What a token endpoint's HTTP response means for the refresh protocol (RFC 6749 §5.1,
//! §5.2), without I/O.

use std::path::Path;

use crate::error::Error;
use crate::http::{HttpResponse, TransportError, parse_retry_after};
use crate::oauth_error::{OAuthError, OAuthErrorCode};
use crate::secret::{EchoGuard, Secret};
use crate::token_response::{TokenResponse, Unusable};

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
    /// The refresh token was refused: `invalid_grant`, or (`stated: false`) an HTTP 400 with
    /// an empty body.
    InvalidGrant {
        /// Whether the server said `invalid_grant`.
        stated: bool,
    },
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
                }) => Outcome::InvalidGrant { stated: true },
                // RFC 6749 §5.2 answers a bad request with 400 and names the error. A 400
                // to a refresh with an EMPTY body (Glewlwyd sends one for reused, revoked
                // and unknown refresh tokens alike) is a refused grant in all but name: the
                // fallback must re-read and compare-and-delete as for one, or the dead
                // session stays and every later call spends a request on it. Only an empty
                // body: a 400 with HTML, text or JSON without `error` is what a proxy, WAF
                // or load balancer answers (nginx "Request Header Or Cookie Too Large")
                // before the server saw the request, and must not delete a valid session.
                None if status == 400 && response.body.trim_ascii().is_empty() => {
                    Outcome::InvalidGrant { stated: false }
                }
                oauth => Outcome::Rejected { status, oauth },
            }
        }
        _ => Outcome::Unusable(format!("unexpected HTTP status {status}")),
    }
}

/// Why the service is unavailable, as the error says it: "HTTP 429, rate limited", "HTTP 503
/// from the token endpoint".
pub(crate) fn unavailable_reason(status: u16) -> String {
    if status == 429 {
        "HTTP 429, rate limited".to_owned()
    } else {
        format!("HTTP {status} from the token endpoint")
    }
}

/// The error for a refresh that got no response to read: transient, except a body too large
/// (an unusable response). Transport errors can quote what the server sent (a malformed
/// header, say): a text that echoes one of `secrets_sent` is withheld.
pub(crate) fn transport_failure(e: &TransportError, path: &Path, secrets_sent: &[&str]) -> Error {
    if let Some(setup) = e.as_setup_error() {
        return setup;
    }
    let reason = if EchoGuard::new(secrets_sent).echoes(&e.to_string()) {
        "the response could not be read (details withheld: they quote a secret)".to_owned()
    } else {
        e.to_string()
    };
    match e {
        TransportError::TooLarge(_) => Error::InvalidResponse {
            path: path.to_path_buf(),
            reason,
        },
        _ => Error::Unavailable {
            path: path.to_path_buf(),
            reason,
            retry_after: None,
        },
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
    fn classification_follows_rfc6749() {
        let ig = br#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#;
        assert!(matches!(
            classify(&resp(400, None, ig), now(), &[]),
            Outcome::InvalidGrant { stated: true }
        ));
        for empty in [&b""[..], b"  \r\n"] {
            assert!(matches!(
                classify(&resp(400, None, empty), now(), &[]),
                Outcome::InvalidGrant { stated: false }
            ));
        }
        // A proxy's, WAF's or load balancer's 400 page says nothing about the grant: the
        // session is kept.
        for page in [
            &b"<html><head><title>400 Request Header Or Cookie Too Large</title></head></html>"[..],
            br#"{"message":"no"}"#,
            b"Bad Request",
        ] {
            assert!(matches!(
                classify(&resp(400, None, page), now(), &[]),
                Outcome::Rejected {
                    status: 400,
                    oauth: None
                }
            ));
        }
        let ir = br#"{"error":"invalid_request"}"#;
        assert!(matches!(
            classify(&resp(400, None, ir), now(), &[]),
            Outcome::Rejected {
                status: 400,
                oauth: Some(_)
            }
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
}
