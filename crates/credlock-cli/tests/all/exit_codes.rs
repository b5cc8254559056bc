//! The exit-code table of the README, row by row, against the real binary: each test quotes
//! the row it holds true in its doc comment, and
//! `every_row_of_the_readme_exit_code_table_is_quoted_by_a_test` fails when a row is added or
//! reworded without its test. The `--help` text must agree, and every `--json` failure must
//! be the error object whose members the README lists (read from the README itself).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use credlock::{Session, Store};
use credlock_test::{Failure, FakeServer, HttpServer, TEST_CLIENT_ID};

use crate::common::{credlock, run_with_stdin};

const README: &str = include_str!("../../../../README.md");
const THIS_FILE: &str = include_str!("exit_codes.rs");

/// The rows of the README's "Exit codes" table (`| 0 | success |` …).
fn readme_rows() -> Vec<&'static str> {
    let table = README
        .split_once("Exit codes:")
        .expect("the README has an exit-code table")
        .1;
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| l.as_bytes().get(2).is_some_and(u8::is_ascii_digit))
        .collect()
}

/// The members of the `--json` error object as the README gives them: "With `--json`, a
/// failure is one object on stdout too: `{"error": {"kind", "message", …}}`", sorted.
fn readme_error_keys() -> Vec<String> {
    let shape = README
        .split_once("With `--json`, a failure is one object on stdout too: `{\"error\": {")
        .expect("the README gives the error object")
        .1
        .split_once("}}`")
        .expect("the object's end")
        .0;
    let mut keys: Vec<String> = shape
        .split(',')
        .map(|k| k.trim().trim_matches('"').to_owned())
        .collect();
    keys.sort_unstable();
    keys
}

fn run(cmd: Command) -> Output {
    run_with_stdin(cmd, b"")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit code, and for a `--json` failure that the error object on stdout has the
/// README's shape (`{"error": {"kind", "message", "exit_code", "needs_login", "transient",
/// "configuration"}}`) and the same code. Returns the error's kind (or "" without `--json`).
fn exits(out: &Output, code: i32, what: &str) -> String {
    assert_eq!(out.status.code(), Some(code), "{what}: {}", stderr(out));
    if code == 0 || out.stdout.is_empty() {
        return String::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {:?}", out.stdout));
    let error = v["error"].as_object().expect("an error object");
    let mut keys: Vec<String> = error.keys().cloned().collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        readme_error_keys(),
        "{what}: the README's error object"
    );
    assert_eq!(error["exit_code"], code, "{what}");
    error["kind"].as_str().expect("kind").to_owned()
}

/// A token server on loopback and a session file on it, changed by `edit` (a JSON object).
struct Served {
    dir: tempfile::TempDir,
    store: std::path::PathBuf,
    fake: Arc<FakeServer>,
    http: HttpServer,
}

impl Served {
    fn new(expired: bool, edit: impl FnOnce(&mut serde_json::Value, &HttpServer)) -> Served {
        let fake = FakeServer::builder().build();
        let http = HttpServer::start(Arc::clone(&fake)).expect("token server");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("session.json");
        let mut session = fake
            .seed_session(&http.token_endpoint())
            .expect("seed")
            .with_expires_at(if expired {
                SystemTime::now()
            } else {
                SystemTime::now() + Duration::from_secs(3600)
            });
        let client = session
            .client()
            .clone()
            .with_revocation_endpoint(http.revocation_endpoint())
            .expect("client");
        session = Session::from_token_response(client, fake.seed(), SystemTime::now())
            .expect("session")
            .with_expires_at(session.expires_at().expect("expiry"));
        Store::new(&store).save(&session).expect("save");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&store).expect("read")).expect("json");
        edit(&mut v, &http);
        std::fs::write(&store, v.to_string()).expect("write");
        Served {
            dir,
            store,
            fake,
            http,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        run(credlock(&self.store, args))
    }
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn every_row_of_the_readme_exit_code_table_is_quoted_by_a_test() {
    let rows = readme_rows();
    let codes: Vec<&str> = rows.iter().map(|r| &r[2..3]).collect();
    assert_eq!(codes, ["0", "1", "2", "3", "4", "5"], "{rows:#?}");
    // Only the doc of a `#[test]` function counts: a row quoted above a constant or a helper
    // holds nothing.
    let quoted: Vec<&str> = crate::common::test_doc_blocks(THIS_FILE)
        .into_iter()
        .flatten()
        .collect();
    for row in rows {
        assert!(
            quoted.contains(&row),
            "no test in crates/credlock-cli/tests/all/exit_codes.rs quotes the README row {row:?} in its doc: update the test with the row"
        );
    }
}

#[test]
fn the_help_text_lists_the_readme_exit_codes_with_the_same_meaning() {
    let out = run(credlock(Path::new("unused.json"), &["--help"]));
    let help = String::from_utf8_lossy(&out.stdout);
    for row in readme_rows() {
        let code = &row[2..3];
        let first_word = row[6..].split_whitespace().next().expect("meaning");
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code}  {first_word}"))),
            "--help has no line \"{code}  {first_word}…\":\n{help}"
        );
    }
}

