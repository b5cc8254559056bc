//! The fake server's endpoints: what it answers to a refresh and to a revocation.

use std::sync::Arc;

use serde_json::Value;

use super::{Failure, FakeServer, RefreshRecord, RefreshState, ReusePolicy, State, TEST_CLIENT_ID};
use credlock::ClientAuth;
use credlock::Secret;
use credlock::internal::form_urldecode;
use credlock::transport::FormRequest;
use credlock::transport::{HttpResponse, Peek, Transport, TransportError};

impl FakeServer {
    /// Revokes the grant `refresh_token` belongs to, as an administrator or an RFC 7009
    /// revocation would. Returns whether the token was known.
    pub fn revoke_grant_of(&self, refresh_token: &str) -> bool {
        let mut st = self.state();
        let Some(grant) = st.refresh_tokens.get(refresh_token).map(|r| r.grant) else {
            return false;
        };
        Self::revoke(&mut st, grant);
        true
    }

    pub(super) fn revoke(st: &mut State, grant: u64) {
        if let Some(g) = st.grants.get_mut(&grant)
            && !g.revoked
        {
            g.revoked = true;
            g.live_refresh = None;
            st.counters.grants_revoked += 1;
        }
    }

    pub(super) fn issue(
        &self,
        st: &mut State,
        grant: u64,
        keep_refresh: Option<String>,
    ) -> Vec<u8> {
        st.next_id += 1;
        let n = st.next_id;
        let access = format!("at-{:x}-{n}", self.nonce);
        let refresh = keep_refresh.unwrap_or_else(|| {
            let r = format!("rt-{:x}-{n}", self.nonce);
            st.refresh_tokens.insert(
                r.clone(),
                RefreshRecord {
                    grant,
                    state: RefreshState::Live,
                },
            );
            r
        });
        st.access_tokens
            .insert(access.clone(), (grant, self.clock.now() + self.access_ttl));
        if let Some(g) = st.grants.get_mut(&grant) {
            g.live_refresh = Some(refresh.clone());
        }
        serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl.as_secs(),
            "refresh_token": refresh,
            "scope": "openid offline_access",
            "id_token": format!("idt-{:x}-{n}", self.nonce),
        })
        .to_string()
        .into_bytes()
    }

    /// Answers a token request: `form` holds the decoded fields, `authorization` the header.
    #[must_use]
    pub fn handle_token(
        &self,
        form: &[(String, String)],
        authorization: Option<&str>,
    ) -> HttpResponse {
        // Logins are not refreshes: they neither count as refresh requests nor take the
        // scripted refresh failures.
        if let Some(answer) = self.handle_login_grant(form, authorization) {
            return answer;
        }
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if field("grant_type") == Some("client_credentials") {
            return self.handle_client_credentials(form, authorization);
        }
        if let Some(rt) = field("refresh_token") {
            let hook = self
                .on_refresh
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if let Some(hook) = hook {
                hook(rt);
            }
        }
        let mut st = self.state();
        st.counters.refresh_requests += 1;
        if let Some(Failure::Status {
            status,
            body,
            retry_after,
        }) = st.scripted.front().cloned()
        {
            st.scripted.pop_front();
            st.counters.scripted_failures += 1;
            let response = HttpResponse::new(status, body);
            return match retry_after {
                Some(value) => response.with_retry_after(value),
                None => response,
            };
        }
        if !self.client_authenticated(form, authorization) {
            st.counters.invalid_client += 1;
            return error(401, "invalid_client", "client authentication failed");
        }
        if field("grant_type") != Some("refresh_token") {
            return error(
                400,
                "unsupported_grant_type",
                "only refresh_token is supported",
            );
        }
        let Some(rt) = field("refresh_token") else {
            return error(400, "invalid_request", "refresh_token is missing");
        };
        let Some((grant, state)) = st.refresh_tokens.get(rt).map(|r| (r.grant, r.state)) else {
            st.counters.invalid_grant += 1;
            st.refused.insert(rt.to_owned());
            return self.refusal();
        };
        if st.grants.get(&grant).is_none_or(|g| g.revoked) {
            st.counters.invalid_grant += 1;
            st.refused.insert(rt.to_owned());
            return self.refusal();
        }
        let now = self.clock.now();
        match state {
            RefreshState::Live => {
                if let Some(r) = st.refresh_tokens.get_mut(rt) {
                    r.state = RefreshState::Rotated { at: now };
                }
                st.counters.refreshes_ok += 1;
                let body = self.issue(&mut st, grant, None);
                drop(st);
                ok(self.reshaped(body))
            }
            RefreshState::Rotated { at } => {
                st.counters.reuse_detected += 1;
                let within_grace = match self.policy {
                    ReusePolicy::Grace(d) => now.duration_since(at).unwrap_or_default() <= d,
                    _ => false,
                };
                if within_grace {
                    let live = st.grants.get(&grant).and_then(|g| g.live_refresh.clone());
                    st.counters.refreshes_ok += 1;
                    return ok(self.issue(&mut st, grant, live));
                }
                if self.policy != ReusePolicy::RejectOnly {
                    Self::revoke(&mut st, grant);
                }
                st.counters.invalid_grant += 1;
                st.refused.insert(rt.to_owned());
                self.refusal()
            }
        }
    }

    /// Answers a client-credentials token request (RFC 6749 §4.4): counted in
    /// [`super::Counters::client_credentials_requests`], served the scripted failures first,
    /// then a new access token (no refresh token) to a client that authenticates with a
    /// secret; a public client is `unauthorized_client`.
    fn handle_client_credentials(
        &self,
        form: &[(String, String)],
        authorization: Option<&str>,
    ) -> HttpResponse {
        let hook = self
            .on_refresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(hook) = hook {
            hook("");
        }
        let mut st = self.state();
        st.counters.client_credentials_requests += 1;
        if let Some(Failure::Status {
            status,
            body,
            retry_after,
        }) = st.scripted.front().cloned()
        {
            st.scripted.pop_front();
            st.counters.scripted_failures += 1;
            let response = HttpResponse::new(status, body);
            return match retry_after {
                Some(value) => response.with_retry_after(value),
                None => response,
            };
        }
        if !self.client_authenticated(form, authorization) {
            st.counters.invalid_client += 1;
            return error(401, "invalid_client", "client authentication failed");
        }
        if matches!(self.auth, ClientAuth::None) {
            return error(
                400,
                "unauthorized_client",
                "a public client cannot use client_credentials",
            );
        }
        st.next_id += 1;
        let access = format!("at-cc-{:x}-{}", self.nonce, st.next_id);
        // Machine tokens belong to no user grant: a grant of their own, never revoked.
        let grant = u64::MAX;
        st.grants.entry(grant).or_default();
        st.access_tokens
            .insert(access.clone(), (grant, self.clock.now() + self.access_ttl));
        let scope = form
            .iter()
            .find(|(n, _)| n == "scope")
            .map(|(_, v)| v.clone());
        let mut body = serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl.as_secs(),
        });
        if let Some(scope) = scope {
            body["scope"] = Value::String(scope);
        }
        ok(body.to_string().into_bytes())
    }

    /// The answer to a refresh token that is refused.
    fn refusal(&self) -> HttpResponse {
        if self.silent_refusals {
            HttpResponse::new(400, Vec::new())
        } else {
            invalid_grant()
        }
    }

    pub(super) fn reshaped(&self, body: Vec<u8>) -> Vec<u8> {
        let reshape = self
            .reshapes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front();
        match (reshape, serde_json::from_slice::<Value>(&body)) {
            (Some(reshape), Ok(Value::Object(map))) => reshape(map),
            _ => body,
        }
    }

    /// Answers an RFC 7009 revocation request: revokes the grant of a live refresh token,
    /// answers 200. A token that is no longer valid (rotated, unknown) changes nothing and
    /// is answered 200 as well (RFC 7009 §2.2): revoking a stale copy does not end a session.
    #[must_use]
    pub fn handle_revoke(
        &self,
        form: &[(String, String)],
        authorization: Option<&str>,
    ) -> HttpResponse {
        if !self.client_authenticated(form, authorization) {
            return error(401, "invalid_client", "client authentication failed");
        }
        if let Some((_, token)) = form.iter().find(|(k, _)| k == "token")
            && self.is_live(token)
        {
            self.revoke_grant_of(token);
        }
        ok(Vec::new())
    }

    pub(super) fn client_authenticated(
        &self,
        form: &[(String, String)],
        authorization: Option<&str>,
    ) -> bool {
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        match &self.auth {
            ClientAuth::None => field("client_id") == Some(TEST_CLIENT_ID),
            ClientAuth::Post { secret } => {
                field("client_id") == Some(TEST_CLIENT_ID)
                    && field("client_secret") == Some(secret.secret())
            }
            ClientAuth::Basic { secret } => authorization
                .and_then(|h| h.strip_prefix("Basic "))
                .and_then(decode_basic)
                .is_some_and(|(id, s)| id == TEST_CLIENT_ID && s == secret.secret()),
            // A method this fake server does not know authenticates nobody.
            _ => false,
        }
    }
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in b64.trim_end_matches('=').bytes() {
        let v = u32::try_from(ALPHABET.iter().position(|a| *a == c)?).ok()?;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push(u8::try_from((bits >> n) & 0xff).ok()?);
        }
    }
    let pair = String::from_utf8(out).ok()?;
    let (id, secret) = pair.split_once(':')?;
    // RFC 6749 §2.3.1: both parts were form-urlencoded before base64.
    Some((form_urldecode(id)?, form_urldecode(secret)?))
}

