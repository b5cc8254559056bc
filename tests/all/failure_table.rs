//! docs/design.md's "What happens on each failure" table (and docs/fleet.md's) is held by tests: every row's
//! failure (its first cell) is named, word for word, by a `/// Failure table: …` line in the
//! doc comment of a test that shows it (in `tests/all` or beside the code in `src`), and every
//! such line names a row that exists. Rewording a row without its test, or deleting a row a
//! test still names, fails `every_row_of_the_failure_table_is_named_by_a_test`. The tests
//! here are the rows no other module showed.

use std::path::{Path, PathBuf};

use credlock::Error;
use credlock_test::{Failure, ReusePolicy};

use crate::common::Bed;

const DESIGN: &str = include_str!("../../docs/design.md");
/// The failure table of sessions kept on Redis, held the same way.
const FLEET: &str = include_str!("../../docs/fleet.md");
const MARKER: &str = "/// Failure table: ";

/// Rows that need what this machine cannot provide, with why; each still has to be a row.
const NOT_SHOWN_HERE: [(&str, &str); 2] = [
    (
        "filesystem refuses locks (`ENOLCK`, `EOPNOTSUPP`, `ENOSYS`, `EBADF`), mode `auto`",
        "no filesystem mountable here refuses flock (bindfs and tmpfs accept it); the errno \
         classification is `lock::means_locks_unsupported`",
    ),
    (
        "sealed file read by a credlock built without the `keyring` feature",
        "every test build has the `keyring` feature (the dev-dependency on the test kit, \
         crates/credlock-test, turns on every optional feature of this crate), so the branch \
         that answers `NotBuiltIn` is never compiled into a test",
    ),
];

/// The first cell of each row of the failure tables.
fn rows() -> Vec<String> {
    let mut rows = rows_of(DESIGN);
    rows.extend(rows_of(FLEET));
    rows
}

