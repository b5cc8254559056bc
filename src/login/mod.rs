//! Logging in: the device flow (RFC 8628), the browser with PKCE and a loopback redirect
//! (RFC 7636, RFC 8252), and a paste flow, each ending in a [`Session`].
//!
//! A [`Login`] knows the server's [`Endpoints`] (discovered from the issuer or given), the
//! client, the scopes and a deadline. Its flows block, like the rest of the crate:
//! [`Login::device`], [`Login::browser`], [`Login::paste`]. None of them stores anything;
//! [`crate::Store::login_with`] runs one under the store's guards so that, however many
//! processes need a login at once, exactly one logs in and the others adopt its session.
//!
//! # What is checked
//! The `state` of a browser or pasted redirect is compared exactly with the random one sent;
//! the code is bound to this login by PKCE S256; endpoints must be https (or http to
//! loopback); discovery checks the metadata's `issuer`. An OpenID request (scope `openid`)
//! carries a random `nonce`, and an `id_token` from its code exchange must carry the same
//! one. Beyond that nonce, the `id_token` is kept ([`Session::id_token`]) but **not
//! validated**: no signature, `iss`, `aud` or `exp` check. Do not authorize anything on its
//! claims.
//!
//! # Example
//! Log in on first use, in one call: a token from the stored session, or, when there is
//! none (or it needs a login), a login whose session is stored, then its token.
//! ```no_run
//! use credlock::login::{Login, Prompt};
//! use credlock::{ClientAuth, Store};
//!
//! let store = Store::new("/home/me/.config/my-cli/session.json");
//! let login = Login::discover("https://id.example.com", "my-cli", ClientAuth::None)?
//!     .with_scopes(["openid"]);
//! let token = store.access_token_or_login(&login, &mut |prompt| match prompt {
//!     Prompt::DeviceCode(code) => {
//!         eprintln!("Open {} and enter {}", code.verification_uri, code.user_code);
//!     }
//!     Prompt::Url(url) => eprintln!("Open {url}"),
//!     _ => {}
//! })?;
//! # let _ = token;
//! # Ok::<(), credlock::Error>(())
//! ```
//!
//! The pieces, for more control: [`Endpoints::discover`] with a transport of one's own,
//! [`Login::new`], a flow ([`Login::device`]), and [`crate::Store::login_with`] to run it
//! under the store's guards.

// Layer 6 of 7 in the order `api/module-graph` checks: login may import every layer below it
// (it uses `basics`, `session`, `error` and `wire`); the store runs a login from above.
mod authorization_code;
mod browser;
mod device;
mod device_code;
mod discovery;
mod loopback;
mod paste;
mod pkce;
mod redirect;
#[cfg(test)]
mod test_transport;
#[cfg(test)]
mod tests;
mod token;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use browser::open_browser;
pub use device_code::DeviceCode;
pub use discovery::Endpoints;

use crate::basics::clock::{Clock, SystemClock};
use crate::basics::secret::Secret;
use crate::error::Error;
use crate::session::model::{Client, ClientAuth, Session};
use crate::session::token_response::TokenResponse;
use crate::wire::form::FormRequest;
use crate::wire::http::{Transport, UreqTransport};

/// The default overall deadline of a login: enough to read a code and type it on a phone.
pub const DEFAULT_LOGIN_DEADLINE: Duration = Duration::from_secs(300);

/// What a deadline too far to add to a clock becomes: a century is no deadline.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + after`, saturated: a huge deadline (`Duration::MAX`, `--login-timeout` in the
/// quintillions) means "no deadline", not an overflow panic.
pub(crate) fn instant_after(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(FOREVER))
        .unwrap_or(now)
}

/// [`instant_after`] for the wall clock of the device flow.
pub(crate) fn time_after(now: SystemTime, after: Duration) -> SystemTime {
    now.checked_add(after)
        .or_else(|| now.checked_add(FOREVER))
        .unwrap_or(now)
}

/// A transport whose requests end when the time left to the login does: a server that
/// accepts the connection and never answers must not hold a login past its deadline (the
/// transport's own timeouts are for one request, not for a login). The request runs on a
/// thread of its own, which is left to finish (within the transport's own timeout) if the
/// time runs out first; [`Bounded::cut`] then says so.
#[derive(Debug)]
pub(crate) struct Bounded {
    inner: Arc<dyn Transport>,
    left: Duration,
    cut: std::sync::atomic::AtomicBool,
}

