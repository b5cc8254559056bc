//! The fake server's login endpoints: discovery, device authorization (RFC 8628) and the
//! authorization code with PKCE (RFC 7636), with a [`ScriptedUser`] in place of a person.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::endpoints::{error, ok};
use super::{FakeServer, Grant, State, TEST_CLIENT_ID};
use credlock::internal::{form_urldecode, form_urlencode};
use credlock::transport::HttpResponse;

/// The RFC 8628 grant type.
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How long a device code lives (by the server's clock).
const DEVICE_CODE_TTL: Duration = Duration::from_secs(600);
/// The polling interval the server asks for (the login's minimum).
const DEVICE_INTERVAL: u64 = 1;

/// What the person at the other end does when asked to approve a login, for the fake
/// server's device and browser flows.
///
/// Set with [`super::FakeServerBuilder::user`] or, at run time, [`FakeServer::set_user`].
/// Defaults to [`ScriptedUser::approves`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptedUser {
    answer: Answer,
    pending_polls: u32,
    slow_down: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Approve,
    Deny,
    Never,
}

impl ScriptedUser {
    /// Approves: device polls get tokens, the browser is redirected back with a code.
    #[must_use]
    pub fn approves() -> ScriptedUser {
        ScriptedUser {
            answer: Answer::Approve,
            pending_polls: 0,
            slow_down: false,
        }
    }

    /// Refuses: device polls get `access_denied`, the browser is redirected back with
    /// `error=access_denied` (the login fails with [`credlock::Error::LoginDenied`]).
    #[must_use]
    pub fn denies() -> ScriptedUser {
        ScriptedUser {
            answer: Answer::Deny,
            ..ScriptedUser::approves()
        }
    }

    /// Never answers: device polls get `authorization_pending` until the device code
    /// expires (10 minutes by the server's clock), then `expired_token`; the browser stays
    /// on the login page and never comes back. Either way the login ends in
    /// [`credlock::Error::LoginExpired`].
    #[must_use]
    pub fn never_answers() -> ScriptedUser {
        ScriptedUser {
            answer: Answer::Never,
            ..ScriptedUser::approves()
        }
    }

    /// Takes `polls` device polls to answer: those get `authorization_pending` first.
    #[must_use]
    pub fn after_polls(mut self, polls: u32) -> ScriptedUser {
        self.pending_polls = polls;
        self
    }

    /// The first device poll is answered `slow_down` (RFC 8628 §3.5) instead.
    #[must_use]
    pub fn asking_to_slow_down(mut self) -> ScriptedUser {
        self.slow_down = true;
        self
    }
}

impl Default for ScriptedUser {
    fn default() -> ScriptedUser {
        ScriptedUser::approves()
    }
}

/// A device code handed out and not yet redeemed.
#[derive(Debug)]
pub(super) struct DeviceGrant {
    expires_at: SystemTime,
    polls: u32,
}

/// An authorization code handed out and not yet exchanged.
#[derive(Debug)]
pub(super) struct CodeGrant {
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
}

/// The fake server's answer to a browser at the authorization endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AtAuthorization {
    /// A redirect to this URL (the loopback redirect URI with a code or an error).
    Redirect(String),
    /// A page with this status: the login page the user never leaves (200), or an error
    /// page for a request that cannot be redirected back (400).
    Page(u16, String),
}

/// Base64url without padding.
fn base64url(bytes: &[u8]) -> String {
    credlock::internal::base64(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// `http://127.0.0.1:…`, `http://localhost:…` or `http://[::1]:…`: where a native app's
/// loopback redirect may go (RFC 8252 §7.3).
fn is_loopback_redirect(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

pub(super) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_urldecode(k)?, form_urldecode(v)?))
        })
        .collect()
}

impl FakeServer {
    /// What the person at the other end does from now on (see [`ScriptedUser`]).
    pub fn set_user(&self, user: ScriptedUser) {
        self.state().user = user;
    }

    /// The OpenID configuration of an issuer served at `issuer` (`http://127.0.0.1:PORT`
    /// over HTTP, any URL in memory): the kit's endpoints under it.
    #[must_use]
    pub fn discovery_document(&self, issuer: &str) -> Value {
        let issuer = issuer.trim_end_matches('/');
        serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/token"),
            "authorization_endpoint": format!("{issuer}/authorize"),
            "device_authorization_endpoint": format!("{issuer}/device_authorization"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "scopes_supported": ["openid", "offline_access", "profile", "email"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        })
    }

