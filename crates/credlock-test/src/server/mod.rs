//! A fake token server that behaves like the real ones on refresh-token reuse.

mod endpoints;
mod login;

pub use endpoints::FakeTransport;
pub(crate) use login::AtAuthorization;
pub use login::ScriptedUser;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use credlock::Error;
use credlock::TokenResponse;
use credlock::transport::TransportError;
use credlock::{Client, ClientAuth, Session};
use credlock::{Clock, SystemClock};

/// The client id the fake server knows.
pub const TEST_CLIENT_ID: &str = "credlock-test";

/// What the server does when a refresh token that was already rotated is used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReusePolicy {
    /// Revoke the whole grant, every token of it, and answer `invalid_grant` (Auth0, Okta,
    /// Ory Hydra, node-oidc-provider).
    RevokeGrant,
    /// Refuse the reused token with `invalid_grant`; the grant survives (Clerk-like).
    RejectOnly,
    /// The old token stays usable for this long after rotation (a "reuse interval", as Auth0,
    /// Okta, Dex and Cognito offer); after that, reuse revokes the grant.
    Grace(Duration),
}

impl ReusePolicy {
    /// The name the CLI uses: `revoke-grant`, `reject-only`, `grace:MS`.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            ReusePolicy::RevokeGrant => "revoke-grant".into(),
            ReusePolicy::RejectOnly => "reject-only".into(),
            ReusePolicy::Grace(d) => format!("grace:{}", d.as_millis()),
        }
    }
}

impl std::str::FromStr for ReusePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<ReusePolicy, String> {
        match s {
            "revoke-grant" => Ok(ReusePolicy::RevokeGrant),
            "reject-only" => Ok(ReusePolicy::RejectOnly),
            other => other
                .strip_prefix("grace:")
                .and_then(|ms| ms.parse::<u64>().ok())
                .map(|ms| ReusePolicy::Grace(Duration::from_millis(ms)))
                .ok_or_else(|| {
                    format!("unknown server policy {other:?} (expected revoke-grant, reject-only or grace:MS)")
                }),
        }
    }
}

/// A scripted answer for the next refresh request, instead of the normal behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Answer with this status, body and optional `Retry-After`.
    Status {
        /// The status code.
        status: u16,
        /// The body.
        body: String,
        /// The `Retry-After` header.
        retry_after: Option<String>,
    },
    /// Fail in the transport (no response): only [`FakeTransport`] can do this; over HTTP the
    /// server closes the connection instead.
    Transport(TransportError),
}

/// What the server has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Refresh requests received (every POST to the token endpoint).
    pub refresh_requests: u64,
    /// Refreshes answered with new tokens.
    pub refreshes_ok: u64,
    /// Answers of `invalid_grant`.
    pub invalid_grant: u64,
    /// Uses of a refresh token that had already been rotated.
    pub reuse_detected: u64,
    /// Answers of `invalid_client`.
    pub invalid_client: u64,
    /// Scripted failures served.
    pub scripted_failures: u64,
    /// Grants revoked (by reuse detection, revocation requests or the test).
    pub grants_revoked: u64,
    /// Device authorization requests answered with a code (RFC 8628).
    pub device_authorizations: u64,
    /// Logins completed: a device code or an authorization code exchanged for tokens.
    pub logins: u64,
    /// Code exchanges refused because the PKCE verifier does not match the challenge.
    pub pkce_failures: u64,
    /// Client-credentials token requests (RFC 6749 §4.4), answered or not; they are not
    /// counted in `refresh_requests`.
    pub client_credentials_requests: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshState {
    Live,
    Rotated { at: SystemTime },
}

#[derive(Debug)]
struct RefreshRecord {
    grant: u64,
    state: RefreshState,
}

#[derive(Debug, Default)]
struct Grant {
    revoked: bool,
    live_refresh: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    grants: HashMap<u64, Grant>,
    refresh_tokens: HashMap<String, RefreshRecord>,
    access_tokens: HashMap<String, (u64, SystemTime)>,
    scripted: VecDeque<Failure>,
    counters: Counters,
    refused: std::collections::HashSet<String>,
    user: ScriptedUser,
    device_codes: HashMap<String, login::DeviceGrant>,
    codes: HashMap<String, login::CodeGrant>,
}

type RefreshHook = Box<dyn Fn(&str) + Send + Sync>;

