//! One request to a login endpoint and what its answer means.

use std::time::SystemTime;

use crate::basics::secret::display_url;
use crate::error::Error;
use crate::session::token_response::TokenResponse;
use crate::wire::http::Transport;
use crate::wire::http_answer::{self, Endpoint, Meaning};

/// What a login endpoint answered, once transport trouble, transient answers and unusable
/// bodies are errors.
pub(crate) enum Answer<T> {
    /// A 2xx with a usable body.
    Ok(T),
    /// A 4xx: what it means at the endpoint (see [`http_answer::interpret`]).
    Refused { status: u16, meaning: Meaning },
}

/// POSTs `request` to `endpoint` and parses a 2xx body with `parse`. A request that got no
/// answer (`http_answer::transport_meaning`, an oversized one included) and the transient
/// statuses are [`Error::LoginUnavailable`]; a redirect or a bad body are
/// [`Error::LoginInvalidResponse`]. Nothing in the errors quotes a secret
/// that was sent.
pub(crate) fn post<T>(
    transport: &dyn Transport,
    endpoint: Endpoint,
    request: &crate::wire::form::FormRequest,
    now: SystemTime,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<Answer<T>, Error> {
    let url = display_url(&request.url);
    let secrets = request.secret_values();
    let response =
        transport.post_form(request).map_err(|e| {
            match http_answer::transport_meaning(&e, &secrets) {
                Ok(reason) => Error::LoginUnavailable {
                    endpoint: url.clone(),
                    reason,
                },
                Err(setup) => setup,
            }
        })?;
    let status = response.status;
    match http_answer::interpret(endpoint, &response, now, &secrets) {
        Meaning::Success => {
            parse(&response.body)
                .map(Answer::Ok)
                .map_err(|reason| Error::LoginInvalidResponse {
                    endpoint: url,
                    reason: format!("HTTP {status} but {reason}"),
                })
        }
        Meaning::Unavailable { reason, .. } => Err(Error::LoginUnavailable {
            endpoint: url,
            reason,
        }),
        Meaning::Unusable(reason) => Err(Error::LoginInvalidResponse {
            endpoint: url,
            reason,
        }),
        meaning => Ok(Answer::Refused { status, meaning }),
    }
}

/// Parses a token response (RFC 6749 §5.1) without quoting it.
pub(crate) fn parse_tokens(body: &[u8]) -> Result<TokenResponse, String> {
    TokenResponse::parse(body).map_err(|u| u.error.to_string())
}

/// The error for a refusal at `endpoint`: `access_denied` is the user's refusal, an expired
/// device code ends the login.
pub(crate) fn refused(endpoint: &str, status: u16, meaning: Meaning) -> Error {
    match meaning {
        Meaning::Denied { description } => Error::LoginDenied {
            description,
            via_redirect: false,
        },
        Meaning::CodeExpired => Error::LoginExpired {
            what: "the device code expired before it was approved".to_owned(),
        },
        Meaning::Refused { oauth, .. } => Error::LoginRefused {
            endpoint: display_url(endpoint),
            status,
            oauth,
        },
        // The other meanings are not refusals (the device loop handles its own).
        _ => Error::LoginRefused {
            endpoint: display_url(endpoint),
            status,
            oauth: None,
        },
    }
}
