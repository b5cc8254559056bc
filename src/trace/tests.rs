//! The event table and the span fields, against a collector that keeps what it is told.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Metadata, Subscriber};

use super::*;
use crate::session::model::{Client, ClientAuth, Session};
use crate::session::token_response::TokenResponse;
use crate::trace::event::Event;
use crate::trace::test_anchor::anchor_callsite_interest;

type Fields = BTreeMap<String, String>;

/// What the collector saw: spans by id (name, fields) and events (level, fields).
#[derive(Default)]
struct Seen {
    spans: Vec<(&'static str, Fields)>,
    events: Vec<(Level, Fields)>,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Seen>>);

struct Fill<'a>(&'a mut Fields);

impl Visit for Fill<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Collector {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields::new();
        span.record(&mut Fill(&mut fields));
        let mut seen = self.0.lock().expect("lock");
        seen.spans.push((span.metadata().name(), fields));
        Id::from_u64(seen.spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut seen = self.0.lock().expect("lock");
        let index = usize::try_from(span.into_u64()).expect("id") - 1;
        values.record(&mut Fill(&mut seen.spans[index].1));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::new();
        event.record(&mut Fill(&mut fields));
        let level = *event.metadata().level();
        assert_eq!(event.metadata().target(), "credlock");
        self.0.lock().expect("lock").events.push((level, fields));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn collected(f: impl FnOnce()) -> Seen {
    anchor_callsite_interest();
    let collector = Collector::default();
    tracing::subscriber::with_default(collector.clone(), f);
    std::mem::take(&mut *collector.0.lock().expect("lock"))
}

#[test]
fn every_event_has_the_level_and_fields_of_the_documented_table() {
    let p = || PathBuf::from("/home/me/.config/x/session.json");
    let reason = || "HTTP 503 from the token endpoint".to_owned();
    let table = [
        (
            Event::WaitingForLock { lock_path: p() },
            Level::DEBUG,
            "waiting_for_lock",
        ),
        (
            Event::StillWaitingForLock {
                lock_path: p(),
                waited: std::time::Duration::from_secs(1),
            },
            Level::INFO,
            "still_waiting_for_lock",
        ),
        (Event::Refreshing { path: p() }, Level::DEBUG, "refreshing"),
        (Event::Refreshed { path: p() }, Level::INFO, "refreshed"),
        (
            Event::AdoptedNewerSession { path: p() },
            Level::DEBUG,
            "adopted_newer_session",
        ),
        (
            Event::DeletedStaleSession { path: p() },
            Level::WARN,
            "deleted_stale_session",
        ),
        (
            Event::PermissionsTightened {
                path: p(),
                from_mode: 0o644,
            },
            Level::WARN,
            "permissions_tightened",
        ),
        (
            Event::RetryingTornRead { path: p() },
            Level::DEBUG,
            "retrying_torn_read",
        ),
        (
            Event::UsingUnexpiredToken {
                path: p(),
                reason: reason(),
            },
            Level::WARN,
            "using_unexpired_token",
        ),
        (
            Event::LocksUnavailable {
                lock_path: p(),
                reason: reason(),
            },
            Level::WARN,
            "locks_unavailable",
        ),
        (
            Event::LeaseInForce {
                lease_path: p(),
                reason: reason(),
            },
            Level::INFO,
            "lease_in_force",
        ),
        (
            Event::UnlockFailed {
                lock_path: p(),
                reason: reason(),
            },
            Level::WARN,
            "unlock_failed",
        ),
    ];
    for (e, level, name) in table {
        let seen = collected(|| event(&e));
        let [(got, fields)] = &seen.events[..] else {
            panic!("one tracing event for {e:?}, got {}", seen.events.len());
        };
        assert_eq!((*got, fields["event"].as_str()), (level, name), "{e:?}");
        assert_eq!(fields["message"], e.to_string());
        assert_eq!(fields["path"], p().display().to_string());
        let has_reason = matches!(
            e,
            Event::UsingUnexpiredToken { .. }
                | Event::LocksUnavailable { .. }
                | Event::LeaseInForce { .. }
                | Event::UnlockFailed { .. }
        );
        assert_eq!(
            fields.get("reason").is_some(),
            has_reason,
            "{e:?}: {fields:?}"
        );
        if let Event::PermissionsTightened { .. } = e {
            assert_eq!(fields["from_mode"], "0644");
        }
    }
}

#[test]
fn a_span_records_its_success_or_what_the_result_says_and_the_time_taken() {
    let path = PathBuf::from("/tmp/s.json");
    let seen = collected(|| {
        let _ = Span::save(&path).run(|| Ok::<(), Error>(()));
        let _ = Span::save(&path).run(|| Ok::<bool, Error>(false));
        let _ = Span::lock_wait(&path).run(|| Ok::<_, Error>(Acquired::<(), u8>::Resolved(1)));
        let failed: Result<(), Error> = Err(Error::NoSession { path: path.clone() });
        let _ = Span::save(&path).run(|| failed);
        let span = Span::lease(&path);
        span.record(&Ok::<_, Error>(Acquired::<u8, ()>::Held(1)));
        drop(span.hold());
    });
    let outcomes: Vec<_> = seen
        .spans
        .iter()
        .map(|(name, f)| (*name, f["outcome"].as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("credlock.save", "saved"),
            ("credlock.save", "skipped"),
            ("credlock.lock_wait", "adopted"),
            ("credlock.save", "no_session"),
            ("credlock.lease", "acquired"),
        ]
    );
    assert!(
        seen.spans
            .iter()
            .all(|(_, f)| f["elapsed_ms"].parse::<u64>().is_ok())
    );
    assert!(seen.spans[4].1["held_ms"].parse::<u64>().is_ok());
    assert_eq!(seen.spans[0].1["path"], "/tmp/s.json");
}

#[test]
fn the_refresh_span_shows_the_endpoint_without_its_query() {
    let client = Client::new(
        "https://as.example/oauth/token?api_key=k-123#frag",
        "c",
        ClientAuth::None,
    )
    .expect("client");
    let body = br#"{"access_token":"at-1","refresh_token":"rt-1","expires_in":60}"#;
    let response = TokenResponse::from_json(body).expect("response");
    let session = Session::from_token_response(client, response, SystemTime::now()).expect("s");
    let seen = collected(|| drop(Span::refresh(&PathBuf::from("/s.json"), &session)));
    assert_eq!(
        seen.spans[0].1["endpoint"],
        "https://as.example/oauth/token"
    );
}
