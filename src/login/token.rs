//! One request to a login endpoint and what its answer means.

use std::time::SystemTime;

use crate::endpoint::display_url;
use crate::error::Error;
use crate::http::{Transport, TransportError, parse_retry_after};
use crate::oauth_error::OAuthError;
use crate::token_response::TokenResponse;

/// What a login endpoint answered, once transport trouble and unusable bodies are errors.
pub(crate) enum Answer<T> {
    /// A 2xx with a usable body.
    Ok(T),
    /// A 4xx, with its RFC 6749 §5.2 error if the body held one.
    Refused {
        status: u16,
        oauth: Option<OAuthError>,
    },
}

/// POSTs `request` and parses a 2xx body with `parse`. Network errors, 429 and 5xx are
/// [`Error::LoginUnavailable`]; a redirect, a bad body or an oversized one are
/// [`Error::LoginInvalidResponse`]. Nothing in the errors quotes a secret that was sent.
pub(crate) fn post<T>(
    transport: &dyn Transport,
    request: &crate::form::FormRequest,
    now: SystemTime,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<Answer<T>, Error> {
    let endpoint = display_url(&request.url);
    let secrets = request.secret_values();
    let guard = crate::secret::EchoGuard::new(&secrets);
    let response = transport.post_form(request).map_err(|e| {
        if let Some(setup) = e.as_setup_error() {
            return setup;
        }
        let text = e.to_string();
        let reason = if guard.echoes(&text) {
            "the response could not be read (details withheld: they quote a secret)".to_owned()
        } else {
            text
        };
        match e {
            TransportError::TooLarge(_) => Error::LoginInvalidResponse {
                endpoint: endpoint.clone(),
                reason,
            },
            _ => Error::LoginUnavailable {
                endpoint: endpoint.clone(),
                reason,
            },
        }
    })?;
    let status = response.status;
    match status {
        200..=299 => {
            parse(&response.body)
                .map(Answer::Ok)
                .map_err(|reason| Error::LoginInvalidResponse {
                    endpoint,
                    reason: format!("HTTP {status} but {reason}"),
                })
        }
        429 | 500..=599 => Err(Error::LoginUnavailable {
            endpoint,
            reason: match response
                .retry_after
                .as_deref()
                .and_then(|v| parse_retry_after(v, now))
            {
                Some(wait) => format!("HTTP {status} (retry after {} s)", wait.as_secs()),
                None => format!("HTTP {status}"),
            },
        }),
        400..=499 => Ok(Answer::Refused {
            status,
            oauth: OAuthError::from_json(&response.body, &secrets),
        }),
        _ => Err(Error::LoginInvalidResponse {
            endpoint,
            reason: format!("unexpected HTTP status {status} (redirects are not followed)"),
        }),
    }
}

/// Parses a token response (RFC 6749 §5.1) without quoting it.
pub(crate) fn parse_tokens(body: &[u8]) -> Result<TokenResponse, String> {
    TokenResponse::parse(body).map_err(|u| u.error.to_string())
}

/// The error for a refused request at `endpoint`: `access_denied` is the user's refusal.
pub(crate) fn refused(endpoint: &str, status: u16, oauth: Option<OAuthError>) -> Error {
    match oauth {
        Some(o) if o.code.as_str() == "access_denied" => Error::LoginDenied {
            description: o.description,
        },
        oauth => Error::LoginRefused {
            endpoint: display_url(endpoint),
            status,
            oauth,
        },
    }
}
