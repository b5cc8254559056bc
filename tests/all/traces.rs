//! Feature `tracing`: the spans of a refresh (lock wait, lease, refresh, save) with their
//! outcomes, nested and ordered as the protocol runs, the events inside them, and no secret in
//! anything a subscriber is told.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credlock::{Error, LockMode, Store};
use credlock_test::ReusePolicy;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Metadata, Subscriber};

use crate::common::Bed;

#[path = "../../src/trace/test_anchor.rs"]
mod test_anchor;
use test_anchor::anchor_callsite_interest;

type Fields = BTreeMap<String, String>;

/// A span as the collector saw it: its name and fields, its parent, and when (in the order of
/// everything the collector was told) it was opened and closed.
#[derive(Debug, Clone)]
struct SpanSeen {
    name: &'static str,
    fields: Fields,
    parent: Option<usize>,
    opened: usize,
    closed: Option<usize>,
    handles: usize,
}

#[derive(Debug, Clone)]
struct EventSeen {
    level: Level,
    target: String,
    fields: Fields,
    parent: Option<usize>,
}

#[derive(Debug, Default)]
struct Seen {
    spans: Vec<SpanSeen>,
    events: Vec<EventSeen>,
    entered: Vec<usize>,
    clock: usize,
}

impl Seen {
    fn tick(&mut self) -> usize {
        self.clock += 1;
        self.clock
    }

    fn span(&self, name: &str) -> (usize, &SpanSeen) {
        let mut found = self
            .spans
            .iter()
            .enumerate()
            .filter(|(_, s)| s.name == name);
        let first = found
            .next()
            .unwrap_or_else(|| panic!("no span {name}: {:#?}", self.spans));
        assert!(found.next().is_none(), "one span {name}: {:#?}", self.spans);
        first
    }