    /// Answers a device authorization request (RFC 8628 §3.1) from the issuer at `issuer`.
    #[must_use]
    pub fn handle_device_authorization(
        &self,
        issuer: &str,
        form: &[(String, String)],
        authorization: Option<&str>,
    ) -> HttpResponse {
        if !self.client_authenticated(form, authorization) {
            return error(401, "invalid_client", "client authentication failed");
        }
        let issuer = issuer.trim_end_matches('/');
        let mut st = self.state();
        st.next_id += 1;
        let n = st.next_id;
        let device_code = format!("dc-{:x}-{n}", self.nonce);
        let user_code = format!("WDJB-{n:04}");
        st.device_codes.insert(
            device_code.clone(),
            DeviceGrant {
                expires_at: self.clock.now() + DEVICE_CODE_TTL,
                polls: 0,
            },
        );
        st.counters.device_authorizations += 1;
        ok(serde_json::json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": format!("{issuer}/device"),
            "verification_uri_complete": format!("{issuer}/device?user_code={user_code}"),
            "expires_in": DEVICE_CODE_TTL.as_secs(),
            "interval": DEVICE_INTERVAL,
        })
        .to_string()
        .into_bytes())
    }

    /// A device-code poll at the token endpoint (RFC 8628 §3.4, §3.5).
    fn device_poll(&self, st: &mut State, device_code: &str) -> HttpResponse {
        let user = st.user;
        let now = self.clock.now();
        let Some(grant) = st.device_codes.get_mut(device_code) else {
            return error(400, "invalid_grant", "unknown or used device code");
        };
        grant.polls += 1;
        let polls = grant.polls;
        if now >= grant.expires_at {
            st.device_codes.remove(device_code);
            return error(400, "expired_token", "the device code expired");
        }
        if user.slow_down && polls == 1 {
            return error(400, "slow_down", "poll less often");
        }
        let answered = polls > user.pending_polls + u32::from(user.slow_down);
        match user.answer {
            Answer::Approve if answered => {
                st.device_codes.remove(device_code);
                ok(self.new_grant(st, None))
            }
            Answer::Deny if answered => {
                st.device_codes.remove(device_code);
                error(400, "access_denied", "the user refused the request")
            }
            _ => error(400, "authorization_pending", "waiting for the user"),
        }
    }

    /// A new grant, as a completed login starts one; its response carries an id_token (an
    /// unsigned JWT: `alg` none) with `nonce` when the login sent one.
    fn new_grant(&self, st: &mut State, nonce: Option<&str>) -> Vec<u8> {
        st.next_id += 1;
        let grant = st.next_id;
        st.grants.insert(grant, Grant::default());
        st.counters.logins += 1;
        let body = self.issue(st, grant, None);
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(&body) else {
            return body;
        };
        let mut claims = serde_json::json!({
            "sub": "test-user",
            "aud": TEST_CLIENT_ID,
            "email": "test-user@example.test",
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::from(nonce);
        }
        let id_token = format!(
            "{}.{}.",
            base64url(br#"{"alg":"none","typ":"JWT"}"#),
            base64url(claims.to_string().as_bytes())
        );
        map.insert("id_token".to_owned(), Value::from(id_token));
        Value::Object(map).to_string().into_bytes()
    }

    /// What the authorization endpoint does with a browser's request (`query`, the URL's
    /// query string): the [`ScriptedUser`]'s answer as a redirect to the loopback
    /// `redirect_uri`, or a page.
    pub(crate) fn authorize(&self, query: &str) -> AtAuthorization {
        let params = parse_query(query);
        let field = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        // RFC 6749 §4.1.2.1: a bad client or redirect URI is shown, never redirected to.
        let Some(redirect_uri) = field("redirect_uri").filter(|u| is_loopback_redirect(u)) else {
            return AtAuthorization::Page(400, "invalid redirect_uri".to_owned());
        };
        if field("client_id") != Some(TEST_CLIENT_ID) {
            return AtAuthorization::Page(400, "unknown client".to_owned());
        }
        let back = |pairs: &[(&str, &str)]| {
            let mut query: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", form_urlencode(v)))
                .collect();
            if let Some(state) = field("state") {
                query.push(format!("state={}", form_urlencode(state)));
            }
            let sep = if redirect_uri.contains('?') { '&' } else { '?' };
            AtAuthorization::Redirect(format!("{redirect_uri}{sep}{}", query.join("&")))
        };
        let challenge = match (field("code_challenge"), field("code_challenge_method")) {
            (Some(c), Some("S256")) if !c.is_empty() => c.to_owned(),
            _ => {
                return back(&[
                    ("error", "invalid_request"),
                    ("error_description", "PKCE with S256 is required"),
                ]);
            }
        };
        if field("response_type") != Some("code") {
            return back(&[("error", "unsupported_response_type")]);
        }
        let mut st = self.state();
        match st.user.answer {
            Answer::Never => AtAuthorization::Page(200, "<html>Sign in</html>".to_owned()),
            Answer::Deny => {
                drop(st);
                back(&[("error", "access_denied")])
            }
            Answer::Approve => {
                st.next_id += 1;
                let code = format!("ac-{:x}-{}", self.nonce, st.next_id);
                st.codes.insert(
                    code.clone(),
                    CodeGrant {
                        redirect_uri: redirect_uri.to_owned(),
                        challenge,
                        nonce: field("nonce").map(str::to_owned),
                    },
                );
                drop(st);
                back(&[("code", &code)])
            }
        }
    }

    /// A code exchange at the token endpoint (RFC 6749 §4.1.3), with the PKCE check
    /// (RFC 7636 §4.6): `BASE64URL(SHA256(code_verifier))` must equal the challenge.
    fn code_exchange(&self, st: &mut State, form: &[(String, String)]) -> HttpResponse {
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        // A code is good for one exchange, whatever its outcome (RFC 6749 §4.1.2).
        let Some(grant) = field("code").and_then(|c| st.codes.remove(c)) else {
            return error(400, "invalid_grant", "unknown or used code");
        };
        if field("redirect_uri") != Some(grant.redirect_uri.as_str()) {
            return error(400, "invalid_grant", "redirect_uri differs");
        }
        let verified = field("code_verifier").is_some_and(|v| {
            base64url(ring::digest::digest(&ring::digest::SHA256, v.as_bytes()).as_ref())
                == grant.challenge
        });
        if !verified {
            st.counters.pkce_failures += 1;
            return error(400, "invalid_grant", "PKCE verification failed");
        }
        ok(self.new_grant(st, grant.nonce.as_deref()))
    }

    /// Answers a login grant at the token endpoint (device code, authorization code), or
    /// `None` for any other grant type.
    pub(super) fn handle_login_grant(
        &self,
        form: &[(String, String)],
        authorization: Option<&str>,
    ) -> Option<HttpResponse> {
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let grant_type = field("grant_type")?;
        if grant_type != DEVICE_GRANT && grant_type != "authorization_code" {
            return None;
        }
        if !self.client_authenticated(form, authorization) {
            let mut st = self.state();
            st.counters.invalid_client += 1;
            return Some(error(401, "invalid_client", "client authentication failed"));
        }
        let mut st = self.state();
        Some(if grant_type == DEVICE_GRANT {
            let code = field("device_code").unwrap_or("");
            self.device_poll(&mut st, code)
        } else {
            self.code_exchange(&mut st, form)
        })
    }

    /// A scripted browser for [`credlock::Login::browser`]'s `open`: it takes the authorization
    /// URL to this server's authorization endpoint (the URL's host is not contacted: the
    /// user's side of a login happens here), lets the [`ScriptedUser`] answer, and follows
    /// a redirect to the loopback `redirect_uri` over real TCP in a thread of its own, as a
    /// browser would. A user who never answers leaves the browser on the login page.
    ///
    /// # Errors
    /// None today: a browser that cannot reach the loopback leaves the login to its deadline.
    pub fn open_browser(&self, url: &str) -> std::io::Result<()> {
        let query = url.split_once('?').map_or("", |(_, q)| q);
        if let AtAuthorization::Redirect(location) = self.authorize(query) {
            std::thread::spawn(move || follow(&location));
        }
        Ok(())
    }
}

/// GETs `location` (an `http://` loopback URL) with a plain TCP request, as a browser
/// following a redirect would, and reads the answer to the end.
fn follow(location: &str) {
    let Some(rest) = location.strip_prefix("http://") else {
        return;
    };
    let (authority, target) = rest.find(['/', '?']).map_or((rest, "/".to_owned()), |i| {
        let t = &rest[i..];
        (
            &rest[..i],
            if t.starts_with('?') {
                format!("/{t}")
            } else {
                t.to_owned()
            },
        )
    });
    let Ok(mut stream) = std::net::TcpStream::connect(authority) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    );
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_are_told_from_others() {
        assert!(is_loopback_redirect("http://127.0.0.1:4711/callback"));
        assert!(is_loopback_redirect("http://localhost:1/cb"));
        assert!(is_loopback_redirect("http://[::1]:80/"));
        assert!(!is_loopback_redirect("https://127.0.0.1/callback"));
        assert!(!is_loopback_redirect("http://evil.example/callback"));
        assert!(!is_loopback_redirect("http://127.0.0.1.evil.example/cb"));
    }
}
