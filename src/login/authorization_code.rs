//! The authorization code flow with PKCE: in the browser with a loopback redirect, or with
//! the code pasted back.

use std::io::BufRead;
use std::time::Instant;

use super::Login;
use super::loopback::Loopback;
use super::pkce::{Pkce, random_urlsafe};
use super::redirect::Redirect;
use super::token::{self, Answer};
use crate::basics::encoding::form_urlencode;
use crate::basics::secret::Secret;
use crate::error::Error;
use crate::session::model::Session;
use crate::wire::form::FormRequest;
use crate::wire::http_answer::{self, Endpoint, Meaning};

/// The scope that makes an authorization request an OpenID Connect one.
const OPENID: &str = "openid";

impl Login {
    /// Logs in in the browser: listens on 127.0.0.1, calls `open` with the authorization URL
    /// (use [`super::open_browser`]; if it fails, the URL is still handed to `tell`, so the
    /// user can open it by hand), waits for the redirect with this login's `state`, and
    /// exchanges the code with the PKCE verifier. A redirect with another `state` (or none)
    /// gets an error page and the wait goes on: any web page can send one to the port.
    ///
    /// `tell` receives the authorization URL (to print it) before the wait.
    ///
    /// # Errors
    /// - [`Error::LoginRequestRejected`]: before the browser opened, the authorization
    ///   endpoint answered the request (asked without cookies) with an error page (HTTP 400,
    ///   no redirect): it would never redirect back. [`Error::LoginRefused`] when it
    ///   redirected back at once with an `error`.
    /// - [`Error::LoginDenied`]: the user cancelled (`error=access_denied`).
    /// - [`Error::LoginExpired`]: no redirect before the deadline.
    /// - [`Error::LoginAborted`]: the loopback port could not be bound.
    /// - [`Error::LoginUnsupported`]: no authorization endpoint is known.
    /// - [`Error::LoginRefused`], [`Error::LoginUnavailable`], [`Error::LoginInvalidResponse`],
    ///   [`Error::MissingRefreshToken`] from the code exchange.
    pub fn browser(
        &self,
        open: &dyn Fn(&str) -> std::io::Result<()>,
        tell: &mut dyn FnMut(&str),
    ) -> Result<Session, Error> {
        let deadline = super::instant_after(Instant::now(), self.deadline);
        let loopback = Loopback::bind(self.port)?;
        let redirect_uri = loopback.redirect_uri();
        let (url, state, pkce, nonce) = self.authorization_url(&redirect_uri)?;
        self.refused_before_the_browser(&url, &redirect_uri)?;
        tell(&url);
        // A browser that cannot be started is not the end: the user was told the URL.
        let _ = open(&url);
        let redirect = loopback.wait(&state, deadline)?;
        drop(loopback);
        self.exchange(redirect, &redirect_uri, &pkce, nonce.as_deref())
    }

