//! The authorization code flow with PKCE: in the browser with a loopback redirect, or with
//! the code pasted back.

use std::io::BufRead;
use std::time::Instant;

use super::Login;
use super::loopback::{Loopback, Redirect};
use super::pkce::{Pkce, random_urlsafe};
use super::token::{self, Answer};
use crate::encoding::form_urlencode;
use crate::error::Error;
use crate::form::FormRequest;
use crate::secret::Secret;
use crate::session::Session;

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
        let (url, state, pkce) = self.authorization_url(&redirect_uri)?;
        tell(&url);
        // A browser that cannot be started is not the end: the user was told the URL.
        let _ = open(&url);
        let redirect = loopback.wait(&state, deadline)?;
        drop(loopback);
        self.exchange(redirect, &redirect_uri, &pkce)
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
        let (url, state, pkce) = self.authorization_url(&redirect_uri)?;
        tell(&url);
        let redirect = super::paste::read_redirect(input, &state)?;
        self.exchange(redirect, &redirect_uri, &pkce)
    }

    /// The authorization URL, its random `state` and the PKCE pair.
    fn authorization_url(&self, redirect_uri: &str) -> Result<(String, String, Pkce), Error> {
        let endpoint = self
            .endpoints
            .authorization()
            .ok_or_else(|| Error::LoginUnsupported {
                issuer: self.endpoints.name(),
                reason: "it has no authorization endpoint; use the device flow".to_owned(),
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
        params.extend(self.url_params());
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", form_urlencode(k), form_urlencode(v)))
            .collect();
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        Ok((format!("{endpoint}{sep}{}", query.join("&")), state, pkce))
    }

    /// Exchanges the code of `redirect` at the token endpoint (RFC 6749 §4.1.3, RFC 7636
    /// §4.5).
    fn exchange(
        &self,
        redirect: Redirect,
        redirect_uri: &str,
        pkce: &Pkce,
    ) -> Result<Session, Error> {
        let code = match redirect {
            Redirect::Code(code) => code,
            Redirect::Error { code, description } => {
                let oauth = crate::oauth_error::OAuthError::from_json(
                    serde_json::json!({ "error": code, "error_description": description })
                        .to_string()
                        .as_bytes(),
                    &[],
                );
                return Err(token::refused("the authorization endpoint", 302, oauth));
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
        match token::post(self.transport.as_ref(), &request, now, token::parse_tokens)? {
            Answer::Ok(tokens) => self.session_from(tokens, now),
            Answer::Refused { status, oauth } => {
                Err(token::refused(self.endpoints.token(), status, oauth))
            }
        }
    }
}
