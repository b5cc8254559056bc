//! The HTTP seam: a trait the refresh protocol calls, and its ureq implementation.
//!
//! - `ureq_transport.rs`: [`UreqTransport`], the real one;
//! - `builder.rs`: [`TransportBuilder`], its settings, checked when it is built;
//! - `tls.rs`: which roots it trusts ([`Roots`]) and the client identity it shows;
//! - `tls_connector.rs`: that TLS configuration in ureq's connector chain;
//! - `proxy.rs`: which requests go through a proxy.

mod builder;
mod proxy;
mod tls;
mod tls_connector;
mod ureq_transport;

use std::time::Duration;

use crate::wire::form::FormRequest;
pub use builder::TransportBuilder;
pub use tls::Roots;
pub use ureq_transport::UreqTransport;

/// An HTTP response from a token or revocation endpoint, as far as OAuth needs it.
///
/// `Debug` shows the status, the body's length, and `Retry-After` only if it is a number of
/// seconds: a token response's body holds tokens, and a server may echo one anywhere.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The body, bounded by the transport.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with `status` and `body`, and no `Retry-After`: for a [`Transport`] of one's
    /// own.
    #[must_use]
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> HttpResponse {
        HttpResponse {
            status,
            retry_after: None,
            body: body.into(),
        }
    }

    /// The same response with a `Retry-After` header.
    #[must_use]
    pub fn with_retry_after(mut self, value: impl Into<String>) -> HttpResponse {
        self.retry_after = Some(value.into());
        self
    }
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

/// What a [`Transport::peek`] saw: the status and where a redirect points.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Peek {
    /// The status code.
    pub status: u16,
    /// The `Location` header, if any (at most 4096 characters), as sent: it may be relative.
    pub location: Option<String>,
}

impl Peek {
    /// What a peek saw: `status`, and the `Location` header if any.
    #[must_use]
    pub fn new(status: u16, location: Option<String>) -> Peek {
        Peek { status, location }
    }
}

/// Why no HTTP response was obtained. The text names no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection could not be made (refused, DNS).
    #[error("could not connect: {0}")]
    Connect(String),
    /// The TLS handshake failed: the server's certificate is not trusted (or not for this
    /// host), the server wants a client certificate, or the two sides share no protocol.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// Connecting or the whole exchange took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The body exceeded the transport's limit (a token response is a few KiB).
    #[error("the response body exceeds {0} bytes")]
    TooLarge(u64),
    /// Any other transport failure.
    #[error("{0}")]
    Other(String),
    /// The transport is configured in a way it cannot honour (a SOCKS or malformed proxy in
    /// the environment): nothing was sent, not even directly. Not transient: the
    /// configuration must change.
    #[error("{0}")]
    Setup(String),
}

impl TransportError {
    /// The configuration error this failure is, if it is one: a [`TransportError::Setup`]
    /// becomes [`Error::TransportSetup`] wherever a request failed (refresh, revocation,
    /// discovery, login), so that it is not taken for a network failure that may pass.
    pub(crate) fn as_setup_error(&self) -> Option<crate::error::Error> {
        match self {
            TransportError::Setup(reason) => Some(crate::error::Error::TransportSetup {
                path: None,
                reason: reason.clone(),
            }),
            _ => None,
        }
    }
}

/// Sends a form POST and returns the response whatever its status.
///
/// The default is [`UreqTransport`]. Tests replace it (see the `credlock-test` crate) to count,
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

    /// GETs `url` as a browser without cookies would arrive there, and reports the status
    /// and the `Location` header: redirects not followed, the body not read, within
    /// `timeout`. No credentials are sent. A browser login uses it on the authorization URL
    /// before it opens the browser, to learn whether the server refuses the request outright
    /// (an error page that never redirects back).
    ///
    /// The default refuses, and the login then opens the browser without looking first.
    ///
    /// # Errors
    /// [`TransportError`] when there is no response to read.
    fn peek(&self, url: &str, timeout: Duration) -> Result<Peek, TransportError> {
        let _ = (url, timeout);
        Err(TransportError::Other(
            "this transport does not support peeking".to_owned(),
        ))
    }
}

/// How long a [`Transport::peek`] may take at most, and the timeout the login gives it.
pub(crate) const PEEK_TIMEOUT: Duration = Duration::from_secs(5);

/// The rustls configuration the default transport uses (the platform's roots, or
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` instead, or the bundled ones), for another TLS client of
/// the crate that must trust what the HTTP transport trusts (a `rediss://` session store).
///
/// # Errors
/// [`crate::Error::TransportSetup`], as the transport's.
#[cfg(feature = "redis")]
pub(crate) fn default_tls_config() -> Result<std::sync::Arc<rustls::ClientConfig>, crate::Error> {
    tls::build(&tls::TlsSettings::default(), &|name| std::env::var_os(name)).map(|b| b.config)
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
}
