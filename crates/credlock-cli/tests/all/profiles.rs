//! Profiles: `--profile NAME` / `CREDLOCK_PROFILE` select one session file (with its own lock
//! and lease) under the default directory; `credlock profiles` lists them without secrets.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::run_with_stdin;
use crate::common::tools::{run_together, seed_at, text};

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
    let token_a = crate::common::tools::stored_token(&profile_path(home.path(), Some("alpha")));
    let token_b = crate::common::tools::stored_token(&profile_path(home.path(), Some("beta")));
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

/// `{"alg":"none"}.{"sub":"u-248289","email":"jane@example.com","iss":"https://id.example"}.`
const ID_TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1LTI0ODI4OSIsImVtYWlsIjoiamFuZUBleGFtcGxlLmNvbSIsImlzcyI6Imh0dHBzOi8vaWQuZXhhbXBsZSJ9.";

/// Stores at `store` a session whose token response carried `id_token`, for client `auth`.
fn store_with_id_token(store: &Path, id_token: &str, auth: credlock::ClientAuth) {
    let client = credlock::Client::new("https://as.example/token", "my-cli", auth).expect("client");
    let body = serde_json::json!({
        "access_token": "at-zz", "token_type": "Bearer", "expires_in": 3600,
        "refresh_token": "rt-zz", "id_token": id_token,
    });
    let response = credlock::TokenResponse::from_json(body.to_string().as_bytes()).expect("body");
    credlock::Store::new(store)
        .import_token_response(client, response)
        .expect("stored");
}

#[test]
fn status_and_profiles_show_the_account_the_id_token_names_labelled_unverified() {
    let home = tempfile::tempdir().expect("tempdir");
    let work = profile_path(home.path(), Some("work"));
    store_with_id_token(&work, ID_TOKEN, credlock::ClientAuth::None);
    let out = run_with_stdin(
        credlock_in(home.path(), &["--profile", "work", "status"]),
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let human = text(&out.stdout);
    assert!(
        human.contains("account:        jane@example.com (sub u-248289, iss https://id.example; from the ID token, unverified)"),
        "{human}"
    );
    let out = run_with_stdin(
        credlock_in(home.path(), &["--profile", "work", "status", "--json"]),
        b"",
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["account"]["sub"], "u-248289", "{v}");
    assert_eq!(v["account"]["email"], "jane@example.com");
    assert_eq!(v["account"]["iss"], "https://id.example");
    assert_eq!(v["account"]["verified"], false);
    let out = run_with_stdin(credlock_in(home.path(), &["profiles", "--json"]), b"");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let work_row = v
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["profile"] == "work"))
        .or_else(|| {
            v["profiles"]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["profile"] == "work"))
        })
        .expect("the work profile is listed");
    assert_eq!(work_row["account"]["sub"], "u-248289", "{v}");
    let out = run_with_stdin(credlock_in(home.path(), &["profiles"]), b"");
    let listing = text(&out.stdout);
    assert!(listing.contains("ACCOUNT (UNVERIFIED)"), "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("work") && l.contains("jane@example.com")),
        "{listing}"
    );
    for output in [&human, &listing] {
        assert!(
            !output.contains(ID_TOKEN) && !output.contains("at-zz") && !output.contains("rt-zz")
        );
    }
}

#[test]
fn a_malformed_id_token_shows_no_account_and_status_still_succeeds() {
    let home = tempfile::tempdir().expect("tempdir");
    let work = profile_path(home.path(), Some("work"));
    store_with_id_token(&work, "not.a-jwt.!", credlock::ClientAuth::None);
    let out = run_with_stdin(
        credlock_in(home.path(), &["--profile", "work", "status", "--json"]),
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["account"].is_null(), "{v}");
    assert!(!text(&out.stdout).contains("not.a-jwt"));
}

#[test]
fn human_status_names_the_client_auth_method_in_words() {
    let home = tempfile::tempdir().expect("tempdir");
    let public = profile_path(home.path(), Some("public"));
    store_with_id_token(&public, ID_TOKEN, credlock::ClientAuth::None);
    let confidential = profile_path(home.path(), Some("confidential"));
    store_with_id_token(
        &confidential,
        ID_TOKEN,
        credlock::ClientAuth::Post {
            secret: credlock::Secret::new("client-secret-zz"),
        },
    );
    let out = run_with_stdin(
        credlock_in(home.path(), &["--profile", "public", "status"]),
        b"",
    );
    let human = text(&out.stdout);
    assert!(human.contains("client id:      my-cli\n"), "{human}");
    assert!(
        human.contains("client auth:    none (public client)"),
        "{human}"
    );
    let out = run_with_stdin(
        credlock_in(home.path(), &["--profile", "confidential", "status"]),
        b"",
    );
    let human = text(&out.stdout);
    assert!(
        human.contains("client auth:    client_secret_post"),
        "{human}"
    );
    assert!(!human.contains("client-secret-zz"));
}