impl Bounded {
    pub(crate) fn new(inner: &Arc<dyn Transport>, left: Duration) -> Bounded {
        Bounded {
            inner: Arc::clone(inner),
            left,
            cut: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether a request was given up because the time ran out.
    pub(crate) fn cut(&self) -> bool {
        self.cut.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn run(
        &self,
        request: impl FnOnce(
            &dyn Transport,
        ) -> Result<
            crate::wire::http::HttpResponse,
            crate::wire::http::TransportError,
        > + Send
        + 'static,
    ) -> Result<crate::wire::http::HttpResponse, crate::wire::http::TransportError> {
        use crate::wire::http::TransportError;
        let inner = Arc::clone(&self.inner);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("credlock-login-request".to_owned())
            .spawn(move || {
                let _ = tx.send(request(inner.as_ref()));
            })
            .map_err(|e| TransportError::Other(format!("could not start the request: {e}")))?;
        match rx.recv_timeout(self.left) {
            Ok(answer) => answer,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
                Err(TransportError::Timeout(
                    "no answer before the login's deadline".to_owned(),
                ))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(TransportError::Other(
                "the request ended without an answer".to_owned(),
            )),
        }
    }
}

impl Transport for Bounded {
    fn post_form(
        &self,
        request: &FormRequest,
    ) -> Result<crate::wire::http::HttpResponse, crate::wire::http::TransportError> {
        let request = request.clone();
        self.run(move |t| t.post_form(&request))
    }

    fn get(
        &self,
        url: &str,
    ) -> Result<crate::wire::http::HttpResponse, crate::wire::http::TransportError> {
        let url = url.to_owned();
        self.run(move |t| t.get(&url))
    }
}

/// The scope that asks for a refresh token at OpenID providers.
const OFFLINE_ACCESS: &str = "offline_access";

/// Why a flow cannot run when the endpoint it needs (`missing`) is unknown and so is the
/// other flows': sending the user to another flow would fail the same way.
pub(super) fn no_flow_endpoint(missing: &str) -> String {
    format!(
        "it has no {missing}, nor any other login endpoint: name the authorization endpoint (browser and paste flows) or the device authorization endpoint (device flow), or the issuer whose discovery document has them"
    )
}

/// Which way the user logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flow {
    /// RFC 8628: a code to enter on another device. Works over SSH and without a display.
    Device,
    /// Authorization code with PKCE, the browser opened here, a loopback redirect.
    Browser,
    /// Authorization code with PKCE, the URL opened anywhere, the code pasted back.
    Paste,
}

/// What a login shows the user while it runs ([`Login::run`],
/// [`crate::Store::access_token_or_login`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Prompt<'a> {
    /// The device flow's code: where to go, what to enter.
    DeviceCode(&'a DeviceCode),
    /// The authorization URL of the browser flow (the browser is also opened on it) or of
    /// the paste flow (the user opens it, then pastes the code or the redirect URL on
    /// standard input).
    Url(&'a str),
}

/// The browser a [`Flow::Browser`] login opens: [`open_browser`] unless
/// [`Login::with_browser`] names another.
#[derive(Clone)]
struct Browser(Arc<OpenBrowser>);

/// What opens a URL in a browser.
type OpenBrowser = dyn Fn(&str) -> std::io::Result<()> + Send + Sync;

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Browser")
    }
}

/// One login to one authorization server, ready to run a [`Flow`].
#[derive(Debug, Clone)]
pub struct Login {
    endpoints: Endpoints,
    client: Client,
    scopes: Vec<String>,
    offline_access: bool,
    audience: Option<String>,
    resources: Vec<String>,
    params: Vec<(String, String)>,
    port: u16,
    paste_redirect_uri: String,
    deadline: Duration,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    flow: Option<Flow>,
    opener: Browser,
}

impl Login {
    /// A login as `client_id` at `endpoints`, authenticating at the token endpoint with
    /// `auth` (`ClientAuth::None` for a public client, the usual case for a CLI).
    ///
    /// Defaults: no scope beyond `offline_access` (added when the issuer advertises it), an
    /// ephemeral loopback port, a deadline of [`DEFAULT_LOGIN_DEADLINE`], ureq.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`], [`Error::InsecureEndpoint`] for the token or revocation
    /// endpoint.
    pub fn new(
        endpoints: Endpoints,
        client_id: impl Into<String>,
        auth: ClientAuth,
    ) -> Result<Login, Error> {
        let mut client = Client::new(endpoints.token(), client_id, auth)?;
        if let Some(revocation) = endpoints.revocation() {
            client = client.with_revocation_endpoint(revocation)?;
        }
        Ok(Login {
            endpoints,
            client,
            scopes: Vec::new(),
            offline_access: true,
            audience: None,
            resources: Vec::new(),
            params: Vec::new(),
            port: 0,
            paste_redirect_uri: format!("http://127.0.0.1{}", loopback::CALLBACK_PATH),
            deadline: DEFAULT_LOGIN_DEADLINE,
            transport: Arc::new(UreqTransport::new()),
            clock: Arc::new(SystemClock),
            flow: None,
            opener: Browser(Arc::new(open_browser)),
        })
    }