/// | 0 | success (`logout` and `logout --revoke` with nothing stored too) |
#[test]
fn exit_code_0_is_success() {
    let s = Served::new(false, |_, _| {});
    exits(&s.run(&["token"]), 0, "a fresh token");
    exits(&s.run(&["status"]), 0, "status of a session");
    exits(&s.run(&["logout"]), 0, "logout");
    exits(&s.run(&["logout"]), 0, "logout with nothing stored");
    exits(
        &s.run(&["logout", "--revoke"]),
        0,
        "logout --revoke with nothing stored",
    );
}

/// | 1 | any other error (a corrupt file, for `status` and `doctor` too; a refused revocation or no revocation endpoint; a token file another user owns; a full disk; …) and a failed `doctor` check |
///
/// A full disk is held by `faults::a_full_disk_fails_cleanly_and_a_refresh_still_hands_out_its_token`
/// (it needs a mount namespace), a token file of another user by
/// `tools_exec::a_token_file_owned_by_another_user_is_refused_naming_its_owner` (root).
///
/// Failure table: `logout` with revocation: any other status
#[test]
fn exit_code_1_is_any_other_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corrupt = dir.path().join("session.json");
    std::fs::write(&corrupt, b"{ not json").expect("write");
    for args in [&["token", "--json"][..], &["status", "--json"]] {
        let kind = exits(&run(credlock(&corrupt, args)), 1, "a corrupt file");
        assert_eq!(kind, "corrupt", "{args:?}");
    }
    let doctor = run(credlock(&corrupt, &["doctor"]));
    assert_eq!(
        doctor.status.code(),
        Some(1),
        "doctor: a corrupt file fails"
    );
    assert!(String::from_utf8_lossy(&doctor.stdout).contains("fail  store"));
    assert_eq!(
        std::fs::read(&corrupt).expect("read"),
        b"{ not json",
        "untouched"
    );

    // The revocation endpoint answers 401: this client is not the one it knows.
    let s = Served::new(false, |v, _| {
        v["client"]["client_id"] = "someone-else".into()
    });
    let kind = exits(
        &s.run(&["logout", "--revoke", "--json"]),
        1,
        "a refused revocation",
    );
    assert_eq!(kind, "revocation_refused");
    assert!(s.store.exists(), "the session is kept");

    let s = Served::new(false, |v, _| {
        v["client"]
            .as_object_mut()
            .expect("client")
            .remove("revocation_endpoint");
    });
    let kind = exits(
        &s.run(&["logout", "--revoke", "--json"]),
        1,
        "no revocation endpoint",
    );
    assert_eq!(kind, "no_revocation_endpoint");
    assert!(s.store.exists(), "the session is kept");
}