/// The first cell of each row of `doc`'s failure table.
fn rows_of(doc: &str) -> Vec<String> {
    let table = doc
        .split_once("## What happens on each failure")
        .expect("the table's heading")
        .1;
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and its rule
        .map(|l| {
            l.trim_start_matches("| ")
                .split(" | ")
                .next()
                .expect("a first cell")
                .to_owned()
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `/// Failure table: …` line of the crate's sources and tests, with the file it is
/// in: only in the doc of a `#[test]` function (`common::test_doc_blocks`) in a file its
/// crate compiles (`common::is_compiled`), so that a marker on a constant or in a scratch file
/// nobody declared holds nothing.
fn markers() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    // The CLI and the test kit: their tests and sources hold rows too.
    rust_files(&root.join("crates"), &mut files);
    let mut found = Vec::new();
    for file in files {
        if !crate::common::is_compiled(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for block in crate::common::test_doc_blocks(&text) {
            for line in block {
                if let Some(row) = line.strip_prefix(MARKER.trim_start_matches("/// ")) {
                    found.push((row.to_owned(), file.display().to_string()));
                }
            }
        }
    }
    found
}

#[test]
fn every_row_of_the_failure_table_is_named_by_a_test() {
    let rows = rows();
    assert!(rows.len() > 40, "the table was not found whole: {rows:#?}");
    let markers = markers();
    let unheld: Vec<&String> = rows
        .iter()
        .filter(|row| !markers.iter().any(|(named, _)| named == *row))
        .filter(|row| !NOT_SHOWN_HERE.iter().any(|(r, _)| r == row))
        .collect();
    assert!(
        unheld.is_empty(),
        "rows of docs/design.md's failure table that no test names with `{MARKER}<row>`: {unheld:#?}"
    );
    let stale: Vec<&(String, String)> = markers
        .iter()
        .filter(|(named, _)| !rows.contains(named))
        .collect();
    assert!(
        stale.is_empty(),
        "tests naming a failure-table row that does not exist (reworded or removed?): {stale:#?}"
    );
    for (row, why) in NOT_SHOWN_HERE {
        assert!(rows.iter().any(|r| r == row), "{row:?} ({why}) is no row");
        assert!(
            !markers.iter().any(|(named, _)| named == row),
            "{row:?} is held by a test now: take it off NOT_SHOWN_HERE"
        );
    }
}

/// Failure table: `invalid_grant`, the file was deleted meanwhile (logout)
#[test]
fn invalid_grant_after_a_logout_during_the_request_is_expired_and_deletes_nothing() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let path = bed.path.clone();
    bed.server.on_refresh(move |_| {
        let _ = std::fs::remove_file(&path);
    });
    bed.server.push_failure(Failure::Status {
        status: 400,
        body: r#"{"error":"invalid_grant"}"#.into(),
        retry_after: None,
    });
    let err = bed.store().access_token().unwrap_err();
    assert!(
        matches!(err, Error::SessionExpired { deleted: false, .. }),
        "{err:?}"
    );
    assert!(err.needs_login());
    assert!(bed.stored().is_none());
    assert!(bed.stray_files().is_empty(), "{:?}", bed.stray_files());
}

/// Failure table: 4xx with another OAuth error or no OAuth body (a proxy's 400 page: HTML, JSON without `error`)
#[test]
fn another_oauth_error_or_a_4xx_without_one_asks_for_a_login_and_keeps_the_session() {
    for (status, body) in [
        (400, r#"{"error":"invalid_scope"}"#),
        (403, ""),
        // What nginx, a WAF or a load balancer answers for a request it refuses: nothing
        // here says the grant is gone, so the session must survive.
        (
            400,
            "<html><head><title>400 Request Header Or Cookie Too Large</title></head></html>",
        ),
        (400, r#"{"message":"Bad Request"}"#),
    ] {
        let bed = Bed::new(ReusePolicy::RevokeGrant);
        bed.seed_expired();
        let before = bed.bytes();
        bed.server.push_failure(Failure::Status {
            status,
            body: body.into(),
            retry_after: None,
        });
        let err = bed.store().access_token().unwrap_err();
        assert!(matches!(err, Error::Rejected { .. }), "{status}: {err:?}");
        assert!(
            err.needs_login() && !err.is_configuration() && !err.is_transient(),
            "{status}: {err:?}"
        );
        assert_eq!(bed.bytes(), before, "{status}: untouched");
    }
}

/// Adds `member` (raw JSON text) to the object the server would send, as its last member.
fn with_member(body: serde_json::Map<String, serde_json::Value>, member: &str) -> Vec<u8> {
    let mut text = serde_json::to_string(&body).expect("json");
    text.pop(); // the closing brace
    format!("{text},{member}}}").into_bytes()
}

/// Failure table: 2xx that serde_json refuses as a whole (a number out of `f64` range, invalid UTF-8, nesting past its recursion limit, in any field)
#[test]
fn a_success_serde_json_refuses_as_a_whole_still_saves_its_tokens() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = std::sync::Arc::clone(&sent);
    bed.server.reshape_next_success(move |body| {
        *seen.lock().expect("sent") = body["refresh_token"].as_str().map(str::to_owned);
        with_member(body, r#""vendor_number":1e400"#)
    });
    let token = bed.store().access_token().expect("refreshed");
    assert!(token.refreshed());
    let stored = bed.stored().expect("saved");
    assert_eq!(stored.access_token().secret(), token.secret());
    let rotated = sent.lock().expect("sent").clone().expect("a refresh token");
    assert_eq!(
        stored.refresh_token().secret(),
        rotated,
        "the rotation is kept"
    );
    assert!(!stored.extra().contains_key("vendor_number"));
}

/// Failure table: a response whose unmodelled fields would make the session file larger than 1 MiB
#[test]
fn unmodelled_fields_too_large_for_a_session_file_are_dropped_and_the_tokens_kept() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    bed.server.reshape_next_success(|body| {
        let huge = "x".repeat(1024 * 1024 + 1);
        with_member(body, &format!(r#""vendor_blob":"{huge}""#))
    });
    let token = bed.store().access_token().expect("refreshed");
    let stored = bed.stored().expect("a session file credlock reads back");
    assert_eq!(stored.access_token().secret(), token.secret());
    assert!(
        stored.extra().is_empty(),
        "the unmodelled fields are dropped"
    );
    assert!(bed.bytes().len() < 1024 * 1024);
}
