//! The real transport: blocking ureq 3 with rustls.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use super::proxy::{NoProxy, is_loopback_host};
use super::tls::TlsSettings;
use super::tls_connector::{Env, SharedTls, Unusable};
use super::{HttpResponse, Transport, TransportError};
use crate::wire::form::FormRequest;

/// The real transport: blocking ureq 3 with rustls.
///
/// Follows no redirects (a token endpoint must not send one, and credentials must not
/// follow it), reads error bodies (`http_status_as_error` off, so `invalid_grant` is seen),
/// bounds the response body, and times out. [`UreqTransport::builder`] sets roots, extra CA
/// files, a client identity, proxies, timeouts and the body limit.
///
/// # Trusted roots
/// By default the operating system's trust store ([`Roots::Platform`](super::Roots::Platform)):
/// on Linux the OpenSSL store files (`/etc/ssl/certs/ca-certificates.crt` and the like, found
/// by `openssl-probe`), on macOS Security.framework, on Windows the CryptoAPI stores; so a
/// root CA that a corporate network installs on its machines to intercept TLS is trusted.
/// When `SSL_CERT_FILE` (a PEM bundle) or `SSL_CERT_DIR` (directories of PEM files,
/// separated as in `PATH`) is set, the certificates they name are trusted **instead of** the
/// operating system's store, on every platform, as with curl and OpenSSL (an empty
/// `SSL_CERT_FILE` is an error; empty `SSL_CERT_DIR` entries are skipped).
/// Where the platform verifier cannot be built (a Linux container without CA files), the
/// bundled Mozilla roots (`webpki-roots`) are used. Roots are read once: by
/// [`TransportBuilder::build`](super::TransportBuilder::build), or at the first https request
/// of [`UreqTransport::new`] (again at the next one if they could not be).
///
/// # Proxies
/// Read from the environment when the transport is built, as curl does: `https_proxy` /
/// `HTTPS_PROXY` for https endpoints, `http_proxy` / `HTTP_PROXY` for http ones, then
/// `all_proxy` / `ALL_PROXY`. A loopback endpoint (`localhost`, `*.localhost`, `127.0.0.0/8`,
/// `::1`) never goes through a proxy: the proxy would resolve it on another machine, and
/// plain http would carry the refresh token to it in clear. `no_proxy` / `NO_PROXY` is
/// honoured: comma-separated hosts (matching the host and its subdomains; a leading `.` or
/// `*.` is ignored, as is a `:port`), IP addresses, CIDR blocks (`10.0.0.0/8`), or `*`.
/// Only `http://` proxies (or a bare `host:port`) are supported: a SOCKS (`socks4`,
/// `socks4a`, `socks5`, `socks5h`) or `https://` proxy, or one that does not parse, is never
/// bypassed by going direct: every request it would carry is refused, before anything is
/// sent, with [`TransportError::Setup`] naming the variable (a configuration error,
/// [`Error::TransportSetup`](crate::Error::TransportSetup), for the store and logins).
/// [`TransportBuilder::proxy`](super::TransportBuilder::proxy) sets one explicitly instead.
#[derive(Clone)]
pub struct UreqTransport {
    pub(super) agents: Agents,
    tls: Arc<SharedTls>,
    max_body: u64,
}

/// One agent per route; all share the TLS configuration.
#[derive(Debug, Clone)]
pub(super) struct Agents {
    direct: ureq::Agent,
    via_http_proxy: Route<ureq::Agent>,
    via_https_proxy: Route<ureq::Agent>,
    pub(super) no_proxy: NoProxy,
}

/// How requests of one scheme leave: directly, through a proxy, or not at all (a proxy was
/// asked for that cannot be used: going direct instead would bypass it).
#[derive(Debug, Clone, Default)]
pub(super) enum Route<T> {
    #[default]
    Direct,
    Via(T),
    Refused(String),
}

impl<T> Route<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Route<U> {
        match self {
            Route::Direct => Route::Direct,
            Route::Via(t) => Route::Via(f(t)),
            Route::Refused(why) => Route::Refused(why),
        }
    }

    fn is_via(&self) -> bool {
        matches!(self, Route::Via(_))
    }
}

/// The proxies a transport uses, before their agents are made.
#[derive(Debug, Clone, Default)]
pub(super) struct Proxies {
    pub(super) http: Route<ureq::Proxy>,
    pub(super) https: Route<ureq::Proxy>,
    pub(super) no_proxy: NoProxy,
}

impl Proxies {
    /// curl's variables, read through `env`.
    pub(super) fn from_env(env: &dyn Fn(&str) -> Option<OsString>) -> Proxies {
        let var = |name: &str| env(name).and_then(|v| v.into_string().ok());
        let proxy_from = |vars: &[&str]| {
            vars.iter()
                .find_map(|name| {
                    var(name)
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (*name, v))
                })
                .map_or(Route::Direct, |(name, v)| env_proxy(name, v.trim()))
        };
        Proxies {
            http: proxy_from(&["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]),
            https: proxy_from(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]),
            no_proxy: ["no_proxy", "NO_PROXY"]
                .iter()
                .find_map(|v| var(v))
                .map(|v| NoProxy::parse(&v))
                .unwrap_or_default(),
        }
    }
}

