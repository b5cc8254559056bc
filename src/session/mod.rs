//! The session: what is stored (client, tokens, expiry), the token response it is made from,
//! the ID token's claims, and the OAuth error response.
//!
//! Layer 2 of 7 in the order `api/module-graph` checks: it may import only `basics`. The
//! session's file format (`Session::from_json`, `Session::from_token_response`) returns the crate's
//! `Error`, which names a session, so it sits above `error`, in `file/session_file.rs`.
//!
//! - `model.rs`: [`Session`](model::Session), [`Client`](model::Client) and their checks;
//! - `token_response.rs`: the RFC 6749 §5.1 response, parsed leniently (its `builder.rs`, and
//!   `salvage.rs` for the members of a body serde_json refuses as a whole);
//! - `claims.rs`: who the session belongs to, unverified, for display;
//! - `oauth_error.rs`: the RFC 6749 §5.2 error response, with echoed secrets scrubbed.

pub(crate) mod claims;
pub(crate) mod model;
pub(crate) mod oauth_error;
pub(crate) mod token_response;
