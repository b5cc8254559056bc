//! OAuth on the wire: where credentials may be sent, the form POSTs, the HTTP transport, and
//! what every answer means.
//!
//! Layer 5 of 7 in the order `api/module-graph` checks: it may import `basics`, `session`,
//! `error` and `trace`; not `file`, `protection` or `redis`, its siblings on the same level
//! (`redis` takes its TLS configuration from here, not the other way round).
//!
//! - `endpoint.rs`: endpoint URLs checked before any request;
//! - `form.rs`: the refresh and revocation requests, with their client authentication;
//! - `http/`: the [`Transport`](http::Transport) seam and its ureq implementation (TLS
//!   roots, proxies, the builder);
//! - `http_answer.rs`: the one table from an HTTP answer to what it means, per endpoint;
//! - `oauth2_glue.rs`: a token response from oauth2-rs's (feature `oauth2`).

pub(crate) mod endpoint;
pub(crate) mod form;
pub(crate) mod http;
pub(crate) mod http_answer;
#[cfg(feature = "oauth2")]
pub(crate) mod oauth2_glue;