    /// A login as `client_id` at the issuer `issuer`, its endpoints read from the issuer's
    /// metadata ([`Endpoints::discover`]) with ureq; for another transport, discover with
    /// it and use [`Login::new`] then [`Login::with_transport`].
    ///
    /// # Errors
    /// Those of [`Endpoints::discover`] and [`Login::new`].
    pub fn discover(
        issuer: &str,
        client_id: impl Into<String>,
        auth: ClientAuth,
    ) -> Result<Login, Error> {
        let endpoints = Endpoints::discover(issuer, &UreqTransport::new())?;
        Login::new(endpoints, client_id, auth)
    }

    /// The scopes to ask for (space-separated strings are split).
    #[must_use]
    pub fn with_scopes<S: AsRef<str>>(mut self, scopes: impl IntoIterator<Item = S>) -> Login {
        for s in scopes {
            for one in s.as_ref().split_whitespace() {
                if !self.scopes.iter().any(|x| x == one) {
                    self.scopes.push(one.to_owned());
                }
            }
        }
        self
    }

    /// Do not add `offline_access` even when the issuer advertises it (for servers that
    /// issue refresh tokens without it and reject it).
    #[must_use]
    pub fn without_offline_access(mut self) -> Login {
        self.offline_access = false;
        self
    }

    /// The `audience` parameter (Auth0, Okta and others name the API with it).
    #[must_use]
    pub fn with_audience(mut self, audience: impl Into<String>) -> Login {
        self.audience = Some(audience.into());
        self
    }

    /// A `resource` parameter (RFC 8707); may be given more than once.
    #[must_use]
    pub fn with_resource(mut self, resource: impl Into<String>) -> Login {
        self.resources.push(resource.into());
        self
    }

    /// An extra parameter for the authorization URL (`prompt`, `login_hint`, `acr_values`,
    /// …). Browser and paste flows only: the device request carries the standard ones.
    #[must_use]
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Login {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The loopback port for the browser flow, when the client is registered with a fixed
    /// one. Defaults to 0 (any free port, RFC 8252 §7.3).
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Login {
        self.port = port;
        self
    }

    /// The redirect URI of the paste flow, registered for the client. Defaults to
    /// `http://127.0.0.1/callback`: nothing listens there, and the user copies the URL the
    /// browser fails to open (it holds the code).
    #[must_use]
    pub fn with_paste_redirect_uri(mut self, uri: impl Into<String>) -> Login {
        self.paste_redirect_uri = uri.into();
        self
    }

    /// How long a flow may take in all. Defaults to [`DEFAULT_LOGIN_DEADLINE`]. A deadline
    /// too far to add to the clock (such as `Duration::MAX`) is no deadline.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Login {
        self.deadline = deadline;
        self
    }

    /// The HTTP transport. Defaults to [`UreqTransport`].
    #[must_use]
    pub fn with_transport(mut self, transport: Arc<dyn Transport>) -> Login {
        self.transport = transport;
        self
    }

