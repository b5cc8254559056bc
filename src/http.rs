//! The HTTP seam: a trait the refresh protocol calls, and its ureq implementation.

use std::time::Duration;

use crate::oauth::FormRequest;

/// An HTTP response from a token or revocation endpoint, as far as OAuth needs it.
///
/// `Debug` shows the status and the body's length only: a token response's body holds tokens.
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
            .field("retry_after", &self.retry_after)
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
}

/// The real transport: blocking ureq 3 with rustls.
///
/// Follows no redirects (a token endpoint must not send one, and credentials must not
/// follow it), reads error bodies (`http_status_as_error` off, so `invalid_grant` is seen),
/// bounds the response body, and times out.
#[derive(Debug, Clone)]
pub struct UreqTransport {
    agent: ureq::Agent,
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
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(connect))
            .timeout_global(Some(global))
            .user_agent(concat!("credlock/", env!("CARGO_PKG_VERSION")))
            .build();
        UreqTransport {
            agent: config.new_agent(),
            max_body: 256 * 1024,
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
            .agent
            .post(&request.url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json");
        if let Some(auth) = &request.authorization {
            builder = builder.header("Authorization", auth.secret());
        }
        let mut response = builder.send(request.body().secret()).map_err(map_error)?;
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
