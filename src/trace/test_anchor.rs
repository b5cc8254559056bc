//! For the tracing tests only (the unit tests in `src/trace/tests.rs`, and `tests/all/traces.rs`
//! through `#[path]`), so that both collect under the same rule.

use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};

/// tracing caches each callsite's interest for the whole process, decided against the
/// dispatchers alive when it is first reached: while at most one is registered, against the
/// reaching thread's own, so a parallel test thread with no subscriber can make a callsite
/// "never" for every thread, and a capturing test then sees nothing from it (this failed under
/// Wine once). A dispatcher that stays registered and is always "sometimes" interested makes
/// every callsite ask the current thread's subscriber at each use.
struct Anchor;

impl Subscriber for Anchor {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Registers the [`Anchor`] once, before the first collector.
pub(crate) fn anchor_callsite_interest() {
    static ANCHOR: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    ANCHOR.get_or_init(|| tracing::Dispatch::new(Anchor));
}