#[test]
fn a_mistyped_profile_for_status_token_and_logout_names_the_known_profiles() {
    let home = tempfile::tempdir().expect("tempdir");
    let (_fa, _ha, _) = seed_at(&profile_path(home.path(), Some("personal")), false);
    let (_fb, _hb, _) = seed_at(&profile_path(home.path(), Some("work")), false);
    for command in ["status", "token", "logout", "token --login"] {
        let mut args = vec!["--profile", "wrok"];
        args.extend(command.split(' '));
        let out = run_with_stdin(credlock_in(home.path(), &args), b"");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("known profiles: personal, work"),
            "{command}: {stderr}"
        );
    }
    // A profile that exists says nothing of the others.
    let out = run_with_stdin(
        credlock_in(home.path(), &["--profile", "work", "status"]),
        b"",
    );
    assert!(!text(&out.stderr).contains("known profiles"));
    assert!(
        !profile_path(home.path(), Some("wrok")).exists(),
        "the mistyped profile was created"
    );
}

/// What one binary did with an environment: its exit code and everything it said.
fn outcome(out: &std::process::Output) -> (i32, String) {
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// Both binaries choose the session with one function (`credlock_cli::config::select`): on
/// the same environment they pick the same store or fail for the same reason, each with its
/// own exit convention (`credlock` 2 for usage, 5 for configuration; the docker helper 1, its
/// message on stdout where docker reads it). Without a configuration directory neither falls
/// back to a path relative to the working directory.
#[test]
fn credlock_and_the_docker_helper_select_the_store_alike_from_the_same_environment() {
    let home = tempfile::tempdir().expect("tempdir");
    let cwd = tempfile::tempdir().expect("tempdir");
    let file = home.path().join("elsewhere.json");
    let home_var = home.path().to_str().expect("utf-8").to_owned();
    let config_var = home
        .path()
        .join("config")
        .to_str()
        .expect("utf-8")
        .to_owned();
    let file_var = file.to_str().expect("utf-8").to_owned();
    // (environment, credlock's exit code, docker helper's, what both say)
    type Row<'a> = (Vec<(&'a str, &'a str)>, i32, i32, &'a str);
    let rows: [Row; 4] = [
        (
            vec![
                ("HOME", &home_var),
                ("CREDLOCK_STORE", &file_var),
                ("CREDLOCK_PROFILE", "work"),
            ],
            2,
            1,
            "a store and a profile are both given",
        ),
        (
            vec![("HOME", &home_var), ("CREDLOCK_FS_KIND", "nfs-nolck")],
            2,
            1,
            "not a filesystem kind credlock knows",
        ),
        (vec![], 5, 1, "no configuration directory"),
        (
            vec![
                ("HOME", &home_var),
                ("XDG_CONFIG_HOME", &config_var),
                ("CREDLOCK_STORE", "redis://127.0.0.1:notaport/?key=k"),
            ],
            2,
            1,
            "CREDLOCK_STORE: ",
        ),
    ];
    for (env, credlock_code, docker_code, says) in rows {
        let mut token = Command::new(env!("CARGO_BIN_EXE_credlock"));
        let mut docker = Command::new(env!("CARGO_BIN_EXE_docker-credential-credlock"));
        token.arg("token");
        docker.arg("get");
        for c in [&mut token, &mut docker] {
            c.current_dir(cwd.path())
                .env_remove("HOME")
                .env_remove("XDG_CONFIG_HOME");
            crate::common::clear_credlock_env(c);
            for (k, v) in &env {
                c.env(k, v);
            }
        }
        docker.env("CREDLOCK_DOCKER_REGISTRIES", "registry.example");
        let (token_code, token_said) = outcome(&token.output().expect("run credlock"));
        let (docker_code_got, docker_said) =
            outcome(&run_with_stdin(docker, b"registry.example\n"));
        assert_eq!(
            (token_code, token_said.contains(says)),
            (credlock_code, true),
            "credlock on {env:?}: {token_said}"
        );
        assert_eq!(
            (docker_code_got, docker_said.contains(says)),
            (docker_code, true),
            "the docker helper on {env:?}: {docker_said}"
        );
        assert!(
            !cwd.path().join("credlock").exists(),
            "a session path relative to the working directory was used on {env:?}"
        );
    }
}
