//! The form POSTs credlock sends: the refresh request (RFC 6749 §6) and the revocation
//! request (RFC 7009), with their client authentication.

use crate::basics::encoding::{base64, form_urlencode};
use crate::basics::secret::Secret;
use crate::error::Error;
use crate::session::model::{ClientAuth, ClientCredentials, SecretMethod, Session};
use crate::wire::endpoint::require_secure_endpoint;

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

    /// The client-credentials token request (RFC 6749 §4.4.2) for `session`'s client and
    /// `grant`, authenticated with `secret` (read from the grant's variable by the caller).
    #[must_use]
    pub(crate) fn client_credentials(
        session: &Session,
        grant: &ClientCredentials,
        secret: Secret,
    ) -> FormRequest {
        let client = session.client();
        let auth = match grant.method {
            SecretMethod::Basic => ClientAuth::Basic { secret },
            SecretMethod::Post => ClientAuth::Post { secret },
        };
        let authenticated = crate::session::model::Client {
            auth,
            ..client.clone()
        };
        let mut req = FormRequest::for_client(&authenticated, client.token_endpoint());
        req.form
            .insert(0, ("grant_type", Secret::new("client_credentials")));
        let asked = [
            ("scope", &grant.scope),
            ("audience", &grant.audience),
            ("resource", &grant.resource),
        ];
        for (name, value) in asked {
            if let Some(value) = value {
                req.form.push((name, Secret::new(value.as_str())));
            }
        }
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
    pub(crate) fn for_client(client: &crate::session::model::Client, url: &str) -> FormRequest {
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
