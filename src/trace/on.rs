//! The spans and events, with the feature `tracing`.

use std::path::Path;
use std::time::{Duration, Instant};

use tracing::field::Empty;

use super::Outcome;
use crate::session::model::Session;
use crate::trace::event::Event;

/// Every span and event is under this target: `RUST_LOG=credlock=debug`.
const TARGET: &str = "credlock";

/// A span, entered on this thread from its creation until it is dropped.
#[must_use = "the span ends as soon as this is dropped"]
pub(crate) struct Span {
    span: tracing::span::EnteredSpan,
    start: Instant,
    success: &'static str,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

impl Span {
    fn enter(span: tracing::Span, success: &'static str) -> Span {
        Span {
            span: span.entered(),
            start: Instant::now(),
            success,
        }
    }

    /// `credlock.lock_wait` (DEBUG): waiting for the advisory lock.
    pub(crate) fn lock_wait(lock_path: &Path) -> Span {
        let span = tracing::debug_span!(
            target: TARGET,
            "credlock.lock_wait",
            lock_path = %lock_path.display(),
            outcome = Empty,
            elapsed_ms = Empty,
        );
        Span::enter(span, "acquired")
    }

    /// `credlock.lease` (DEBUG): waiting for the lease, then (see [`Span::hold`]) holding
    /// it.
    pub(crate) fn lease(lease_path: &Path) -> Span {
        let span = tracing::debug_span!(
            target: TARGET,
            "credlock.lease",
            lease_path = %lease_path.display(),
            outcome = Empty,
            elapsed_ms = Empty,
            held_ms = Empty,
        );
        Span::enter(span, "acquired")
    }

    /// `credlock.refresh` (INFO): one refresh request for `session` and what follows from
    /// its answer (the save, the `invalid_grant` fallback).
    pub(crate) fn refresh(path: &Path, session: &Session) -> Span {
        let span = tracing::info_span!(
            target: TARGET,
            "credlock.refresh",
            path = %path.display(),
            endpoint = %endpoint(session),
            outcome = Empty,
            elapsed_ms = Empty,
        );
        Span::enter(span, "refreshed")
    }

    /// `credlock.save` (DEBUG): one durable replacement of the session file.
    pub(crate) fn save(path: &Path) -> Span {
        let span = tracing::debug_span!(
            target: TARGET,
            "credlock.save",
            path = %path.display(),
            outcome = Empty,
            elapsed_ms = Empty,
        );
        Span::enter(span, "saved")
    }

    /// Runs `work` inside the span, records its outcome and duration, and ends the span.
    pub(crate) fn run<T: Outcome>(self, work: impl FnOnce() -> T) -> T {
        let result = work();
        self.record(&result);
        result
    }

    /// Records the outcome of the span's work and the time it took, keeping the span.
    pub(crate) fn record<T: Outcome>(&self, result: &T) {
        let outcome = result.outcome().unwrap_or(self.success);
        self.span.record("outcome", outcome);
        self.span.record("elapsed_ms", millis(self.start.elapsed()));
    }

    /// Keeps the span entered while what it waited for is held; `held_ms` is recorded
    /// when the returned guard is dropped.
    pub(crate) fn hold(self) -> Hold {
        Hold {
            since: Instant::now(),
            span: self,
        }
    }
}

/// A span kept while a guard is held (see [`Span::hold`]).
#[must_use = "the span ends as soon as this is dropped"]
#[derive(Debug)]
pub(crate) struct Hold {
    span: Span,
    since: Instant,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.span
            .span
            .record("held_ms", millis(self.since.elapsed()));
    }
}

/// The caller's subscriber and current span, carried to the thread that does the work
/// (`AsyncStore`'s blocking pool), so that credlock's spans go where the caller's go, and
/// nest in the caller's span.
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub(crate) struct Context {
    dispatch: tracing::Dispatch,
    span: tracing::Span,
}

#[cfg(feature = "tokio")]
impl Context {
    pub(crate) fn current() -> Context {
        Context {
            dispatch: tracing::dispatcher::get_default(tracing::Dispatch::clone),
            span: tracing::Span::current(),
        }
    }

    /// Runs `work` under the caller's subscriber, inside the caller's span.
    pub(crate) fn run<T>(self, work: impl FnOnce() -> T) -> T {
        tracing::dispatcher::with_default(&self.dispatch, || self.span.in_scope(work))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The token endpoint as a trace may show it: no user information, query or fragment.
fn endpoint(session: &Session) -> String {
    let mut shown = session.client().token_endpoint_for_display();
    shown.truncate(shown.find(['?', '#']).unwrap_or(shown.len()));
    shown
}

/// Emits `event` as a tracing event at its level (the table in `docs/tracing.md`), with
/// its `Display` as the message and fields `event` (its name), `path` (the file it is
/// about), and `reason` or `from_mode` where it has one.
pub(crate) fn event(event: &Event) {
    let (name, path, reason) = match event {
        Event::WaitingForLock { lock_path } => ("waiting_for_lock", lock_path, None),
        Event::StillWaitingForLock { lock_path, .. } => ("still_waiting_for_lock", lock_path, None),
        Event::Refreshing { path } => ("refreshing", path, None),
        Event::Refreshed { path } => ("refreshed", path, None),
        Event::AdoptedNewerSession { path } => ("adopted_newer_session", path, None),
        Event::DeletedStaleSession { path } => ("deleted_stale_session", path, None),
        Event::PermissionsTightened { path, .. } => ("permissions_tightened", path, None),
        Event::RetryingTornRead { path } => ("retrying_torn_read", path, None),
        Event::UsingUnexpiredToken { path, reason } => {
            ("using_unexpired_token", path, Some(reason.as_str()))
        }
        Event::LocksUnavailable { lock_path, reason } => {
            ("locks_unavailable", lock_path, Some(reason.as_str()))
        }
        Event::LeaseInForce { lease_path, reason } => {
            ("lease_in_force", lease_path, Some(reason.as_str()))
        }
        Event::UnlockFailed { lock_path, reason } => {
            ("unlock_failed", lock_path, Some(reason.as_str()))
        }
    };
    let from_mode = match event {
        Event::PermissionsTightened { from_mode, .. } => Some(format!("{from_mode:04o}")),
        _ => None,
    };
    let from_mode = from_mode.as_deref();
    let path = path.display();
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: TARGET,
                $level,
                event = name,
                path = %path,
                reason,
                from_mode,
                "{event}"
            )
        };
    }
    match event {
        Event::WaitingForLock { .. }
        | Event::Refreshing { .. }
        | Event::AdoptedNewerSession { .. }
        | Event::RetryingTornRead { .. } => emit!(tracing::Level::DEBUG),
        Event::Refreshed { .. }
        | Event::StillWaitingForLock { .. }
        | Event::LeaseInForce { .. } => {
            emit!(tracing::Level::INFO)
        }
        Event::DeletedStaleSession { .. }
        | Event::PermissionsTightened { .. }
        | Event::UsingUnexpiredToken { .. }
        | Event::LocksUnavailable { .. }
        | Event::UnlockFailed { .. } => emit!(tracing::Level::WARN),
    }
}

/// A stale lease (its holder gone, or its time-to-live passed) was broken (WARN; no
/// [`Event`] of its own).
pub(crate) fn lease_broken(lease_path: &Path) {
    tracing::warn!(
        target: TARGET,
        event = "lease_broken",
        path = %lease_path.display(),
        "Broke the stale lease {}: its holder is gone or its time-to-live has passed",
        lease_path.display()
    );
}