/// | 2 | usage (bad arguments, an unknown `CREDLOCK_FS_KIND`; at `import`, a malformed or insecure endpoint) |
#[test]
fn exit_code_2_is_usage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    let kind = exits(
        &run(credlock(&store, &["token", "--json", "--frobnicate"])),
        2,
        "an unknown flag",
    );
    assert_eq!(kind, "usage");
    let mut cmd = credlock(&store, &["token", "--json"]);
    cmd.env("CREDLOCK_FS_KIND", "nsf");
    assert_eq!(exits(&run(cmd), 2, "CREDLOCK_FS_KIND=nsf"), "usage");
    for endpoint in ["https://", "http://auth.example.com/token"] {
        let out = run_with_stdin(
            credlock(
                &store,
                &[
                    "import",
                    "--json",
                    "--token-endpoint",
                    endpoint,
                    "--client-id",
                    "c",
                ],
            ),
            // Refused before stdin is read: nothing to write (a write could meet a closed pipe).
            b"",
        );
        assert_eq!(exits(&out, 2, endpoint), "usage");
    }
    assert!(!store.exists());
}

/// | 3 | log in again (no session, for `status` too; the grant expired or was revoked) |
#[test]
fn exit_code_3_is_log_in_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let none = dir.path().join("session.json");
    let kind = exits(&run(credlock(&none, &["token", "--json"])), 3, "no session");
    assert_eq!(kind, "no_session");
    let status = run(credlock(&none, &["status"]));
    assert_eq!(status.status.code(), Some(3), "status: {}", stderr(&status));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("`credlock login`"),
        "status says how to log in: {text}"
    );
    let doctor = run(credlock(&none, &["doctor"]));
    assert_eq!(doctor.status.code(), Some(0), "doctor only warns");
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.contains("`credlock login`"),
        "doctor says how to log in: {text}"
    );

    // The server does not know the stored refresh token: invalid_grant, the session goes.
    let s = Served::new(true, |v, _| v["refresh_token"] = "revoked-long-ago".into());
    let kind = exits(&s.run(&["token", "--json"]), 3, "invalid_grant");
    assert_eq!(kind, "session_expired");
    assert!(!s.store.exists(), "the refused session is deleted");
}

/// The three-digit HTTP statuses that `text` names, `5xx` as 500.
fn statuses_named(text: &str) -> Vec<u16> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter_map(|w| match w {
            "5xx" => Some(500),
            w if w.len() == 3 => w.parse().ok().filter(|s| (100..600).contains(s)),
            _ => None,
        })
        .collect()
}

/// The statuses of exit code 4 as the README's row and `--help` give them are the ones the
/// binary treats as "try again later": every 4xx that exits 4 is named, and no other.
#[test]
fn the_transient_statuses_the_readme_and_help_name_are_those_that_exit_4() {
    let row = readme_rows()
        .into_iter()
        .find(|r| r.starts_with("| 4 |"))
        .expect("row 4");
    let help =
        String::from_utf8_lossy(&run(credlock(Path::new("unused.json"), &["--help"])).stdout)
            .into_owned();
    let help_row = help
        .split_once("\n  4  ")
        .and_then(|(_, rest)| rest.split_once("\n  5  "))
        .expect("--help lists exit code 4")
        .0
        .to_owned();
    assert_eq!(
        statuses_named(row),
        statuses_named(&help_row),
        "{row}\n{help_row}"
    );

    let s = Served::new(true, |_, _| {});
    let mut exit_4 = Vec::new();
    for status in 400..500 {
        s.fake.push_failure(Failure::Status {
            status,
            body: r#"{"error":"not_today"}"#.into(),
            retry_after: None,
        });
        let out = s.run(&["token"]);
        if out.status.code() == Some(4) {
            exit_4.push(status);
        }
    }
    exit_4.push(500);
    assert_eq!(statuses_named(row), exit_4, "{row}");
    assert!(s.store.exists(), "kept");
}

