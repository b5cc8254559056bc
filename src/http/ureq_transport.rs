//! The real transport: blocking ureq 3 with rustls.

use std::time::Duration;

use super::proxy::{NoProxy, is_loopback_host};
use super::{HttpResponse, Transport, TransportError};
use crate::form::FormRequest;

/// The real transport: blocking ureq 3 with rustls.
///
/// Follows no redirects (a token endpoint must not send one, and credentials must not
/// follow it), reads error bodies (`http_status_as_error` off, so `invalid_grant` is seen),
/// bounds the response body, and times out.
///
/// # Proxies
/// Read from the environment when the transport is built, as curl does: `https_proxy` /
/// `HTTPS_PROXY` for https endpoints, `http_proxy` / `HTTP_PROXY` for http ones, then
/// `all_proxy` / `ALL_PROXY`. A loopback endpoint (`localhost`, `*.localhost`, `127.0.0.0/8`,
/// `::1`) never goes through a proxy: the proxy would resolve it on another machine, and
/// plain http would carry the refresh token to it in clear. `no_proxy` / `NO_PROXY` is
/// honoured: comma-separated hosts (matching the host and its subdomains; a leading `.` or
/// `*.` is ignored, as is a `:port`), IP addresses, CIDR blocks (`10.0.0.0/8`), or `*`.
#[derive(Debug, Clone)]
pub struct UreqTransport {
    direct: ureq::Agent,
    via_http_proxy: Option<ureq::Agent>,
    via_https_proxy: Option<ureq::Agent>,
    no_proxy: NoProxy,
    max_body: u64,
}

impl UreqTransport {
    /// Defaults: connect timeout 10 s, whole exchange 30 s, body at most 256 KiB.
    #[must_use]
    pub fn new() -> UreqTransport {
        UreqTransport::with_timeouts(Duration::from_secs(10), Duration::from_secs(30))
    }

    /// The same with other timeouts.
    #[must_use]
    pub fn with_timeouts(connect: Duration, global: Duration) -> UreqTransport {
        let agent = |proxy: Option<ureq::Proxy>| {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_connect(Some(connect))
                .timeout_global(Some(global))
                .user_agent(concat!("credlock/", env!("CARGO_PKG_VERSION")))
                // Explicit: ureq's default reads the environment itself, and would proxy
                // loopback endpoints.
                .proxy(proxy)
                .build()
                .new_agent()
        };
        let proxy_from = |vars: &[&str]| {
            vars.iter()
                .filter_map(|v| std::env::var(v).ok())
                .find(|v| !v.trim().is_empty())
                .and_then(|v| ureq::Proxy::new(v.trim()).ok())
                .map(|p| agent(Some(p)))
        };
        UreqTransport {
            direct: agent(None),
            via_http_proxy: proxy_from(&["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]),
            via_https_proxy: proxy_from(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]),
            no_proxy: NoProxy::from_env(),
            max_body: 256 * 1024,
        }
    }

    /// The agent for `url`: direct for loopback and `no_proxy` hosts, else through the proxy
    /// for its scheme, if any.
    fn agent_for(&self, url: &str) -> &ureq::Agent {
        let Ok(uri) = url.parse::<ureq::http::Uri>() else {
            return &self.direct;
        };
        let host = uri.host().unwrap_or("");
        if is_loopback_host(host) || self.no_proxy.matches(host) {
            return &self.direct;
        }
        let proxied = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => self.via_https_proxy.as_ref(),
            _ => self.via_http_proxy.as_ref(),
        };
        proxied.unwrap_or(&self.direct)
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
            .agent_for(&request.url)
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
            .agent_for(url)
            .get(url)
            .header("Accept", "application/json")
            .call()
            .map_err(map_error)?;
        self.read(response)
    }
}

impl UreqTransport {
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
        other => TransportError::Other(other.to_string()),
    }
}
