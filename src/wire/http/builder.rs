//! [`TransportBuilder`]: the settings of a [`UreqTransport`], checked when it is built.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::proxy::NoProxy;
use super::tls::{Roots, TlsSettings};
use super::tls_connector::SharedTls;
use super::ureq_transport::{Proxies, Route, UreqTransport};
use crate::error::Error;

/// The settings of a [`UreqTransport`]: trusted roots, extra CA files, a client identity for
/// mutual TLS, proxies, timeouts and the body limit. Every file is read, and every setting
/// checked, by [`build`](TransportBuilder::build), so that a bad file is an error there rather
/// than at the first refresh.
///
/// # Examples
/// A network that intercepts TLS with its own root CA, and a proxy:
/// ```no_run
/// use std::sync::Arc;
/// use credlock::transport::{Roots, UreqTransport};
///
/// let transport = UreqTransport::builder()
///     .roots(Roots::Platform)
///     .extra_ca_file("/etc/corp/root-ca.pem")
///     .proxy("http://proxy.corp.example:3128")
///     .no_proxy("corp.example, 10.0.0.0/8")
///     .build()?;
/// let store = credlock::Store::new("/home/me/.config/my-cli/session.json")
///     .with_transport(Arc::new(transport));
/// # Ok::<(), credlock::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct TransportBuilder {
    roots: Roots,
    extra_ca_files: Vec<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
    proxy: ProxySetting,
    no_proxy: String,
    timeout_connect: Duration,
    timeout_global: Duration,
    max_body: u64,
}

/// Where proxies come from. The explicit URL is never shown: it may carry a password.
#[derive(Clone)]
enum ProxySetting {
    Env,
    None,
    Explicit { url: String },
}

impl std::fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxySetting::Env => f.write_str("Env"),
            ProxySetting::None => f.write_str("None"),
            ProxySetting::Explicit { url } => f
                .debug_struct("Explicit")
                .field("url", &display_proxy(url))
                .finish(),
        }
    }
}

// Here rather than in `ureq_transport.rs`: the builder makes the transport, so the transport
// does not name the builder back.
impl UreqTransport {
    /// A builder for a transport with other roots, extra CA files, a client identity for
    /// mutual TLS, explicit proxies, timeouts or body limit.
    pub fn builder() -> TransportBuilder {
        TransportBuilder::new()
    }
}

impl Default for TransportBuilder {
    fn default() -> Self {
        TransportBuilder {
            roots: Roots::Platform,
            extra_ca_files: Vec::new(),
            identity: None,
            proxy: ProxySetting::Env,
            no_proxy: String::new(),
            timeout_connect: Duration::from_secs(10),
            timeout_global: Duration::from_secs(30),
            max_body: 256 * 1024,
        }
    }
}

impl TransportBuilder {
    /// A builder with the defaults of [`UreqTransport::new`].
    pub fn new() -> TransportBuilder {
        TransportBuilder::default()
    }

    /// The roots to start from. Defaults to [`Roots::Platform`] (the operating system's
    /// store, or `SSL_CERT_FILE` / `SSL_CERT_DIR` instead when set).
    pub fn roots(mut self, roots: Roots) -> TransportBuilder {
        self.roots = roots;
        self
    }

    /// Also trusts the CA certificates in the PEM file `path` (one or many), whatever the
    /// [`Roots`]; may be called more than once. Defaults to none.
    pub fn extra_ca_file(mut self, path: impl Into<PathBuf>) -> TransportBuilder {
        self.extra_ca_files.push(path.into());
        self
    }

    /// Shows a client certificate to servers that ask for one (mutual TLS): `cert_chain` is a
    /// PEM file with the certificate first and any intermediates after it, `private_key` a
    /// PEM file with its key (PKCS #8, PKCS #1 or SEC1). Defaults to none.
    pub fn client_identity(
        mut self,
        cert_chain: impl Into<PathBuf>,
        private_key: impl Into<PathBuf>,
    ) -> TransportBuilder {
        self.identity = Some((cert_chain.into(), private_key.into()));
        self
    }

    /// Proxies from the environment when [`build`](TransportBuilder::build) runs, as curl
    /// reads them (see [`UreqTransport`]'s "Proxies"). The default.
    pub fn proxy_from_env(mut self) -> TransportBuilder {
        self.proxy = ProxySetting::Env;
        self
    }

    /// No proxy at all, whatever the environment says.
    pub fn no_proxy_at_all(mut self) -> TransportBuilder {
        self.proxy = ProxySetting::None;
        self
    }