    fn event(&self, name: &str) -> &EventSeen {
        self.events
            .iter()
            .find(|e| e.fields.get("event").map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no event {name}: {:#?}", self.events))
    }

    /// Every span name, field and event field: what a subscriber could write anywhere.
    fn everything_told(&self) -> Vec<String> {
        let spans = self.spans.iter().flat_map(|s| {
            std::iter::once(s.name.to_owned())
                .chain(s.fields.iter().map(|(k, v)| format!("{k}={v}")))
        });
        let events = self
            .events
            .iter()
            .flat_map(|e| e.fields.iter().map(|(k, v)| format!("{k}={v}")));
        spans.chain(events).collect()
    }
}

/// A `tracing::Subscriber` that keeps everything it is told, for one thread
/// (`tracing::subscriber::with_default`), so tests running in parallel do not mix.
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

fn index(id: &Id) -> usize {
    usize::try_from(id.into_u64()).expect("id") - 1
}

impl Subscriber for Collector {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields::new();
        span.record(&mut Fill(&mut fields));
        let mut seen = self.0.lock().expect("lock");
        let parent = if span.is_contextual() {
            seen.entered.last().copied()
        } else {
            span.parent().map(index)
        };
        let opened = seen.tick();
        seen.spans.push(SpanSeen {
            name: span.metadata().name(),
            fields,
            parent,
            opened,
            closed: None,
            handles: 1,
        });
        Id::from_u64(seen.spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut seen = self.0.lock().expect("lock");
        values.record(&mut Fill(&mut seen.spans[index(span)].fields));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::new();
        event.record(&mut Fill(&mut fields));
        let mut seen = self.0.lock().expect("lock");
        let parent = if event.is_contextual() {
            seen.entered.last().copied()
        } else {
            event.parent().map(index)
        };
        seen.tick();
        seen.events.push(EventSeen {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields,
            parent,
        });
    }
    fn enter(&self, span: &Id) {
        self.0.lock().expect("lock").entered.push(index(span));
    }
    fn exit(&self, span: &Id) {
        let mut seen = self.0.lock().expect("lock");
        let i = index(span);
        let at = seen.entered.iter().rposition(|e| *e == i).expect("entered");
        seen.entered.remove(at);
    }
    fn clone_span(&self, span: &Id) -> Id {
        self.0.lock().expect("lock").spans[index(span)].handles += 1;
        span.clone()
    }
    fn try_close(&self, span: Id) -> bool {
        let mut seen = self.0.lock().expect("lock");
        let now = seen.tick();
        let s = &mut seen.spans[index(&span)];
        s.handles -= 1;
        if s.handles == 0 {
            s.closed = Some(now);
        }
        s.handles == 0
    }
}

fn traced<T>(f: impl FnOnce() -> T) -> (T, Seen) {
    anchor_callsite_interest();
    let collector = Collector::default();
    let out = tracing::subscriber::with_default(collector.clone(), f);
    let seen = std::mem::take(&mut *collector.0.lock().expect("lock"));
    (out, seen)
}

const CLIENT_SECRET: &str = "cs-very-secret-7f3a";

/// A bed whose server requires a client secret, so that there is one to leak.
fn bed_with_client_secret() -> Bed {
    Bed::with_client_secret(CLIENT_SECRET)
}

/// Fails if anything the subscriber was told contains one of `secrets`.
fn assert_no_secret(seen: &Seen, secrets: &[&str]) {
    let told = seen.everything_told();
    assert!(told.len() > 10, "{told:?}");
    for secret in secrets {
        assert!(
            secret.len() >= 8,
            "a secret long enough to search for: {secret}"
        );
        for line in &told {
            assert!(!line.contains(secret), "a secret was traced: {line}");
        }
    }
}

#[test]
fn a_refresh_is_traced_as_lock_wait_then_refresh_with_its_save_and_no_secret() {
    let bed = bed_with_client_secret();
    let old = bed.seed_expired();
    let (token, seen) = traced(|| bed.store().access_token());
    let token = token.expect("refreshed");
    assert!(token.refreshed());
    let new = bed.stored().expect("stored");
    let path = bed.path.display().to_string();

    let (wait_id, wait) = seen.span("credlock.lock_wait");
    let (refresh_id, refresh) = seen.span("credlock.refresh");
    let (_, save) = seen.span("credlock.save");
    assert_eq!(wait.fields["outcome"], "acquired");
    assert_eq!(wait.fields["lock_path"], format!("{path}.lock"));
    assert_eq!(refresh.fields["outcome"], "refreshed");
    assert_eq!(refresh.fields["path"], path);
    assert_eq!(refresh.fields["endpoint"], crate::common::TOKEN_ENDPOINT);
    assert_eq!(save.fields["outcome"], "saved");
    assert_eq!(save.fields["path"], path);
    for span in [wait, refresh, save] {
        let ms: u64 = span.fields["elapsed_ms"].parse().expect("elapsed_ms");
        assert!(ms < 60_000, "{span:?}");
        assert!(span.closed.is_some(), "every span ended: {span:?}");
    }
    // The wait ended before the refresh began; the save is inside the refresh, at the top
    // level there is nothing else (no lease on a local disk).
    assert_eq!(wait.parent, None);
    assert_eq!(refresh.parent, None);
    assert!(wait.closed < Some(refresh.opened), "{seen:#?}");
    assert_eq!(save.parent, Some(refresh_id));
    assert!(refresh.opened < save.opened && save.closed < refresh.closed);
    assert!(seen.spans.iter().all(|s| s.name != "credlock.lease"));
    let _ = wait_id;

    let refreshing = seen.event("refreshing");
    let refreshed = seen.event("refreshed");
    assert_eq!(
        (refreshing.level, refreshing.parent),
        (Level::DEBUG, Some(refresh_id))
    );
    assert_eq!(
        (refreshed.level, refreshed.parent),
        (Level::INFO, Some(refresh_id))
    );
    assert_eq!(refreshed.fields["path"], path);
    assert!(refreshed.fields["message"].starts_with("Saved the refreshed session to"));
    assert!(seen.events.iter().all(|e| e.target == "credlock"));

    assert_no_secret(
        &seen,
        &[
            old.access_token().secret(),
            old.refresh_token().secret(),
            new.access_token().secret(),
            new.refresh_token().secret(),
            CLIENT_SECRET,
        ],
    );
}

#[test]
fn under_a_lease_the_refresh_nests_in_the_lease_span_which_records_its_hold() {
    let bed = bed_with_client_secret();
    bed.seed_expired();
    let store = bed.store().with_lock_mode(LockMode::Lease);
    let (token, seen) = traced(|| store.access_token());
    assert!(token.expect("refreshed").refreshed());
    let (lease_id, lease) = seen.span("credlock.lease");
    let (refresh_id, refresh) = seen.span("credlock.refresh");
    assert_eq!(lease.fields["outcome"], "acquired");
    assert_eq!(
        lease.fields["lease_path"],
        format!("{}.lease", bed.path.display())
    );
    assert!(lease.fields["held_ms"].parse::<u64>().is_ok(), "{lease:?}");
    assert_eq!(refresh.parent, Some(lease_id));
    assert_eq!(refresh.fields["outcome"], "refreshed");
    assert!(
        refresh.closed < lease.closed,
        "the lease outlives the refresh"
    );
    let (_, save) = seen.span("credlock.save");
    assert_eq!(save.parent, Some(refresh_id));
    assert!(seen.spans.iter().all(|s| s.name != "credlock.lock_wait"));
}

#[test]
fn a_lock_held_past_the_timeout_is_a_lock_wait_with_outcome_timeout_and_a_waiting_event() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let lock_path = crate::common::lock_path(&bed.path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .expect("open lock file");
    let mut holder = fd_lock::RwLock::new(file);
    let _held = holder.try_write().expect("hold the lock");
    let store = bed.store().with_lock_timeout(Duration::from_millis(60));
    let (result, seen) = traced(|| store.access_token());
    assert!(
        matches!(result, Err(Error::LockTimeout { .. })),
        "{result:?}"
    );
    let (wait_id, wait) = seen.span("credlock.lock_wait");
    assert_eq!(wait.fields["outcome"], "timeout");
    let ms: u64 = wait.fields["elapsed_ms"].parse().expect("elapsed_ms");
    assert!(ms >= 60, "{wait:?}");
    let waiting = seen.event("waiting_for_lock");
    assert_eq!(
        (waiting.level, waiting.parent),
        (Level::DEBUG, Some(wait_id))
    );
    assert!(seen.spans.iter().all(|s| s.name != "credlock.refresh"));
}

#[test]
fn a_refused_refresh_token_ends_the_refresh_span_as_session_expired_with_a_warning() {
    let bed = bed_with_client_secret();
    let old = bed.seed_expired();
    bed.server.revoke_grant_of(old.refresh_token().secret());
    let store = bed.store().with_poll_schedule(vec![Duration::ZERO]);
    let (result, seen) = traced(|| store.access_token());
    assert!(
        matches!(result, Err(Error::SessionExpired { deleted: true, .. })),
        "{result:?}"
    );
    let (refresh_id, refresh) = seen.span("credlock.refresh");
    assert_eq!(refresh.fields["outcome"], "session_expired");
    let deleted = seen.event("deleted_stale_session");
    assert_eq!(
        (deleted.level, deleted.parent),
        (Level::WARN, Some(refresh_id))
    );
    assert_no_secret(
        &seen,
        &[
            old.access_token().secret(),
            old.refresh_token().secret(),
            CLIENT_SECRET,
        ],
    );
}

#[cfg(unix)]
#[test]
fn a_session_file_readable_by_others_is_tightened_with_a_warning_naming_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed();
    std::fs::set_permissions(&bed.path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let store: Store = bed.store();
    let (loaded, seen) = traced(|| store.load());
    assert!(loaded.expect("load").is_some());
    let tightened = seen.event("permissions_tightened");
    assert_eq!(tightened.level, Level::WARN);
    assert_eq!(tightened.fields["from_mode"], "0644");
}

#[cfg(feature = "tokio")]
#[test]
fn an_async_store_refreshes_under_the_callers_subscriber_and_span() {
    let bed = bed_with_client_secret();
    bed.seed_expired();
    let store = credlock::AsyncStore::new(bed.store());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (token, seen) = traced(|| {
        runtime.block_on(async {
            // The store's work runs on the blocking pool, another thread.
            let _caller = tracing::info_span!("caller").entered();
            store.access_token().await
        })
    });
    assert!(token.expect("refreshed").refreshed());
    let (caller_id, _) = seen.span("caller");
    let (_, refresh) = seen.span("credlock.refresh");
    assert_eq!(refresh.parent, Some(caller_id), "{seen:#?}");
    assert_eq!(refresh.fields["outcome"], "refreshed");
    assert_eq!(seen.event("refreshed").level, Level::INFO);
}

const FRESH_PROCESS: &str = "CREDLOCK_TRACES_FRESH_PROCESS";

/// The poisoning [`Anchor`] prevents, made to happen: in a process where no credlock callsite
/// has been reached yet, a thread with no subscriber reaches them all first (a refresh) while
/// one collector is registered; a refresh under that collector must still be traced. Run in a
/// child process of its own, since the cache is per process.
#[test]
fn callsites_first_reached_by_a_thread_without_a_subscriber_are_still_traced() {
    if std::env::var_os(FRESH_PROCESS).is_none() {
        let name =
            "traces::callsites_first_reached_by_a_thread_without_a_subscriber_are_still_traced";
        let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(FRESH_PROCESS, "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the test binary");
        let out = crate::common::finish(child, Duration::from_secs(60));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let first = Bed::new(ReusePolicy::RevokeGrant);
    first.seed_expired();
    let second = Bed::new(ReusePolicy::RevokeGrant);
    second.seed_expired();
    let (token, seen) = traced(|| {
        let untraced = std::thread::spawn(move || first.store().access_token().map(|_| ()));
        untraced.join().expect("thread").expect("refreshed");
        second.store().access_token()
    });
    assert!(token.expect("refreshed").refreshed());
    let (_, refresh) = seen.span("credlock.refresh");
    assert_eq!(refresh.fields["outcome"], "refreshed");
    seen.span("credlock.lock_wait");
    seen.span("credlock.save");
}
