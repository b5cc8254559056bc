//! Profiles: `--profile NAME` / `CREDLOCK_PROFILE` select one session file (with its own lock
//! and lease) under the default directory; `credlock profiles` lists them without secrets.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::run_with_stdin;
use crate::tools_support::{run_together, seed_at, text};

/// `credlock` with its configuration directory in `home` and no store given.
fn credlock_in(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_credlock"));
    c.args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"));
    for var in [
        "CREDLOCK_STORE",
        "CREDLOCK_PROFILE",
        "CREDLOCK_LOCK",
        "CREDLOCK_ACCESS_TOKEN",
        "CREDLOCK_FS_KIND",
    ] {
        c.env_remove(var);
    }
    c
}

fn profile_path(home: &Path, profile: Option<&str>) -> PathBuf {
    credlock::session_path_in(&home.join("config"), "credlock", profile).expect("path")
}

#[test]
fn two_profiles_racing_on_expired_sessions_refresh_once_each_and_never_mix() {
    let home = tempfile::tempdir().expect("tempdir");
    let (fake_a, _http_a, _) = seed_at(&profile_path(home.path(), Some("alpha")), true);
    let (fake_b, _http_b, _) = seed_at(&profile_path(home.path(), Some("beta")), true);
    let mut cmds = Vec::new();
    for _ in 0..6 {
        cmds.push(credlock_in(home.path(), &["--profile", "alpha", "token"]));
        let mut by_env = credlock_in(home.path(), &["token"]);
        by_env.env("CREDLOCK_PROFILE", "beta");
        cmds.push(by_env);
    }
    let outs = run_together(cmds, Duration::from_secs(60));
    assert_eq!(fake_a.counters().refresh_requests, 1);
    assert_eq!(fake_b.counters().refresh_requests, 1);
    let token_a = crate::tools_support::stored_token(&profile_path(home.path(), Some("alpha")));
    let token_b = crate::tools_support::stored_token(&profile_path(home.path(), Some("beta")));
    assert_ne!(token_a, token_b);
    for (i, out) in outs.iter().enumerate() {
        assert!(out.status.success(), "{}", text(&out.stderr));
        let expected = if i % 2 == 0 { &token_a } else { &token_b };
        assert_eq!(text(&out.stdout).trim(), expected, "process {i}");
    }
    assert!(fake_a.is_access_token_valid(&token_a));
    assert!(fake_b.is_access_token_valid(&token_b));
    assert!(
        !profile_path(home.path(), None).exists(),
        "the default profile was touched"
    );
}

#[test]
fn profiles_lists_every_profile_with_its_state_and_no_secret() {
    let home = tempfile::tempdir().expect("tempdir");
    let (_fa, _ha, default) = seed_at(&profile_path(home.path(), None), false);
    let (_fb, _hb, expired) = seed_at(&profile_path(home.path(), Some("ci")), true);
    let out = run_with_stdin(credlock_in(home.path(), &["profiles", "--json"]), b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = v["profiles"]
        .as_array()
        .expect("an object with the profiles");
    assert_eq!(rows.len(), 2, "{v}");
    assert_eq!(rows[0]["profile"], "default");
    assert_eq!(rows[0]["state"], "fresh");
    assert_eq!(rows[1]["profile"], "ci");
    assert_eq!(rows[1]["state"], "expired");
    assert_eq!(
        rows[1]["store"],
        profile_path(home.path(), Some("ci"))
            .to_str()
            .expect("utf-8")
    );
    let out = run_with_stdin(credlock_in(home.path(), &["profiles"]), b"");
    assert!(out.status.success());
    let listing = text(&out.stdout);
    assert!(
        listing.contains("default") && listing.contains("ci"),
        "{listing}"
    );
    for session in [&default, &expired] {
        for secret in [session.access_token(), session.refresh_token()] {
            assert!(!listing.contains(secret.secret()));
            assert!(!text(&out.stderr).contains(secret.secret()));
        }
    }
}

#[test]
fn a_profile_name_that_could_leave_the_directory_is_a_usage_error_and_creates_nothing() {
    let home = tempfile::tempdir().expect("tempdir");
    for bad in ["../escape", "a/b", ".hidden", ""] {
        let out = run_with_stdin(credlock_in(home.path(), &["--profile", bad, "token"]), b"");
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
    }
    let out = run_with_stdin(
        credlock_in(
            home.path(),
            &["--profile", "x", "--store", "/tmp/s.json", "token"],
        ),
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "--profile with --store");
    let mut both_in_env = credlock_in(home.path(), &["token"]);
    both_in_env
        .env("CREDLOCK_PROFILE", "x")
        .env("CREDLOCK_STORE", "/tmp/s.json");
    let out = run_with_stdin(both_in_env, b"");
    assert_eq!(out.status.code(), Some(2), "both in the environment");
    assert!(!home.path().join("config").exists());
    assert!(!home.path().join("escape").exists());
}

#[test]
fn the_command_line_beats_the_environment_between_store_and_profile() {
    let home = tempfile::tempdir().expect("tempdir");
    let (_f, _h, session) = seed_at(&profile_path(home.path(), Some("ci")), false);
    let token = session.access_token().secret().to_owned();
    let elsewhere = home.path().join("elsewhere.json");

    let mut profile_wins = credlock_in(home.path(), &["--profile", "ci", "token"]);
    profile_wins.env("CREDLOCK_STORE", &elsewhere);
    let out = run_with_stdin(profile_wins, b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), token);

    let mut store_wins = credlock_in(home.path(), &["--store"]);
    store_wins
        .arg(profile_path(home.path(), Some("ci")))
        .arg("token")
        .env("CREDLOCK_PROFILE", "other");
    let out = run_with_stdin(store_wins, b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), token);
    assert!(!elsewhere.exists());
}

#[test]
fn a_named_profile_without_a_session_asks_for_a_login_naming_its_file() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = run_with_stdin(
        credlock_in(home.path(), &["--profile", "work", "token"]),
        b"",
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("profiles/work/session.json"),
        "{}",
        text(&out.stderr)
    );
}
