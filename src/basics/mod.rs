//! The basics: the clock, the encodings, the one wait loop and [`Secret`](secret::Secret).
//!
//! Layer 1 of 7, the lowest, in the order `api/module-graph` checks: it imports no other
//! layer, and every layer may import it.
//!
//! - `clock.rs`: what "now" is, and how to wait (the time seam);
//! - `encoding.rs`: form-urlencoding, base64, and JSON errors described without the input;
//! - `wait.rs`: the loop that tries until done, timed out or stopped, and its backoff;
//! - `secret.rs`: a string that is never printed.

pub(crate) mod clock;
pub(crate) mod encoding;
pub(crate) mod secret;
pub(crate) mod wait;
