//! Whether a server's refusal is about the client's configuration rather than the grant:
//! the error messages (`mod.rs`) and the classification (`what_to_do.rs`) both ask.

use crate::session::oauth_error::{OAuthError, OAuthErrorCode};

/// Whether a rejection is about the client rather than the grant. RFC 6749 §5.2 answers 401
/// only for a client that failed to authenticate.
pub(super) fn rejects_client(status: u16, oauth: Option<&OAuthError>) -> bool {
    status == 401
        || oauth.is_some_and(|o| {
            matches!(
                o.code,
                OAuthErrorCode::InvalidClient
                    | OAuthErrorCode::UnauthorizedClient
                    | OAuthErrorCode::UnsupportedGrantType
            )
        })
}

/// Whether a refused login is about the client's configuration: a rejected client (as for a
/// refresh), a scope the client may not ask for, a grant type it may not use, or a request
/// the endpoint finds malformed (`invalid_request`: a parameter missing or not allowed, which
/// a new login would send again just the same).
pub(super) fn login_rejects_configuration(status: u16, oauth: Option<&OAuthError>) -> bool {
    rejects_client(status, oauth)
        || oauth.is_some_and(|o| {
            matches!(
                o.code,
                OAuthErrorCode::InvalidScope | OAuthErrorCode::InvalidRequest
            ) || o.code.as_str() == "invalid_target"
                || o.code.as_str() == "unsupported_response_type"
        })
}