    /// The clock for the device flow's polling and deadline. Defaults to [`SystemClock`].
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Login {
        self.clock = clock;
        self
    }

    /// The flow [`Login::run`] uses. Defaults to the device flow when the server has a
    /// device authorization endpoint (it works over SSH and without a display), else the
    /// browser flow.
    #[must_use]
    pub fn with_flow(mut self, flow: Flow) -> Login {
        self.flow = Some(flow);
        self
    }

    /// The browser [`Login::run`] opens for [`Flow::Browser`]. Defaults to [`open_browser`];
    /// tests pass the test kit's scripted one (`FakeServer::open_browser`, in the
    /// `credlock-test` crate).
    #[must_use]
    pub fn with_browser(
        mut self,
        open: impl Fn(&str) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Login {
        self.opener = Browser(Arc::new(open));
        self
    }

    /// The flow [`Login::run`] uses (see [`Login::with_flow`]).
    #[must_use]
    pub fn flow(&self) -> Flow {
        self.flow
            .unwrap_or(if self.endpoints.device_authorization().is_some() {
                Flow::Device
            } else {
                Flow::Browser
            })
    }

    /// Runs the login's [`Login::flow`], handing what the user must see to `show`: the
    /// device code ([`Login::device`]), or the authorization URL while the browser opens
    /// ([`Login::browser`]) or before a code is read from standard input ([`Login::paste`]).
    ///
    /// # Errors
    /// Those of the flow.
    pub fn run(&self, show: &mut dyn FnMut(Prompt<'_>)) -> Result<Session, Error> {
        match self.flow() {
            Flow::Device => self.device(&mut |code| show(Prompt::DeviceCode(code))),
            Flow::Browser => self.browser(&*self.opener.0, &mut |url| show(Prompt::Url(url))),
            Flow::Paste => self.paste(&mut std::io::stdin().lock(), &mut |url| {
                show(Prompt::Url(url));
            }),
        }
    }

    /// The endpoints.
    #[must_use]
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The deadline.
    #[must_use]
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The scope requested: the configured scopes, plus `offline_access` if the issuer
    /// advertises it (and it was not turned off). `None` when empty.
    #[must_use]
    pub fn scope(&self) -> Option<String> {
        let mut scopes = self.scopes.clone();
        if self.offline_access
            && self.endpoints.advertises_scope(OFFLINE_ACCESS) == Some(true)
            && !scopes.iter().any(|s| s == OFFLINE_ACCESS)
        {
            scopes.push(OFFLINE_ACCESS.to_owned());
        }
        (!scopes.is_empty()).then(|| scopes.join(" "))
    }

    /// Adds `scope`, `audience` and `resource` to a device authorization request.
    fn add_scope_and_targets(&self, request: &mut FormRequest) {
        if let Some(scope) = self.scope() {
            request.form.push(("scope", Secret::new(scope)));
        }
        if let Some(audience) = &self.audience {
            request
                .form
                .push(("audience", Secret::new(audience.as_str())));
        }
        for r in &self.resources {
            request.form.push(("resource", Secret::new(r.as_str())));
        }
    }

    /// The parameters of the authorization URL beyond the code flow's own.
    fn url_params(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(scope) = self.scope() {
            out.push(("scope".to_owned(), scope));
        }
        if let Some(audience) = &self.audience {
            out.push(("audience".to_owned(), audience.clone()));
        }
        for r in &self.resources {
            out.push(("resource".to_owned(), r.clone()));
        }
        out.extend(self.params.iter().cloned());
        // OIDC Core §11: offline access is granted only after consent, and servers (such as
        // node-oidc-provider) drop `offline_access` from a request without `prompt=consent`.
        let offline = self
            .scope()
            .is_some_and(|s| s.split(' ').any(|x| x == OFFLINE_ACCESS));
        if offline && !out.iter().any(|(k, _)| k == "prompt") {
            out.push(("prompt".to_owned(), "consent".to_owned()));
        }
        out
    }

    /// The session from a token response received at `now`.
    fn session_from(&self, tokens: TokenResponse, now: SystemTime) -> Result<Session, Error> {
        Session::from_token_response(self.client.clone(), tokens, now)
    }
}
