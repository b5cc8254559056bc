//! Without the feature `tracing`: zero-sized types and empty inline functions.

use std::path::Path;

use super::Outcome;
use crate::session::model::Session;
use crate::trace::event::Event;

/// Without the feature: nothing, and no cost.
#[must_use = "the span ends as soon as this is dropped"]
#[derive(Debug)]
pub(crate) struct Span;

impl Span {
    #[inline]
    pub(crate) fn lock_wait(_: &Path) -> Span {
        Span
    }

    #[inline]
    pub(crate) fn lease(_: &Path) -> Span {
        Span
    }

    #[inline]
    pub(crate) fn refresh(_: &Path, _: &Session) -> Span {
        Span
    }

    #[inline]
    pub(crate) fn save(_: &Path) -> Span {
        Span
    }

    #[inline]
    pub(crate) fn run<T: Outcome>(self, work: impl FnOnce() -> T) -> T {
        work()
    }

    #[inline]
    pub(crate) fn record<T: Outcome>(&self, _: &T) {}

    #[inline]
    pub(crate) fn hold(self) -> Hold {
        Hold
    }
}

/// Without the feature: nothing, and no cost.
#[must_use = "the span ends as soon as this is dropped"]
#[derive(Debug)]
pub(crate) struct Hold;

/// Without the feature: nothing, and no cost.
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub(crate) struct Context;

#[cfg(feature = "tokio")]
impl Context {
    #[inline]
    pub(crate) fn current() -> Context {
        Context
    }

    #[inline]
    pub(crate) fn run<T>(self, work: impl FnOnce() -> T) -> T {
        work()
    }
}

#[inline]
pub(crate) fn event(_: &Event) {}

#[inline]
pub(crate) fn lease_broken(_: &Path) {}