/// Rewrites the body of one successful refresh: it gets the response the server would send
/// (already issued: the old refresh token is rotated) and returns the bytes to send instead.
type Reshape = Box<dyn FnOnce(Map<String, Value>) -> Vec<u8> + Send>;

/// An in-memory OAuth token server: rotates the refresh token on every refresh, applies a
/// [`ReusePolicy`] to reused ones, checks client authentication, counts everything.
pub struct FakeServer {
    policy: ReusePolicy,
    silent_refusals: bool,
    access_ttl: Duration,
    latency: Duration,
    auth: ClientAuth,
    clock: Arc<dyn Clock>,
    nonce: u64,
    state: Mutex<State>,
    on_refresh: Mutex<Option<Arc<RefreshHook>>>,
    reshapes: Mutex<VecDeque<Reshape>>,
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer")
            .field("policy", &self.policy)
            .field("access_ttl", &self.access_ttl)
            .field("latency", &self.latency)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

/// Configures a [`FakeServer`].
#[derive(Debug)]
pub struct FakeServerBuilder {
    policy: ReusePolicy,
    silent_refusals: bool,
    access_ttl: Duration,
    latency: Duration,
    auth: ClientAuth,
    clock: Arc<dyn Clock>,
    user: ScriptedUser,
}

impl FakeServerBuilder {
    /// What the person at the other end of a login does: approve, deny, never answer (see
    /// [`ScriptedUser`]). Defaults to [`ScriptedUser::approves`]; [`FakeServer::set_user`]
    /// changes it at run time.
    #[must_use]
    pub fn user(mut self, user: ScriptedUser) -> Self {
        self.user = user;
        self
    }

    /// The reuse policy. Defaults to [`ReusePolicy::RevokeGrant`].
    #[must_use]
    pub fn policy(mut self, policy: ReusePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Refuse unknown, revoked and reused refresh tokens with an HTTP 400 whose body is empty
    /// (no `error` field), as Glewlwyd 2.7 does, instead of `invalid_grant`. Defaults to off.
    #[must_use]
    pub fn silent_refusals(mut self) -> Self {
        self.silent_refusals = true;
        self
    }

    /// The lifetime of access tokens. Defaults to 1 hour.
    #[must_use]
    pub fn access_ttl(mut self, ttl: Duration) -> Self {
        self.access_ttl = ttl;
        self
    }

    /// A delay before every answer, after the server has acted (so a rotation is already
    /// done while the answer is in flight). Defaults to none.
    #[must_use]
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The client authentication the server requires of [`TEST_CLIENT_ID`]. Defaults to
    /// [`ClientAuth::None`].
    #[must_use]
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The clock for token expiry. Defaults to the system clock.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The server.
    #[must_use]
    pub fn build(self) -> Arc<FakeServer> {
        let nonce = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        Arc::new(FakeServer {
            policy: self.policy,
            silent_refusals: self.silent_refusals,
            access_ttl: self.access_ttl,
            latency: self.latency,
            auth: self.auth,
            clock: self.clock,
            nonce,
            state: Mutex::new(State {
                user: self.user,
                ..State::default()
            }),
            on_refresh: Mutex::new(None),
            reshapes: Mutex::new(VecDeque::new()),
        })
    }
}

impl FakeServer {
    /// A builder with the defaults (revoke-grant, 1 h access tokens, no latency, public client).
    #[must_use]
    pub fn builder() -> FakeServerBuilder {
        FakeServerBuilder {
            policy: ReusePolicy::RevokeGrant,
            silent_refusals: false,
            access_ttl: Duration::from_secs(3600),
            latency: Duration::ZERO,
            auth: ClientAuth::None,
            clock: Arc::new(SystemClock),
            user: ScriptedUser::approves(),
        }
    }

    /// The reuse policy.
    #[must_use]
    pub fn policy(&self) -> ReusePolicy {
        self.policy
    }