/// The proxy `url` from the variable `name`: only `http://` (or no scheme, as curl reads it);
/// anything else is refused, never skipped.
fn env_proxy(name: &str, url: &str) -> Route<ureq::Proxy> {
    let refused = |why: &str| {
        Route::Refused(format!(
            "the proxy {} in {name} {why}; unset {name}, or set an http:// proxy there",
            crate::basics::secret::display_url(url)
        ))
    };
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        None | Some("http") => match ureq::Proxy::new(url) {
            Ok(proxy) => Route::Via(proxy),
            Err(_) => refused("is not a valid proxy URL"),
        },
        Some(s) if s.starts_with("socks") => refused(
            "is a SOCKS proxy, which credlock does not support (it would not go direct instead)",
        ),
        Some(_) => refused(
            "is not an http:// proxy (credlock supports no other kind, and would not go direct \
             instead)",
        ),
    }
}

impl std::fmt::Debug for UreqTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.agents;
        f.debug_struct("UreqTransport")
            .field("roots", &self.tls.describe())
            .field("http_proxy", &a.via_http_proxy.is_via())
            .field("https_proxy", &a.via_https_proxy.is_via())
            .field("no_proxy", &a.no_proxy)
            .field("max_body", &self.max_body)
            .finish()
    }
}

impl UreqTransport {
    /// Defaults: the platform's roots (or `SSL_CERT_FILE` / `SSL_CERT_DIR`), proxies from the
    /// environment, connect timeout 10 s, whole exchange 30 s, body at most 256 KiB.
    ///
    /// This cannot fail. Proxies are read now; roots at the first https request, so that a
    /// transport used only for loopback http never reads the trust store. If `SSL_CERT_FILE`
    /// or `SSL_CERT_DIR` names something unusable, every https request is refused with
    /// [`TransportError::Other`] saying why (as curl does), rather than trusting other roots
    /// than the ones asked for; they are read again at each https request until they can be. [`UreqTransport::builder`] reads them when it builds, and
    /// returns such an error there.
    #[must_use]
    pub fn new() -> UreqTransport {
        UreqTransport::with_timeouts(Duration::from_secs(10), Duration::from_secs(30))
    }

    /// The same with other timeouts.
    #[must_use]
    pub fn with_timeouts(connect: Duration, global: Duration) -> UreqTransport {
        UreqTransport::lazy(connect, global, Box::new(|name| std::env::var_os(name)))
    }

    /// [`UreqTransport::with_timeouts`] reading the environment through `env`.
    pub(super) fn lazy(connect: Duration, global: Duration, env: Env) -> UreqTransport {
        let proxies = Proxies::from_env(&env);
        let tls = SharedTls::lazy(TlsSettings::default(), env);
        UreqTransport::from_parts(Arc::new(tls), proxies, connect, global, 256 * 1024)
    }

    /// The transport from checked parts (see
    /// [`TransportBuilder::build`](super::TransportBuilder::build)).
    pub(super) fn from_parts(
        tls: Arc<SharedTls>,
        proxies: Proxies,
        connect: Duration,
        global: Duration,
        max_body: u64,
    ) -> UreqTransport {
        let agent = |proxy: Option<ureq::Proxy>| {
            let config = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_connect(Some(connect))
                .timeout_global(Some(global))
                .user_agent(concat!("credlock/", env!("CARGO_PKG_VERSION")))
                // Explicit: ureq's default reads the environment itself, and would proxy
                // loopback endpoints.
                .proxy(proxy)
                .build();
            ureq::Agent::with_parts(
                config,
                super::tls_connector::connector(Arc::clone(&tls)),
                ureq::unversioned::resolver::DefaultResolver::default(),
            )
        };
        UreqTransport {
            agents: Agents {
                direct: agent(None),
                via_http_proxy: proxies.http.map(|p| agent(Some(p))),
                via_https_proxy: proxies.https.map(|p| agent(Some(p))),
                no_proxy: proxies.no_proxy,
            },
            tls,
            max_body,
        }
    }

    /// The agent for `url`: direct for loopback and `no_proxy` hosts, else through the proxy
    /// for its scheme, if any.
    ///
    /// For an https URL, the TLS configuration is read first (if it was not): when it cannot
    /// be, nothing is sent, not even a connection opened.
    fn agent_for(&self, url: &str) -> Result<&ureq::Agent, TransportError> {
        let agents = &self.agents;
        let Ok(uri) = url.parse::<ureq::http::Uri>() else {
            return Ok(&agents.direct);
        };
        let https = uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"));
        if https {
            self.tls.get().map_err(TransportError::Other)?;
        }
        let host = uri.host().unwrap_or("");
        if is_loopback_host(host) || agents.no_proxy.matches(host) {
            return Ok(&agents.direct);
        }
        let route = if https {
            &agents.via_https_proxy
        } else {
            &agents.via_http_proxy
        };
        match route {
            Route::Direct => Ok(&agents.direct),
            Route::Via(agent) => Ok(agent),
            Route::Refused(why) => Err(TransportError::Setup(why.clone())),
        }
    }
}