/// | 4 | try again later (network, HTTP 408, 425, 429 or 5xx, lock timeout, an incomplete refresh, a revocation that could not be sent) |
#[test]
fn exit_code_4_is_try_again_later() {
    let port = closed_port();
    let s = Served::new(true, |v, _| {
        v["client"]["token_endpoint"] = format!("http://127.0.0.1:{port}/token").into();
    });
    let before = std::fs::read(&s.store).expect("read");
    assert_eq!(
        exits(&s.run(&["token", "--json"]), 4, "network"),
        "unavailable"
    );
    for status in [429, 503] {
        let s = Served::new(true, |_, _| {});
        s.fake.push_failure(Failure::Status {
            status,
            body: String::new(),
            retry_after: None,
        });
        assert_eq!(
            exits(&s.run(&["token", "--json"]), 4, &status.to_string()),
            "unavailable"
        );
    }
    assert_eq!(std::fs::read(&s.store).expect("read"), before, "kept");

    let s = Served::new(true, |_, _| {});
    s.fake.reshape_next_success(|mut body| {
        body.remove("access_token");
        serde_json::to_vec(&body).expect("json")
    });
    assert_eq!(
        exits(&s.run(&["token", "--json"]), 4, "an incomplete refresh"),
        "incomplete_refresh"
    );

    let s = Served::new(false, |v, _| {
        v["client"]["revocation_endpoint"] = format!("http://127.0.0.1:{port}/revoke").into();
    });
    assert_eq!(
        exits(
            &s.run(&["logout", "--revoke", "--json"]),
            4,
            "a revocation that could not be sent"
        ),
        "revocation_unavailable"
    );
    assert!(s.store.exists(), "the session is kept");

    // Another process holds the lock past the CLI's 10 s deadline, on an expired session.
    let s = Served::new(true, |_, _| {});
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(crate::common::lock_path(&s.store))
        .expect("lock file");
    let mut holder = fd_lock::RwLock::new(lock);
    let _held = holder.try_write().expect("hold the lock");
    assert_eq!(
        exits(
            &s.run(&["--lock", "advisory", "token", "--json"]),
            4,
            "lock timeout"
        ),
        "lock_timeout"
    );
    assert_eq!(s.fake.counters().refresh_requests, 0);
}

/// | 5 | configuration (the server rejects the client, no refresh token was issued, the stored endpoint is malformed or insecure, no configuration directory: `HOME` and `XDG_CONFIG_HOME` unset and no store named) |
///
/// Failure table: token endpoint is plain `http://` to a non-loopback host
/// Failure table: endpoint malformed (does not parse, not absolute, no host, user info)
#[test]
fn exit_code_5_is_configuration() {
    let s = Served::new(true, |_, _| {});
    s.fake.push_failure(Failure::Status {
        status: 401,
        body: r#"{"error":"invalid_client"}"#.into(),
        retry_after: None,
    });
    assert_eq!(
        exits(&s.run(&["token", "--json"]), 5, "invalid_client"),
        "rejected"
    );
    assert!(s.store.exists(), "kept");

    let out = run_with_stdin(
        credlock(
            &s.dir.path().join("other.json"),
            &[
                "import",
                "--json",
                "--token-endpoint",
                &s.http.token_endpoint(),
                "--client-id",
                TEST_CLIENT_ID,
            ],
        ),
        br#"{"access_token":"a","expires_in":60}"#,
    );
    assert_eq!(exits(&out, 5, "no refresh token"), "missing_refresh_token");

    for (endpoint, kind) in [
        ("http://auth.example.com/token", "insecure_endpoint"),
        ("https://", "invalid_endpoint"),
    ] {
        let s = Served::new(true, |v, _| v["client"]["token_endpoint"] = endpoint.into());
        assert_eq!(exits(&s.run(&["token", "--json"]), 5, endpoint), kind);
        assert_eq!(s.fake.counters().refresh_requests, 0, "nothing sent");
    }

    let cwd = tempfile::tempdir().expect("tempdir");
    let mut no_home = Command::new(env!("CARGO_BIN_EXE_credlock"));
    no_home
        .args(["token", "--json"])
        .current_dir(cwd.path())
        .env_remove("HOME")
        .env_remove("XDG_CONFIG_HOME");
    crate::common::clear_credlock_env(&mut no_home);
    let out = run_with_stdin(no_home, b"");
    assert_eq!(
        exits(&out, 5, "no configuration directory"),
        "configuration"
    );
    assert!(
        stderr(&out).contains("no configuration directory"),
        "{}",
        stderr(&out)
    );
}
