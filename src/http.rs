//! The HTTP seam: a trait the refresh protocol calls, and its ureq implementation.

use std::time::Duration;

use crate::oauth::FormRequest;

/// An HTTP response from a token or revocation endpoint, as far as OAuth needs it.
///
/// `Debug` shows the status, the body's length, and `Retry-After` only if it is a number of
/// seconds: a token response's body holds tokens, and a server may echo one anywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The body, bounded by the transport.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field(
                "retry_after",
                &self.retry_after.as_deref().map(|r| {
                    if r.bytes().all(|b| b.is_ascii_digit()) {
                        r
                    } else {
                        "[not shown]"
                    }
                }),
            )
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why no HTTP response was obtained. The text names no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection could not be made (refused, DNS, TLS).
    #[error("could not connect: {0}")]
    Connect(String),
    /// Connecting or the whole exchange took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The body exceeded the transport's limit (a token response is a few KiB).
    #[error("the response body exceeds {0} bytes")]
    TooLarge(u64),
    /// Any other transport failure.
    #[error("{0}")]
    Other(String),
}

/// Sends a form POST and returns the response whatever its status.
///
/// The default is [`UreqTransport`]. Tests replace it (see `credlock::testing`) to count,
/// script and delay refreshes without a network.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// POSTs `request` and returns the response, including 4xx and 5xx.
    ///
    /// # Errors
    /// [`TransportError`] when there is no response to read.
    fn post_form(&self, request: &FormRequest) -> Result<HttpResponse, TransportError>;

    /// GETs `url` (a discovery document) and returns the response, including 4xx and 5xx.
    /// No credentials are sent.
    ///
    /// The default refuses, so that transports written before logins existed keep compiling;
    /// a login that needs discovery then reports [`TransportError::Other`].
    ///
    /// # Errors
    /// [`TransportError`] when there is no response to read.
    fn get(&self, url: &str) -> Result<HttpResponse, TransportError> {
        let _ = url;
        Err(TransportError::Other(
            "this transport does not support GET (discovery); give the endpoints explicitly"
                .to_owned(),
        ))
    }
}

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

/// Whether `host` (as in a URL, IPv6 in brackets or not) is a loopback host: `localhost`, a
/// name under `.localhost` (RFC 6761), or a loopback address (IPv4-mapped included).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The hosts `no_proxy` exempts from proxying.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NoProxy {
    all: bool,
    names: Vec<String>,
    blocks: Vec<(std::net::IpAddr, u8)>,
}

impl NoProxy {
    fn from_env() -> NoProxy {
        ["no_proxy", "NO_PROXY"]
            .iter()
            .find_map(|v| std::env::var(v).ok())
            .map(|v| NoProxy::parse(&v))
            .unwrap_or_default()
    }

    fn parse(list: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for entry in list
            .split([',', ' ', '\t'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if entry == "*" {
                out.all = true;
                continue;
            }
            if let Some((ip, bits)) = entry.split_once('/') {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                if let (Ok(ip), Ok(bits)) = (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
                    out.blocks.push((ip.to_canonical(), bits));
                }
                continue;
            }
            let host = if let Some(v6) = entry.strip_prefix('[') {
                v6.split(']').next().unwrap_or("")
            } else if entry.matches(':').count() == 1 {
                entry.split(':').next().unwrap_or("")
            } else {
                entry
            };
            let host = host.trim_start_matches("*.").trim_start_matches('.');
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                out.blocks.push((ip.to_canonical(), bits));
            } else if !host.is_empty() {
                out.names
                    .push(host.trim_end_matches('.').to_ascii_lowercase());
            }
        }
        out
    }

    fn matches(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            let ip = ip.to_canonical();
            return self
                .blocks
                .iter()
                .any(|(net, bits)| in_block(ip, *net, *bits));
        }
        self.names.iter().any(|name| {
            host == *name
                || host
                    .strip_suffix(name.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }
}

fn in_block(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u8) -> bool {
    use std::net::IpAddr;
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let bits = u32::from(bits.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let bits = u32::from(bits.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// A `Retry-After` value (RFC 9110 §10.2.3) as a wait from `now`: delay-seconds, or an HTTP
/// date (IMF-fixdate, or the obsolete RFC 850 and asctime forms). A date in the past is no
/// wait; anything else unreadable is `None`.
#[must_use]
pub(crate) fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_header_text_but_seconds() {
        let r = HttpResponse {
            status: 503,
            retry_after: Some("rt-secret-value".into()),
            body: b"{\"access_token\":\"at-secret\"}".to_vec(),
        };
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        let r = HttpResponse {
            retry_after: Some("120".into()),
            ..r
        };
        assert!(format!("{r:?}").contains("120"));
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        // RFC 9110's example date is 784111777; the three forms, 60 s later.
        for date in [
            "Sun, 06 Nov 1994 08:50:37 GMT",
            "Sunday, 06-Nov-94 08:50:37 GMT",
            "Sun Nov  6 08:50:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(date, now),
                Some(Duration::from_secs(60)),
                "{date}"
            );
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date is no wait"
        );
        for junk in ["", "-5", "1.5", "soon", "99999999999999999999999"] {
            let parsed = parse_retry_after(junk, now);
            assert!(
                junk.starts_with('9') || parsed.is_none(),
                "{junk}: {parsed:?}"
            );
        }
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "a.localhost",
            "127.0.0.1",
            "127.9.9.9",
            "[::1]",
            "::1",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["localhost.evil.com", "10.0.0.1", "example.com", "[::2]", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn no_proxy_follows_curl() {
        let np = NoProxy::parse(
            " example.com, .corp.test ,*.wild.test, host.test:8443, 10.0.0.0/8, 192.168.1.7, [fd00::1], fe80::/10",
        );
        for host in [
            "example.com",
            "api.example.com",
            "EXAMPLE.COM.",
            "corp.test",
            "a.corp.test",
            "x.wild.test",
            "host.test",
            "10.1.2.3",
            "192.168.1.7",
            "[fd00::1]",
            "fe80::1",
        ] {
            assert!(np.matches(host), "{host}");
        }
        for host in [
            "badexample.com",
            "example.com.evil",
            "11.0.0.1",
            "192.168.1.8",
            "fd00::2",
        ] {
            assert!(!np.matches(host), "{host}");
        }
        assert!(NoProxy::parse("*").matches("anything.example"));
        assert!(!NoProxy::parse("").matches("example.com"));
    }
}