    /// Every request through the HTTP proxy at `url` (`http://[user:password@]host:port`;
    /// an `https` endpoint is reached with `CONNECT`), except loopback hosts and those of
    /// [`no_proxy`](TransportBuilder::no_proxy). The environment's proxy variables, `NO_PROXY`
    /// included, are then ignored. The URL is never shown in `Debug` or errors with its
    /// password.
    pub fn proxy(mut self, url: impl Into<String>) -> TransportBuilder {
        self.proxy = ProxySetting::Explicit { url: url.into() };
        self
    }

    /// The hosts the explicit [`proxy`](TransportBuilder::proxy) does not apply to, in
    /// `NO_PROXY`'s syntax (comma-separated hosts with their subdomains, IP addresses, CIDR
    /// blocks, `*`). Has no effect without an explicit proxy (set before or after this).
    /// Defaults to none.
    pub fn no_proxy(mut self, list: impl Into<String>) -> TransportBuilder {
        self.no_proxy = list.into();
        self
    }

    /// How long connecting (DNS, TCP, TLS handshake, proxy) may take. Defaults to 10 s.
    pub fn timeout_connect(mut self, timeout: Duration) -> TransportBuilder {
        self.timeout_connect = timeout;
        self
    }

    /// How long a whole exchange may take. Defaults to 30 s.
    pub fn timeout_global(mut self, timeout: Duration) -> TransportBuilder {
        self.timeout_global = timeout;
        self
    }

    /// The largest response body read, in bytes; a larger one is
    /// [`TransportError::TooLarge`](super::TransportError::TooLarge). Defaults to 256 KiB (a
    /// token response is a few KiB).
    pub fn max_body(mut self, bytes: u64) -> TransportBuilder {
        self.max_body = bytes;
        self
    }

    /// Reads the files and the environment and builds the transport.
    ///
    /// # Errors
    /// [`Error::TransportSetup`], naming the file where there is one, when an extra CA file,
    /// `SSL_CERT_FILE`, a directory of `SSL_CERT_DIR` or a client identity file cannot be read
    /// or holds no usable certificate or key, when the private key does not match the
    /// certificate, when [`Roots::ExtraOnly`] has no extra CA file, or when the explicit proxy
    /// URL is not an `http://` proxy.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use credlock::transport::{Roots, UreqTransport};
    ///
    /// let transport = UreqTransport::builder()
    ///     .roots(Roots::Bundled)
    ///     .timeout_global(Duration::from_secs(10))
    ///     .build()?;
    ///
    /// let e = UreqTransport::builder()
    ///     .extra_ca_file("/nonexistent/corp-root-ca.pem")
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(e, credlock::Error::TransportSetup { path: Some(_), .. }));
    /// assert!(e.is_configuration());
    /// # Ok::<(), credlock::Error>(())
    /// ```
    pub fn build(&self) -> Result<UreqTransport, Error> {
        self.build_with_env(&|name| std::env::var_os(name))
    }

    /// [`build`](TransportBuilder::build) reading environment variables through `env`.
    pub(super) fn build_with_env(
        &self,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<UreqTransport, Error> {
        let tls = super::tls::build(
            &TlsSettings {
                roots: self.roots,
                extra_ca_files: self.extra_ca_files.clone(),
                identity: self.identity.clone(),
            },
            env,
        )?;
        let tls = Arc::new(SharedTls::ready(tls));
        let proxies = match &self.proxy {
            ProxySetting::Env => Proxies::from_env(env),
            ProxySetting::None => Proxies::default(),
            ProxySetting::Explicit { url } => {
                let proxy = explicit_proxy(url)?;
                Proxies {
                    http: Route::Via(proxy.clone()),
                    https: Route::Via(proxy),
                    no_proxy: NoProxy::parse(&self.no_proxy),
                }
            }
        };
        Ok(UreqTransport::from_parts(
            tls,
            proxies,
            self.timeout_connect,
            self.timeout_global,
            self.max_body,
        ))
    }
}

/// An explicit proxy: `http://` only (ureq speaks CONNECT to it in clear; SOCKS is not built
/// in, and TLS to the proxy itself is not supported).
fn explicit_proxy(url: &str) -> Result<ureq::Proxy, Error> {
    let bad = |why: &str| Error::TransportSetup {
        path: None,
        reason: format!("the proxy {} {why}", display_proxy(url)),
    };
    let scheme_ok = url
        .trim()
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
    if !scheme_ok {
        return Err(bad(
            "is not an http:// proxy URL (SOCKS and https proxies are not supported)",
        ));
    }
    ureq::Proxy::new(url.trim()).map_err(|_| bad("is not a valid proxy URL"))
}

/// A proxy URL as it may be shown: the one redaction for URLs with user information.
fn display_proxy(url: &str) -> String {
    crate::basics::secret::display_url(url)
}

#[cfg(test)]
mod tests;