    /// Looks at the authorization URL without cookies before the browser opens, so that a
    /// request the server refuses outright fails now rather than at the deadline: such a
    /// server shows an error page and never redirects back (an unregistered redirect URI,
    /// an unknown client), or redirects back at once with `error=`.
    ///
    /// Only two answers are refusals: HTTP 400 without a redirect (what RFC 6749 §4.1.2.1
    /// servers show for a bad client or redirect URI), and a redirect to `redirect_uri`
    /// carrying `error`. A login page (200), a redirect to one, 401 (an HTTP authentication
    /// prompt the browser answers), 403 (bot filters that let browsers through), any other
    /// status and a peek that fails or times out let the login go on as before.
    fn refused_before_the_browser(&self, url: &str, redirect_uri: &str) -> Result<(), Error> {
        let timeout = crate::wire::http::PEEK_TIMEOUT.min(self.deadline);
        let Ok(peek) = self.transport.peek(url, timeout) else {
            return Ok(());
        };
        let endpoint = self.endpoints.authorization().unwrap_or_default();
        let answer = crate::wire::http::HttpResponse {
            status: peek.status,
            retry_after: None,
            body: Vec::new(),
        };
        let now = self.clock.now();
        match http_answer::interpret(Endpoint::AuthorizationPeek, &answer, now, &[]) {
            // Only a 400 that leads nowhere: one with a Location sends the browser on.
            Meaning::Refused { status, .. } if peek.location.is_none() => {
                Err(Error::LoginRequestRejected {
                    endpoint: crate::basics::secret::display_url(endpoint),
                    status,
                    redirect_uri: redirect_uri.to_owned(),
                })
            }
            Meaning::Redirect => {
                let Some(query) = peek
                    .location
                    .as_deref()
                    .and_then(|location| location.strip_prefix(redirect_uri))
                    .and_then(|rest| rest.strip_prefix('?'))
                else {
                    return Ok(());
                };
                let field = |name: &str| {
                    query.split('&').find_map(|p| {
                        let (k, v) = p.split_once('=')?;
                        (k == name).then(|| crate::basics::encoding::form_urldecode(v))?
                    })
                };
                let Some(code) = field("error") else {
                    return Ok(());
                };
                let description = field("error_description");
                Err(token::refused(
                    "the authorization endpoint",
                    302,
                    http_answer::authorization_error(&code, description.as_deref()),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Logs in by pasting: hands the authorization URL to `tell`, reads the code (or the
    /// whole redirect URL, whose `state` is then checked) from `input`, and exchanges it
    /// with the PKCE verifier. The redirect URI is the paste one
    /// ([`Login::with_paste_redirect_uri`]).
    ///
    /// # Errors
    /// As [`Login::browser`]; [`Error::LoginStateMismatch`] when a pasted URL's `state` is
    /// not this login's; [`Error::LoginAborted`] when `input` ends before a code.
    pub fn paste(
        &self,
        input: &mut dyn BufRead,
        tell: &mut dyn FnMut(&str),
    ) -> Result<Session, Error> {
        let redirect_uri = self.paste_redirect_uri.clone();
        let (url, state, pkce, nonce) = self.authorization_url(&redirect_uri)?;
        tell(&url);
        let redirect = super::paste::read_redirect(input, &state)?;
        self.exchange(redirect, &redirect_uri, &pkce, nonce.as_deref())
    }

    /// The authorization URL, its random `state`, the PKCE pair, and the random `nonce` of an
    /// OpenID request (one whose scope holds `openid`).
    ///
    /// OpenID Connect requires `nonce` only for the implicit and hybrid flows, but some servers
    /// (Glewlwyd) refuse any `openid` request without one; sending it always costs nothing,
    /// and the id_token must then echo it.
    fn authorization_url(
        &self,
        redirect_uri: &str,
    ) -> Result<(String, String, Pkce, Option<String>), Error> {
        let endpoint = self
            .endpoints
            .authorization()
            .ok_or_else(|| Error::LoginUnsupported {
                issuer: self.endpoints.name(),
                reason: if self.endpoints.device_authorization().is_some() {
                    "it has no authorization endpoint; use the device flow".to_owned()
                } else {
                    super::no_flow_endpoint("authorization endpoint")
                },
            })?;
        let state = random_urlsafe(24)?;
        let pkce = Pkce::new()?;
        let mut params = vec![
            ("response_type".to_owned(), "code".to_owned()),
            ("client_id".to_owned(), self.client.client_id().to_owned()),
            ("redirect_uri".to_owned(), redirect_uri.to_owned()),
            ("state".to_owned(), state.clone()),
            ("code_challenge".to_owned(), pkce.challenge.clone()),
            ("code_challenge_method".to_owned(), "S256".to_owned()),
        ];
        let openid = self
            .scope()
            .is_some_and(|s| s.split(' ').any(|x| x == OPENID));
        // A nonce the caller gave (`with_param`) goes out with the other parameters, and is
        // the one the id_token must carry.
        let given = self
            .params
            .iter()
            .find(|(k, _)| k == "nonce")
            .map(|(_, v)| v.clone());
        let nonce = match given {
            Some(given) => Some(given),
            None if openid => {
                let nonce = random_urlsafe(24)?;
                params.push(("nonce".to_owned(), nonce.clone()));
                Some(nonce)
            }
            None => None,
        };
        params.extend(self.url_params());
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", form_urlencode(k), form_urlencode(v)))
            .collect();
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        Ok((
            format!("{endpoint}{sep}{}", query.join("&")),
            state,
            pkce,
            nonce,
        ))
    }

    /// Exchanges the code of `redirect` at the token endpoint (RFC 6749 §4.1.3, RFC 7636
    /// §4.5); with a `nonce` sent, an id_token in the answer must carry it (OpenID Connect
    /// Core §3.1.3.7, step 11).
    fn exchange(
        &self,
        redirect: Redirect,
        redirect_uri: &str,
        pkce: &Pkce,
        nonce: Option<&str>,
    ) -> Result<Session, Error> {
        let code = match redirect {
            Redirect::Code(code) => code,
            Redirect::Error { code, description } => {
                let refused = token::refused(
                    "the authorization endpoint",
                    302,
                    http_answer::authorization_error(&code, description.as_deref()),
                );
                // Anyone who read the `state` can send this redirect: say so in the error, so
                // that it ends this login only.
                return Err(match refused {
                    Error::LoginDenied { description, .. } => Error::LoginDenied {
                        description,
                        via_redirect: true,
                    },
                    other => other,
                });
            }
        };
        let mut request = FormRequest::for_client(&self.client, self.endpoints.token());
        request
            .form
            .insert(0, ("grant_type", Secret::new("authorization_code")));
        request.form.insert(1, ("code", Secret::new(code)));
        request
            .form
            .insert(2, ("redirect_uri", Secret::new(redirect_uri)));
        request
            .form
            .insert(3, ("code_verifier", pkce.verifier.clone()));
        let now = self.clock.now();
        match token::post(
            self.transport.as_ref(),
            Endpoint::CodeExchange,
            &request,
            now,
            token::parse_tokens,
        )? {
            Answer::Ok(tokens) => {
                let session = self.session_from(tokens, now)?;
                if let (Some(sent), Some(id_token)) = (nonce, session.id_token())
                    && id_token_nonce(id_token).as_deref() != Some(sent)
                {
                    return Err(Error::LoginInvalidResponse {
                        endpoint: crate::basics::secret::display_url(self.endpoints.token()),
                        reason: "the id_token does not carry the nonce this login sent (an answer to another login, or a replayed one); nothing was stored".to_owned(),
                    });
                }
                Ok(session)
            }
            Answer::Refused { status, meaning } => {
                Err(token::refused(self.endpoints.token(), status, meaning))
            }
        }
    }
}

/// The `nonce` claim of a JWT's payload, read without checking its signature (the id_token
/// is not validated; the nonce only ties this answer to this login).
fn id_token_nonce(id_token: &str) -> Option<String> {
    crate::session::claims::jwt_payload(id_token)?
        .get("nonce")?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod nonce_tests {
    /// An ID token of 64–256 KiB (large group claims) still carries its nonce: only the
    /// claims shown on a terminal are capped at 64 KiB.
    #[test]
    fn a_large_id_token_carries_its_nonce() {
        let b64 = |b: &[u8]| {
            crate::basics::encoding::base64(b)
                .trim_end_matches('=')
                .replace('+', "-")
                .replace('/', "_")
        };
        let payload = serde_json::json!({"nonce": "n-1", "groups": "x".repeat(70_000)}).to_string();
        let jwt = format!(
            "{}.{}.sig",
            b64(br#"{"alg":"RS256"}"#),
            b64(payload.as_bytes())
        );
        assert!(jwt.len() > 64 * 1024 && jwt.len() < 256 * 1024);
        assert_eq!(super::id_token_nonce(&jwt).as_deref(), Some("n-1"));
    }
}