pub(super) fn ok(body: Vec<u8>) -> HttpResponse {
    HttpResponse::new(200, body)
}

pub(super) fn error(status: u16, code: &str, description: &str) -> HttpResponse {
    HttpResponse::new(
        status,
        serde_json::json!({"error": code, "error_description": description}).to_string(),
    )
}

fn invalid_grant() -> HttpResponse {
    // node-oidc-provider's exact answer to unknown, expired and reused refresh tokens alike.
    error(400, "invalid_grant", "grant request is invalid")
}

/// The fake server as an in-memory [`Transport`]: no sockets, no threads.
#[derive(Debug, Clone)]
pub struct FakeTransport {
    server: Arc<FakeServer>,
}

impl FakeTransport {
    /// A transport whose every request goes to `server`.
    #[must_use]
    pub fn new(server: Arc<FakeServer>) -> FakeTransport {
        FakeTransport { server }
    }
}

impl Transport for FakeTransport {
    fn post_form(&self, request: &FormRequest) -> Result<HttpResponse, TransportError> {
        let form: Vec<(String, String)> = request
            .form
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.secret().to_owned()))
            .collect();
        let auth = request.authorization.as_ref().map(Secret::secret);
        let login_grant = form.iter().any(|(k, v)| {
            k == "grant_type" && (v == "authorization_code" || v.ends_with(":device_code"))
        });
        let response = if let Some(issuer) = request.url.strip_suffix("/device_authorization") {
            self.server.handle_device_authorization(issuer, &form, auth)
        } else if login_grant {
            self.server.handle_token(&form, auth)
        } else {
            // Scripted transport failures are for refreshes and revocations only.
            if let Some(e) = self.server.pop_transport_failure() {
                return Err(e);
            }
            if request.url.ends_with("/revoke") {
                self.server.handle_revoke(&form, auth)
            } else {
                self.server.handle_token(&form, auth)
            }
        };
        if !self.server.latency.is_zero() {
            std::thread::sleep(self.server.latency);
        }
        Ok(response)
    }

    /// The discovery document at `<issuer>/.well-known/openid-configuration`, for any
    /// issuer URL; 404 elsewhere.
    fn get(&self, url: &str) -> Result<HttpResponse, TransportError> {
        Ok(
            match url.strip_suffix("/.well-known/openid-configuration") {
                Some(issuer) => ok(self
                    .server
                    .discovery_document(issuer)
                    .to_string()
                    .into_bytes()),
                None => HttpResponse::new(404, "not found"),
            },
        )
    }

    /// The authorization endpoint as a browser without cookies sees it: the scripted user's
    /// redirect, or a page.
    fn peek(&self, url: &str, _timeout: std::time::Duration) -> Result<Peek, TransportError> {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        Ok(if path.ends_with("/authorize") {
            match self.server.authorize(query) {
                super::login::AtAuthorization::Redirect(location) => Peek::new(302, Some(location)),
                super::login::AtAuthorization::Page(status, _) => Peek::new(status, None),
            }
        } else {
            Peek::new(404, None)
        })
    }
}
