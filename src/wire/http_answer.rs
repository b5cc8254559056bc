//! What an HTTP answer means, for every endpoint credlock talks to: the one table.
//!
//! [`interpret`] maps (endpoint, status, body, secrets sent) to a [`Meaning`]; each call site
//! only turns a meaning into its own [`Error`]. The transient status set, the wording of
//! an unavailable service and the redaction of echoed secrets live here and nowhere else.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::basics::secret::{ECHO_WITHHELD, EchoGuard, Secret};
use crate::error::Error;
use crate::session::oauth_error::OAuthError;
use crate::session::token_response::{TokenResponse, Unusable};
use crate::wire::http::{HttpResponse, TransportError, parse_retry_after};

/// The endpoint an answer came from: the same status means different things at each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// The token endpoint, refreshing (RFC 6749 §6).
    Refresh,
    /// The revocation endpoint (RFC 7009): only a 200 is a success.
    Revocation,
    /// The device authorization endpoint (RFC 8628 §3.1).
    DeviceAuthorization,
    /// The token endpoint, polled for a device code (RFC 8628 §3.4).
    DevicePoll,
    /// The token endpoint, exchanging an authorization code (RFC 6749 §4.1.3).
    CodeExchange,
    /// A metadata document (RFC 8414, OpenID Connect Discovery).
    Discovery,
    /// The authorization endpoint, looked at before the browser opens: only a 400 without a
    /// redirect is a refusal (what servers show for a bad client or redirect URI).
    AuthorizationPeek,
}

impl Endpoint {
    /// Whether the endpoint is one a login talks to.
    fn is_login(self) -> bool {
        !matches!(self, Endpoint::Refresh | Endpoint::Revocation)
    }
}

/// 408 Request Timeout and 425 Too Early invite the same request again (RFC 9110 §15.5.9,
/// RFC 8470): transient, like 429 and 5xx, never "log in again", at every endpoint.
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500..=599)
}