impl Default for UreqTransport {
    fn default() -> Self {
        UreqTransport::new()
    }
}

impl Transport for UreqTransport {
    fn post_form(&self, request: &FormRequest) -> Result<HttpResponse, TransportError> {
        let mut builder = self
            .agent_for(&request.url)?
            .post(&request.url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json");
        if let Some(auth) = &request.authorization {
            builder = builder.header("Authorization", auth.secret());
        }
        let response = builder.send(request.body().secret()).map_err(map_error)?;
        self.read(response)
    }

    fn get(&self, url: &str) -> Result<HttpResponse, TransportError> {
        let response = self
            .agent_for(url)?
            .get(url)
            .header("Accept", "application/json")
            .call()
            .map_err(map_error)?;
        self.read(response)
    }

    fn peek(&self, url: &str, timeout: Duration) -> Result<super::Peek, TransportError> {
        let response = self
            .agent_for(url)?
            .get(url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Accept", "text/html")
            .call()
            .map_err(map_error)?;
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(4096).collect());
        // The body is not read: the connection is dropped with it.
        Ok(super::Peek::new(response.status().as_u16(), location))
    }
}

impl UreqTransport {
    /// Reads the roots now if a request to `url` will need them (https) and they were not
    /// read yet: the store calls it before taking the lock, so that unusable roots are a
    /// configuration error found at once rather than a failed request under the lock.
    ///
    /// # Errors
    /// [`Error::TransportSetup`](crate::Error::TransportSetup), naming the file.
    pub(crate) fn roots_for(&self, url: &str) -> Result<(), crate::error::Error> {
        let https = url
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
        if https {
            self.tls.try_get()?;
        }
        Ok(())
    }

    /// Status, `Retry-After` and the body (bounded) of a response, whatever its status.
    fn read(
        &self,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<HttpResponse, TransportError> {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(64).collect());
        let body = response
            .body_mut()
            .with_config()
            .limit(self.max_body)
            .read_to_vec()
            .map_err(map_error)?;
        Ok(HttpResponse {
            status,
            retry_after,
            body,
        })
    }
}

fn map_error(e: ureq::Error) -> TransportError {
    match e {
        ureq::Error::Timeout(t) => TransportError::Timeout(t.to_string()),
        ureq::Error::BodyExceedsLimit(n) => TransportError::TooLarge(n),
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            TransportError::Connect(e.to_string())
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            TransportError::Connect(io.to_string())
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            TransportError::Timeout(io.to_string())
        }
        ureq::Error::Rustls(tls) => TransportError::Tls(tls_reason(&tls)),
        ureq::Error::Tls(why) => TransportError::Tls(why.to_owned()),
        ureq::Error::Io(io) if io.get_ref().is_some_and(|e| e.is::<rustls::Error>()) => {
            let tls = io
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .map_or_else(|| io.to_string(), tls_reason);
            TransportError::Tls(tls)
        }
        ureq::Error::Other(e) if e.is::<Unusable>() => TransportError::Other(e.to_string()),
        other => TransportError::Other(other.to_string()),
    }
}

/// A TLS failure, with what to do when the server's certificate is not trusted.
fn tls_reason(e: &rustls::Error) -> String {
    use rustls::{CertificateError, Error as Tls};
    match e {
        Tls::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "{e}: the server's certificate does not chain to a trusted root; if the network \
             intercepts TLS, trust its root CA (install it in the system's store, set \
             SSL_CERT_FILE, or give the transport an extra CA file)"
        ),
        Tls::AlertReceived(rustls::AlertDescription::CertificateRequired)
        | Tls::AlertReceived(rustls::AlertDescription::HandshakeFailure) => {
            format!("{e}: the server may require a client certificate (mutual TLS)")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, value: &str) -> Route<ureq::Proxy> {
        let (name, value) = (name.to_owned(), value.to_owned());
        Proxies::from_env(&move |v| (v == name).then(|| OsString::from(&value))).https
    }

    #[test]
    fn an_http_proxy_is_used_and_any_other_kind_is_refused_never_skipped() {
        assert!(route("https_proxy", "http://proxy.example:3128").is_via());
        assert!(route("HTTPS_PROXY", "proxy.example:3128").is_via());
        assert!(route("all_proxy", "HTTP://proxy.example:3128").is_via());
        assert!(matches!(route("https_proxy", "  "), Route::Direct));
        for value in [
            "socks5h://u:pw@proxy.example:1080",
            "SOCKS5://proxy.example:1080",
            "https://proxy.example:3128",
            "http://[broken",
        ] {
            let Route::Refused(why) = route("https_proxy", value) else {
                panic!("{value} was not refused");
            };
            assert!(why.contains("https_proxy"), "{why}");
            assert!(!why.contains("pw"), "{why}");
        }
    }
}
