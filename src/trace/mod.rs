//! What credlock does, told to the `tracing` ecosystem (feature `tracing`): a span for the
//! lock wait, the lease, the refresh and the save, each with its outcome and duration, and
//! every [`Event`] as a tracing event inside them.
//!
//! This is the only module that names `tracing` (`on.rs` with the feature, `off.rs` without).
//! The protocol code calls it unconditionally, one line per span:
//!
//! ```text
//! let acquired = trace::Span::lock_wait(&self.lock_path).run(|| lock::acquire(…));
//! ```
//!
//! `AsyncStore` carries the caller's subscriber and span to its blocking pool ([`Context`],
//! feature `tokio`), so its spans nest in the caller's.
//!
//! Without the feature [`Span`] and [`Hold`] are zero-sized and every function here is an
//! empty `#[inline]` one: no dependency, no cost. With it, a span records `outcome` (the
//! span's own word for success, or what [`Outcome`] says: `"adopted"`, an [`Error::kind`])
//! and `elapsed_ms` when its work returns.
//!
//! Nothing secret is recorded: spans hold paths, the token endpoint without user information,
//! query or fragment, outcome words and milliseconds; events hold an [`Event`]'s `Display`
//! (which never contains a secret) and its path and reason. The spans, fields, events and
//! levels are listed in `docs/tracing.md`; the tests in `tests.rs` and
//! `tests/all/traces.rs` hold them to it.
//!
//! Layer 4 of 7 in the order `api/module-graph` checks: it may import `basics`, `session`
//! and `error`. It owns the [`Event`](event::Event)s too (`event.rs`): what a store tells its
//! observer.

pub(crate) mod event;
#[cfg(not(feature = "tracing"))]
mod off;
#[cfg(feature = "tracing")]
mod on;
#[cfg(all(test, feature = "tracing"))]
mod test_anchor;
#[cfg(all(test, feature = "tracing"))]
mod tests;

use crate::basics::wait::Acquired;
use crate::error::Error;

#[cfg(all(feature = "tokio", not(feature = "tracing")))]
pub(crate) use off::Context;
#[cfg(not(feature = "tracing"))]
pub(crate) use off::{Hold, Span, event, lease_broken};
#[cfg(all(feature = "tokio", feature = "tracing"))]
pub(crate) use on::Context;
#[cfg(feature = "tracing")]
pub(crate) use on::{Hold, Span, event, lease_broken};

/// What a span records as its `outcome` when its work returns.
pub(crate) trait Outcome {
    /// `None` for plain success, which the span names itself (`"acquired"`, `"refreshed"`,
    /// `"saved"`); otherwise the word to record.
    #[cfg_attr(
        not(feature = "tracing"),
        allow(dead_code, reason = "read by the spans of the `tracing` feature only")
    )]
    fn outcome(&self) -> Option<&'static str>;
}

impl Outcome for () {
    fn outcome(&self) -> Option<&'static str> {
        None
    }
}

/// A conditional step: `false` (a save whose precondition no longer held) is `"skipped"`.
impl Outcome for bool {
    fn outcome(&self) -> Option<&'static str> {
        (!*self).then_some("skipped")
    }
}

/// A failure is recorded as its [`Error::kind`]: `"lock_timeout"`, `"session_expired"` (the
/// `invalid_grant` outcome), `"unavailable"`, `"lease_lost"`, …
impl Outcome for Error {
    fn outcome(&self) -> Option<&'static str> {
        Some(self.kind())
    }
}

/// A wait for a guard: taken (the span's success), or ended early by adopting what another
/// process saved.
impl<G, R> Outcome for Acquired<G, R> {
    fn outcome(&self) -> Option<&'static str> {
        match self {
            Acquired::Held(_) => None,
            Acquired::Resolved(_) => Some("adopted"),
        }
    }
}

impl<T: Outcome, E: Outcome> Outcome for Result<T, E> {
    fn outcome(&self) -> Option<&'static str> {
        match self {
            Ok(t) => t.outcome(),
            Err(e) => e.outcome().or(Some("failed")),
        }
    }
}