/// What an HTTP answer means at one [`Endpoint`].
#[derive(Debug)]
pub(crate) enum Meaning {
    /// The request did what it asked; a body, if any, is the caller's to parse. At the
    /// [`Endpoint::AuthorizationPeek`], the login may go on.
    Success,
    /// A refresh token refused: `invalid_grant`, or (`stated: false`) an HTTP 400 to a
    /// refresh with an empty body.
    InvalidGrant {
        /// Whether the server said `invalid_grant`.
        stated: bool,
    },
    /// The user refused the login (`access_denied` at a login endpoint).
    Denied { description: Option<String> },
    /// Device polling: not approved yet (`authorization_pending`).
    Pending,
    /// Device polling: poll less often (`slow_down`).
    SlowDown,
    /// Device polling: the device code expired (`expired_token`).
    CodeExpired,
    /// The server refused the request for another reason, with its RFC 6749 §5.2 error if
    /// the body held one (scrubbed of what echoes a secret that was sent).
    Refused {
        status: u16,
        oauth: Option<OAuthError>,
    },
    /// Try again later: [`is_transient_status`]. `reason` is what the error says.
    Unavailable {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// At the [`Endpoint::AuthorizationPeek`]: a redirect, whose target the caller reads.
    Redirect,
    /// At [`Endpoint::Discovery`]: no document at this URL; the next one is tried.
    NotHere,
    /// An answer that is neither a success nor an error (a redirect to a token or
    /// revocation request, a status outside 2xx–5xx); `reason` says which.
    Unusable(String),
}

/// What `response` from `endpoint` means, received at `now` (for a `Retry-After` date).
/// Error texts of the body are shown only once scrubbed of `secrets_sent`.
pub(crate) fn interpret(
    endpoint: Endpoint,
    response: &HttpResponse,
    now: SystemTime,
    secrets_sent: &[&str],
) -> Meaning {
    let status = response.status;
    if is_transient_status(status) {
        let retry_after = response
            .retry_after
            .as_deref()
            .and_then(|v| parse_retry_after(v, now));
        return Meaning::Unavailable {
            retry_after,
            reason: unavailable_reason(endpoint, status, retry_after),
        };
    }
    match endpoint {
        Endpoint::Revocation => match status {
            200 => Meaning::Success,
            _ => Meaning::Refused {
                status,
                oauth: OAuthError::from_json(&response.body, secrets_sent),
            },
        },
        Endpoint::Discovery => match status {
            200..=299 => Meaning::Success,
            _ => Meaning::NotHere,
        },
        Endpoint::AuthorizationPeek => match status {
            400 => Meaning::Refused {
                status,
                oauth: None,
            },
            300..=399 => Meaning::Redirect,
            _ => Meaning::Success,
        },
        Endpoint::Refresh
        | Endpoint::DeviceAuthorization
        | Endpoint::DevicePoll
        | Endpoint::CodeExchange => match status {
            200..=299 => Meaning::Success,
            400..=499 => refused(
                endpoint,
                status,
                OAuthError::from_json(&response.body, secrets_sent),
                response.body.trim_ascii().is_empty(),
            ),
            300..=399 if endpoint == Endpoint::Refresh => Meaning::Unusable(format!(
                "HTTP {status}: a redirect, which a token endpoint must not send (not followed)"
            )),
            _ if endpoint == Endpoint::Refresh => {
                Meaning::Unusable(format!("unexpected HTTP status {status}"))
            }
            _ => Meaning::Unusable(format!(
                "unexpected HTTP status {status} (redirects are not followed)"
            )),
        },
    }
}

/// What a 4xx with `oauth` means at a token or device endpoint.
fn refused(
    endpoint: Endpoint,
    status: u16,
    oauth: Option<OAuthError>,
    empty_body: bool,
) -> Meaning {
    let code = oauth.as_ref().map(|o| o.code.as_str());
    match (endpoint, code) {
        (Endpoint::Refresh, Some("invalid_grant")) => Meaning::InvalidGrant { stated: true },
        // RFC 6749 §5.2 answers a bad request with 400 and names the error. A 400 to a
        // refresh with an EMPTY body (Glewlwyd sends one for reused, revoked and unknown
        // refresh tokens alike) is a refused grant in all but name: the fallback must re-read
        // and compare-and-delete as for one, or the dead session stays and every later call
        // spends a request on it. Only an empty body: a 400 with HTML, text or JSON without
        // `error` is what a proxy, WAF or load balancer answers (nginx "Request Header Or
        // Cookie Too Large") before the server saw the request, and must not delete a valid
        // session.
        (Endpoint::Refresh, None) if status == 400 && empty_body => {
            Meaning::InvalidGrant { stated: false }
        }
        (Endpoint::Refresh, _) => Meaning::Refused { status, oauth },
        (Endpoint::DevicePoll, Some("authorization_pending")) => Meaning::Pending,
        (Endpoint::DevicePoll, Some("slow_down")) => Meaning::SlowDown,
        (Endpoint::DevicePoll, Some("expired_token")) => Meaning::CodeExpired,
        (e, Some("access_denied")) if e.is_login() => Meaning::Denied {
            description: oauth.and_then(|o| o.description),
        },
        _ => Meaning::Refused { status, oauth },
    }
}

/// What an authorization endpoint's redirect back with `error=` means (RFC 6749 §4.1.2.1):
/// the user's refusal for `access_denied`, else a refusal as if answered with a 302.
pub(crate) fn authorization_error(code: &str, description: Option<&str>) -> Meaning {
    let oauth = OAuthError::from_json(
        serde_json::json!({ "error": code, "error_description": description })
            .to_string()
            .as_bytes(),
        &[],
    );
    refused(Endpoint::CodeExchange, 302, oauth, false)
}

/// Why the service is unavailable, as each endpoint's error has always said it.
fn unavailable_reason(endpoint: Endpoint, status: u16, retry_after: Option<Duration>) -> String {
    match endpoint {
        Endpoint::Refresh if status == 429 => "HTTP 429, rate limited".to_owned(),
        Endpoint::Refresh => format!("HTTP {status} from the token endpoint"),
        Endpoint::Revocation => format!("HTTP {status} from the revocation endpoint"),
        Endpoint::Discovery | Endpoint::AuthorizationPeek => format!("HTTP {status}"),
        Endpoint::DeviceAuthorization | Endpoint::DevicePoll | Endpoint::CodeExchange => {
            match retry_after {
                Some(wait) => format!("HTTP {status} (retry after {} s)", wait.as_secs()),
                None => format!("HTTP {status}"),
            }
        }
    }
}

/// What a transport error says, or a placeholder if it quotes one of `secrets_sent` in any
/// encoding the [`EchoGuard`] knows (a malformed header can quote what the server sent,
/// the refresh token included).
pub(crate) fn transport_reason(e: &TransportError, secrets_sent: &[&str]) -> String {
    let text = e.to_string();
    if EchoGuard::new(secrets_sent).echoes(&text) {
        format!("the response could not be read ({ECHO_WITHHELD})")
    } else {
        text
    }
}

/// What a request that got no answer to read means, decided once for every endpoint
/// (refresh, revocation, the login's requests, discovery): what an HTTP 503 means there, try
/// again later (`Ok` with the reason, for the endpoint's "unavailable" error), whatever went
/// wrong on the way; except a transport
/// that cannot be set up, a configuration error ([`Error::TransportSetup`]) that no retry
/// fixes. An answer over the size limit ([`TransportError::TooLarge`]) is in the first group:
/// it was cut at the limit and never read, so nothing says the server refused anything (a
/// proxy's or portal's error page is the usual cause, and passes); the session is kept and
/// the caller may try again, as after a connection dropped mid-body.
pub(crate) fn transport_meaning(
    e: &TransportError,
    secrets_sent: &[&str],
) -> Result<String, Error> {
    match e {
        TransportError::Setup(_) => {
            Err(e.as_setup_error().unwrap_or_else(|| Error::TransportSetup {
                path: None,
                reason: e.to_string(),
            }))
        }
        TransportError::Connect(_)
        | TransportError::Tls(_)
        | TransportError::Timeout(_)
        | TransportError::TooLarge(_)
        | TransportError::Other(_) => Ok(transport_reason(e, secrets_sent)),
    }
}

/// What a token endpoint's answer to a refresh means for the refresh protocol, once a 2xx
/// body is parsed.
#[derive(Debug)]
pub(crate) enum Outcome {
    Refreshed(TokenResponse),
    /// A 2xx that rotated the refresh token but carries no usable access token: the new
    /// refresh token must still be stored.
    RotatedOnly {
        refresh_token: Secret,
        reason: String,
    },
    /// [`Meaning::InvalidGrant`].
    InvalidGrant {
        stated: bool,
    },
    /// [`Meaning::Refused`]: other OAuth errors, other 4xx.
    Rejected {
        status: u16,
        oauth: Option<OAuthError>,
    },
    /// [`Meaning::Unavailable`]: try again later.
    Unavailable {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// A response that is neither a token nor an error (redirect, HTML, malformed JSON).
    Unusable(String),
}

/// Classifies a token endpoint's answer to a refresh (RFC 6749 §5.1, §5.2) received at `now`.
pub(crate) fn classify(response: &HttpResponse, now: SystemTime, secrets_sent: &[&str]) -> Outcome {
    let status = response.status;
    match interpret(Endpoint::Refresh, response, now, secrets_sent) {
        Meaning::Success => match TokenResponse::parse(&response.body) {
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
        Meaning::InvalidGrant { stated } => Outcome::InvalidGrant { stated },
        Meaning::Refused { status, oauth } => Outcome::Rejected { status, oauth },
        Meaning::Unavailable {
            retry_after,
            reason,
        } => Outcome::Unavailable {
            retry_after,
            reason,
        },
        Meaning::Unusable(reason) => Outcome::Unusable(reason),
        // The login and discovery meanings: [`interpret`] gives none of them for a refresh.
        Meaning::Denied { .. }
        | Meaning::Pending
        | Meaning::SlowDown
        | Meaning::CodeExpired
        | Meaning::Redirect
        | Meaning::NotHere => Outcome::Unusable(format!("unexpected HTTP status {status}")),
    }
}

/// The error for a refresh that got no response to read ([`transport_meaning`]).
pub(crate) fn transport_failure(e: &TransportError, path: &Path, secrets_sent: &[&str]) -> Error {
    match transport_meaning(e, secrets_sent) {
        Ok(reason) => Error::Unavailable {
            path: path.to_path_buf(),
            reason,
            retry_after: None,
        },
        Err(setup) => setup,
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

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// Every endpoint, in the order of the table's columns.
    const ENDPOINTS: [Endpoint; 7] = [
        Endpoint::Refresh,
        Endpoint::Revocation,
        Endpoint::DeviceAuthorization,
        Endpoint::DevicePoll,
        Endpoint::CodeExchange,
        Endpoint::Discovery,
        Endpoint::AuthorizationPeek,
    ];

    /// A meaning in a word or two, for the table.
    fn label(meaning: &Meaning) -> String {
        match meaning {
            Meaning::Success => "success".to_owned(),
            Meaning::InvalidGrant { stated: true } => "invalid_grant".to_owned(),
            Meaning::InvalidGrant { stated: false } => "invalid_grant unstated".to_owned(),
            Meaning::Denied { .. } => "denied".to_owned(),
            Meaning::Pending => "pending".to_owned(),
            Meaning::SlowDown => "slow_down".to_owned(),
            Meaning::CodeExpired => "code_expired".to_owned(),
            Meaning::Refused {
                oauth: Some(oauth), ..
            } => format!("refused {}", oauth.code.as_str()),
            Meaning::Refused { oauth: None, .. } => "refused".to_owned(),
            Meaning::Unavailable { .. } => "unavailable".to_owned(),
            Meaning::Redirect => "redirect".to_owned(),
            Meaning::NotHere => "not_here".to_owned(),
            Meaning::Unusable(_) => "unusable".to_owned(),
        }
    }

    #[test]
    fn every_endpoint_gives_every_status_one_meaning() {
        const UNAVAILABLE: [&str; 7] = ["unavailable"; 7];
        #[rustfmt::skip]
        let table: &[(u16, &str, [&str; 7])] = &[
            // status, body: refresh, revocation, device authorization, device poll, code exchange, discovery, authorization peek
            (200, "", ["success", "success", "success", "success", "success", "success", "success"]),
            (204, "", ["success", "refused", "success", "success", "success", "success", "success"]),
            (302, "", ["unusable", "refused", "unusable", "unusable", "unusable", "not_here", "redirect"]),
            (400, r#"{"error":"invalid_grant"}"#, ["invalid_grant", "refused invalid_grant", "refused invalid_grant", "refused invalid_grant", "refused invalid_grant", "not_here", "refused"]),
            (400, r#"{"error":"invalid_request"}"#, ["refused invalid_request", "refused invalid_request", "refused invalid_request", "refused invalid_request", "refused invalid_request", "not_here", "refused"]),
            (400, "", ["invalid_grant unstated", "refused", "refused", "refused", "refused", "not_here", "refused"]),
            (400, "  \r\n", ["invalid_grant unstated", "refused", "refused", "refused", "refused", "not_here", "refused"]),
            // A proxy's 400 page says nothing about the grant: the session is kept.
            (400, "<html>bad request</html>", ["refused", "refused", "refused", "refused", "refused", "not_here", "refused"]),
            (400, r#"{"message":"no"}"#, ["refused", "refused", "refused", "refused", "refused", "not_here", "refused"]),
            (400, r#"{"error":"access_denied"}"#, ["refused access_denied", "refused access_denied", "denied", "denied", "denied", "not_here", "refused"]),
            (400, r#"{"error":"authorization_pending"}"#, ["refused authorization_pending", "refused authorization_pending", "refused authorization_pending", "pending", "refused authorization_pending", "not_here", "refused"]),
            (400, r#"{"error":"slow_down"}"#, ["refused slow_down", "refused slow_down", "refused slow_down", "slow_down", "refused slow_down", "not_here", "refused"]),
            (400, r#"{"error":"expired_token"}"#, ["refused expired_token", "refused expired_token", "refused expired_token", "code_expired", "refused expired_token", "not_here", "refused"]),
            (401, r#"{"error":"invalid_client"}"#, ["refused invalid_client", "refused invalid_client", "refused invalid_client", "refused invalid_client", "refused invalid_client", "not_here", "success"]),
            (401, "", ["refused", "refused", "refused", "refused", "refused", "not_here", "success"]),
            (403, "<html>", ["refused", "refused", "refused", "refused", "refused", "not_here", "success"]),
            (404, "", ["refused", "refused", "refused", "refused", "refused", "not_here", "success"]),
            (408, "", UNAVAILABLE),
            (425, "", UNAVAILABLE),
            (429, "", UNAVAILABLE),
            (500, "", UNAVAILABLE),
            (503, r#"{"error":"invalid_grant"}"#, UNAVAILABLE),
            (599, "", UNAVAILABLE),
            (600, "", ["unusable", "refused", "unusable", "unusable", "unusable", "not_here", "success"]),
        ];
        for (status, body, expected) in table {
            for (endpoint, expected) in ENDPOINTS.iter().zip(expected) {
                let meaning =
                    interpret(*endpoint, &resp(*status, None, body.as_bytes()), now(), &[]);
                assert_eq!(
                    label(&meaning),
                    *expected,
                    "HTTP {status} {body:?} at {endpoint:?}"
                );
            }
        }
    }

    /// Every kind of transport failure, once each (the match makes a new kind a compile
    /// error here until it is listed).
    fn every_transport_error() -> Vec<TransportError> {
        let all = vec![
            TransportError::Connect("refused".into()),
            TransportError::Tls("unknown issuer".into()),
            TransportError::Timeout("30 s".into()),
            TransportError::TooLarge(65_536),
            TransportError::Other("connection reset".into()),
            TransportError::Setup("socks5 proxy".into()),
        ];
        for e in &all {
            match e {
                TransportError::Connect(_)
                | TransportError::Tls(_)
                | TransportError::Timeout(_)
                | TransportError::TooLarge(_)
                | TransportError::Other(_)
                | TransportError::Setup(_) => {}
            }
        }
        all
    }

    /// A request that got no answer to read means one thing at every endpoint, the meaning of
    /// an HTTP 503 (try again later), except a transport that cannot be set up (a
    /// configuration error); and the refresh's error says the same. (The login's requests:
    /// `login::tests`.)
    #[test]
    fn every_transport_error_means_one_thing_at_every_endpoint() {
        for endpoint in ENDPOINTS {
            let at_503 = label(&interpret(endpoint, &resp(503, None, b""), now(), &[]));
            assert_eq!(at_503, "unavailable", "{endpoint:?}");
        }
        for e in every_transport_error() {
            match (&e, transport_meaning(&e, &[])) {
                (TransportError::Setup(_), Err(error)) => {
                    assert!(error.is_configuration(), "{e:?}: {error}");
                }
                (TransportError::Setup(_), Ok(reason)) => panic!("{e:?}: unavailable, {reason}"),
                (_, Ok(reason)) => assert_eq!(reason, e.to_string()),
                (_, Err(error)) => panic!("{e:?}: {error}"),
            }
        }
        for e in every_transport_error() {
            let error = transport_failure(&e, Path::new("s.json"), &[]);
            let setup = matches!(e, TransportError::Setup(_));
            assert_eq!(
                (error.is_transient(), error.is_configuration()),
                (!setup, setup),
                "{e:?} on a refresh: {error}"
            );
        }
    }

    #[test]
    fn the_transient_statuses_are_the_same_everywhere_and_say_when_to_retry() {
        for status in 100..=700 {
            for endpoint in ENDPOINTS {
                let meaning = interpret(endpoint, &resp(status, Some("5"), b""), now(), &[]);
                assert_eq!(
                    matches!(meaning, Meaning::Unavailable { .. }),
                    is_transient_status(status),
                    "HTTP {status} at {endpoint:?}"
                );
                if let Meaning::Unavailable {
                    retry_after,
                    reason,
                } = meaning
                {
                    assert_eq!(retry_after, Some(Duration::from_secs(5)));
                    assert!(reason.starts_with(&format!("HTTP {status}")), "{reason}");
                }
            }
        }
    }

    #[test]
    fn unavailable_says_what_each_endpoint_always_said() {
        let reason = |endpoint, status, retry_after| match interpret(
            endpoint,
            &resp(status, retry_after, b""),
            now(),
            &[],
        ) {
            Meaning::Unavailable { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(Endpoint::Refresh, 429, None),
            "HTTP 429, rate limited"
        );
        assert_eq!(
            reason(Endpoint::Refresh, 503, Some("5")),
            "HTTP 503 from the token endpoint"
        );
        assert_eq!(
            reason(Endpoint::Revocation, 408, None),
            "HTTP 408 from the revocation endpoint"
        );
        assert_eq!(
            reason(Endpoint::CodeExchange, 425, Some("7")),
            "HTTP 425 (retry after 7 s)"
        );
        assert_eq!(reason(Endpoint::DevicePoll, 500, None), "HTTP 500");
        assert_eq!(reason(Endpoint::Discovery, 503, Some("5")), "HTTP 503");
    }

    #[test]
    fn an_echoed_secret_is_scrubbed_at_every_endpoint_that_reads_an_error() {
        let body =
            br#"{"error":"invalid_client","error_description":"client cs-0123456789 unknown"}"#;
        for endpoint in ENDPOINTS {
            match interpret(endpoint, &resp(401, None, body), now(), &["cs-0123456789"]) {
                Meaning::Refused {
                    oauth: Some(oauth), ..
                } => {
                    assert_eq!(oauth.code.as_str(), "invalid_client");
                    assert_eq!(
                        oauth.description.as_deref(),
                        Some(crate::basics::secret::ECHO_WITHHELD),
                        "{endpoint:?}"
                    );
                }
                Meaning::Refused { oauth: None, .. } | Meaning::NotHere | Meaning::Success => {
                    // The peek and discovery do not read error bodies.
                    assert!(
                        matches!(endpoint, Endpoint::Discovery | Endpoint::AuthorizationPeek),
                        "{endpoint:?}"
                    );
                }
                other => panic!("{endpoint:?}: {other:?}"),
            }
        }
        let e = TransportError::Other("bad header: cs-0123456789".to_owned());
        let reason = transport_reason(&e, &["cs-0123456789"]);
        assert!(!reason.contains("cs-0123456789"), "{reason}");
        assert!(
            reason.contains(crate::basics::secret::ECHO_WITHHELD),
            "{reason}"
        );
    }

    #[test]
    fn a_refresh_answer_parses_its_tokens_or_says_why_not() {
        let rotated = br#"{"refresh_token":"rt-2","token_type":"Bearer"}"#;
        assert!(matches!(
            classify(&resp(200, None, rotated), now(), &[]),
            Outcome::RotatedOnly { .. }
        ));
        assert!(matches!(
            classify(&resp(200, None, b"<html>"), now(), &[]),
            Outcome::Unusable(_)
        ));
        assert!(matches!(
            classify(&resp(503, Some("5"), b""), now(), &[]),
            Outcome::Unavailable {
                retry_after: Some(d),
                ..
            } if d == Duration::from_secs(5)
        ));
        assert!(matches!(
            classify(&resp(400, None, b""), now(), &[]),
            Outcome::InvalidGrant { stated: false }
        ));
    }
}
