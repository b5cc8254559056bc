//! The authorization response (RFC 6749 §4.1.2) as a redirect carries it, for the loopback
//! listener and the paste flow alike: a code or an error, once its `state` matched.

use crate::basics::encoding::form_urldecode;
use crate::error::Error;

/// What the authorization server's redirect carried, once its `state` matched.
#[derive(Debug)]
pub(crate) enum Redirect {
    Code(String),
    /// `error` (and `error_description`) instead of a code.
    Error {
        code: String,
        description: Option<String>,
    },
}

/// The redirect's parameters (RFC 6749 §4.1.2), checked against the login's `state`
/// exactly (a missing `state` is a mismatch).
pub(crate) fn redirect_from_query(query: &str, state: &str) -> Result<Redirect, Error> {
    let mut code = None;
    let mut error = None;
    let mut description = None;
    let mut got_state = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = form_urldecode(v).unwrap_or_default();
        match k {
            "code" => code = Some(v),
            "state" => got_state = Some(v),
            "error" => error = Some(v),
            "error_description" => description = Some(v),
            _ => {}
        }
    }
    if got_state.as_deref() != Some(state) {
        return Err(Error::LoginStateMismatch);
    }
    let printable = |s: String| s.chars().filter(|c| !c.is_control()).take(200).collect();
    match (error, code) {
        (Some(code), _) => Ok(Redirect::Error {
            code: printable(code),
            description: description.map(printable),
        }),
        (None, Some(code)) if !code.is_empty() => Ok(Redirect::Code(code)),
        _ => Err(Error::LoginInvalidResponse {
            endpoint: "the authorization endpoint".to_owned(),
            reason: "the redirect carries neither a code nor an error".to_owned(),
        }),
    }
}