    /// The answer delay.
    #[must_use]
    pub fn latency(&self) -> Duration {
        self.latency
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a new grant, as a login would, and returns its token response.
    #[must_use]
    pub fn seed(&self) -> TokenResponse {
        let mut st = self.state();
        st.next_id += 1;
        let grant = st.next_id;
        st.grants.insert(grant, Grant::default());
        let body = self.issue(&mut st, grant, None);
        TokenResponse::from_json(&body).expect("the fake server's own response parses")
    }

    /// A new grant as a [`Session`] for [`TEST_CLIENT_ID`] at `token_endpoint`, with the
    /// client authentication the server requires.
    ///
    /// # Errors
    /// [`Error::InsecureEndpoint`] for a non-loopback `http://` endpoint.
    pub fn seed_session(&self, token_endpoint: &str) -> Result<Session, Error> {
        let client = Client::new(token_endpoint, TEST_CLIENT_ID, self.auth.clone())?;
        Session::from_token_response(client, self.seed(), self.clock.now())
    }

    /// Pops a scripted [`Failure::Transport`] if it is next; it counts as a request.
    pub(super) fn pop_transport_failure(&self) -> Option<TransportError> {
        let mut st = self.state();
        let Some(Failure::Transport(e)) = st.scripted.front().cloned() else {
            return None;
        };
        st.scripted.pop_front();
        st.counters.refresh_requests += 1;
        st.counters.scripted_failures += 1;
        Some(e)
    }

    /// Makes the next refresh requests fail as scripted, in order.
    pub fn push_failure(&self, failure: Failure) {
        self.state().scripted.push_back(failure);
    }

    /// Makes the next successful refresh send another body: the server rotates the refresh
    /// token as usual, then `reshape` turns the response it would send (a JSON object) into
    /// the bytes actually sent. Tests use it for the quirks of real servers (`expires_in` as a
    /// string, `scope` as an array, no `token_type`…) and for broken ones. Queued in order.
    ///
    /// A broken body (such as one of `strategies::hostile_body()`, feature `proptest`)
    /// models an **unrecoverable server**: the rotation happened before the body was spoiled,
    /// so a client that cannot use the body never learns the new refresh token, and the one
    /// it holds is dead: the next refresh gets `invalid_grant` (unless a
    /// [`ReusePolicy::Grace`] still accepts it) and a login is needed. To model a failure the
    /// client recovers from, use [`FakeServer::push_failure`] (nothing is rotated).
    pub fn reshape_next_success(
        &self,
        reshape: impl FnOnce(Map<String, Value>) -> Vec<u8> + Send + 'static,
    ) {
        self.reshapes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(Box::new(reshape));
    }

    /// Runs `hook` with the refresh token of every refresh request (an empty string for a
    /// client-credentials request), before the server acts on it. Tests use it to make
    /// "another process" save a session mid-refresh.
    pub fn on_refresh(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        *self
            .on_refresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(Box::new(hook)));
    }

    /// What the server has seen so far.
    #[must_use]
    pub fn counters(&self) -> Counters {
        self.state().counters
    }

    /// Whether `refresh_token` would be accepted now (not rotated, grant not revoked).
    #[must_use]
    pub fn is_live(&self, refresh_token: &str) -> bool {
        let st = self.state();
        st.refresh_tokens.get(refresh_token).is_some_and(|r| {
            r.state == RefreshState::Live && st.grants.get(&r.grant).is_some_and(|g| !g.revoked)
        })
    }

    /// How many grants are still alive (not revoked): sessions a stolen refresh token could
    /// still use.
    #[must_use]
    pub fn live_grants(&self) -> usize {
        self.state().grants.values().filter(|g| !g.revoked).count()
    }

    /// When `access_token` expires, if this server issued it (whether or not its grant has
    /// since been revoked).
    #[must_use]
    pub fn access_token_expires_at(&self, access_token: &str) -> Option<SystemTime> {
        self.state()
            .access_tokens
            .get(access_token)
            .map(|(_, exp)| *exp)
    }

    /// Whether this server ever issued `refresh_token`.
    #[must_use]
    pub fn issued(&self, refresh_token: &str) -> bool {
        self.state().refresh_tokens.contains_key(refresh_token)
    }

    /// Whether this server ever answered `invalid_grant` to `refresh_token`.
    #[must_use]
    pub fn refused(&self, refresh_token: &str) -> bool {
        self.state().refused.contains(refresh_token)
    }

    /// Whether `access_token` was issued by this server, has not expired and belongs to a
    /// grant that was not revoked.
    #[must_use]
    pub fn is_access_token_valid(&self, access_token: &str) -> bool {
        let now = self.clock.now();
        let st = self.state();
        st.access_tokens
            .get(access_token)
            .is_some_and(|(grant, exp)| {
                *exp > now && st.grants.get(grant).is_some_and(|g| !g.revoked)
            })
    }
}
