//! git: `credlock git-credential` as a credential helper, with the real git (`credential
//! fill|approve|reject`, `ls-remote`, `clone`) against an HTTPS stub that requires the token.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::run_with_stdin;
use crate::common::tools::{Backend, Stub, require, run_together, text};

/// git with only credlock as its credential helper, scoped to `git.example.com`, and
/// nothing from the user's configuration.
fn git(dir: &Path, store: &Path, args: &[&str]) -> Command {
    git_scoped(dir, store, "--host git.example.com", args)
}

/// git with credlock as its credential helper given `scope` (its `--host`/`--url-prefix`
/// flags, or none).
fn git_scoped(dir: &Path, store: &Path, scope: &str, args: &[&str]) -> Command {
    let helper = format!(
        "!'{}' --store '{}' git-credential {scope}",
        env!("CARGO_BIN_EXE_credlock"),
        store.display()
    );
    let mut c = Command::new("git");
    c.args(["-c", "credential.helper=", "-c"])
        .arg(format!("credential.helper={helper}"))
        .args(["-c", "http.sslVerify=false", "-c", "protocol.version=0"])
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
    for var in [
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "CREDLOCK_STORE",
        "CREDLOCK_PROFILE",
        "CREDLOCK_ACCESS_TOKEN",
    ] {
        c.env_remove(var);
    }
    c
}

/// A bare repository with one commit on `main`.
fn bare_repo(dir: &Path) -> PathBuf {
    let work = dir.join("work");
    let bare = dir.join("served.git");
    let run = |args: &[&str], cwd: &Path| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(cwd)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    std::fs::create_dir_all(&work).expect("mkdir");
    run(&["init", "-q", "-b", "main"], &work);
    run(&["commit", "-q", "--allow-empty", "-m", "first"], &work);
    run(
        &["clone", "-q", "--bare", ".", bare.to_str().expect("utf-8")],
        &work,
    );
    bare
}

fn fields(out: &[u8]) -> Vec<(String, String)> {
    text(out)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn field(out: &[u8], key: &str) -> Option<String> {
    fields(out)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[test]
fn git_credential_fill_answers_the_access_token_and_its_expiry() {
    require("git", "git");
    let b = Backend::fresh();
    let out = run_with_stdin(
        git(b.dir.path(), &b.store, &["credential", "fill"]),
        b"protocol=https\nhost=git.example.com\n\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(field(&out.stdout, "password"), Some(b.access_token()));
    assert_eq!(field(&out.stdout, "username").as_deref(), Some("oauth2"));
    let expiry = b
        .session
        .expires_at()
        .expect("expiry")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert_eq!(
        field(&out.stdout, "password_expiry_utc"),
        Some(expiry.to_string())
    );

    let out = run_with_stdin(
        git(b.dir.path(), &b.store, &["credential", "fill"]),
        b"protocol=https\nhost=git.example.com\nusername=alice\n\n",
    );
    assert_eq!(field(&out.stdout, "username").as_deref(), Some("alice"));
    assert!(!text(&out.stderr).contains(&b.access_token()));
}

#[test]
fn six_concurrent_git_ls_remotes_on_an_expired_session_refresh_once_and_a_clone_works() {
    require("git", "git");
    let b = Backend::expired_slow(Duration::from_millis(500));
    let repo = bare_repo(b.dir.path());
    let stub = Stub::start(b.dir.path(), "git", true, Some(&repo));
    stub.refuse(&b.access_token());
    let url = format!("https://127.0.0.1:{}/served.git", stub.port);
    let scope = format!("--host 127.0.0.1:{}", stub.port);
    let outs = run_together(
        (0..6)
            .map(|_| git_scoped(b.dir.path(), &b.store, &scope, &["ls-remote", &url]))
            .collect(),
        Duration::from_secs(120),
    );
    for out in &outs {
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("refs/heads/main"));
    }
    assert_eq!(b.refreshes(), 1, "one refresh for six git processes");
    let fresh = b.stored_token();
    assert!(b.fake.is_access_token_valid(&fresh));
    assert_eq!(stub.tokens(), vec![fresh.clone(); 6]);

    let out = run_with_stdin(
        git_scoped(
            b.dir.path(),
            &b.store,
            &scope,
            &["clone", "-q", &url, "cloned"],
        ),
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(b.dir.path().join("cloned/.git").is_dir());
    assert!(stub.tokens().iter().all(|t| *t == fresh));
}

#[test]
fn git_without_a_session_is_refused_by_the_server_and_no_token_leaks() {
    require("git", "git");
    let b = Backend::fresh();
    let repo = bare_repo(b.dir.path());
    let stub = Stub::start(b.dir.path(), "git", true, Some(&repo));
    let url = format!("https://127.0.0.1:{}/served.git", stub.port);
    let missing = b.dir.path().join("none.json");
    let scope = format!("--host 127.0.0.1:{}", stub.port);
    let out = run_with_stdin(
        git_scoped(b.dir.path(), &missing, &scope, &["ls-remote", &url]),
        b"",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("credlock"),
        "{}",
        text(&out.stderr)
    );
    assert!(stub.tokens().is_empty());
    assert!(!missing.exists(), "a read creates no session file");
}

#[test]
fn a_rejected_token_reported_by_six_git_processes_causes_one_refresh() {
    require("git", "git");
    let b = Backend::fresh();
    let rejected = format!(
        "protocol=https\nhost=git.example.com\nusername=oauth2\npassword={}\n\n",
        b.access_token()
    );
    let outs = run_together(
        (0..6)
            .map(|_| {
                let reject = git(b.dir.path(), &b.store, &["credential", "reject"]);
                with_stdin_file(reject, b.dir.path(), &rejected)
            })
            .collect(),
        Duration::from_secs(120),
    );
    for out in &outs {
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_eq!(b.refreshes(), 1);
    let out = run_with_stdin(
        git(b.dir.path(), &b.store, &["credential", "fill"]),
        b"protocol=https\nhost=git.example.com\n\n",
    );
    let fresh = field(&out.stdout, "password").expect("password");
    assert_ne!(fresh, b.access_token());
    assert_eq!(fresh, b.stored_token());

    // A token that is not the stored one (another helper's) refreshes nothing.
    let foreign = "protocol=https\nhost=git.example.com\npassword=someone-elses\n\n";
    let out = run_with_stdin(
        git(b.dir.path(), &b.store, &["credential", "reject"]),
        foreign.as_bytes(),
    );
    assert!(out.status.success());
    assert_eq!(b.refreshes(), 1);
}

/// `cmd` reading `input` from a file on stdin (so that [`run_together`] can start it).
fn with_stdin_file(cmd: Command, dir: &Path, input: &str) -> Command {
    let path = dir.join(format!("stdin-{}", rand_suffix()));
    std::fs::write(&path, input).expect("write stdin file");
    let mut w = Command::new("sh");
    w.arg("-c")
        .arg("exec \"$@\" < \"$STDIN_FILE\"")
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env("STDIN_FILE", &path);
    if let Some(cwd) = cmd.get_current_dir() {
        w.current_dir(cwd);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    w
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn git_credential_approve_stores_nothing() {
    require("git", "git");
    let b = Backend::fresh();
    let before = std::fs::read(&b.store).expect("read");
    let out = run_with_stdin(
        git(b.dir.path(), &b.store, &["credential", "approve"]),
        b"protocol=https\nhost=git.example.com\nusername=u\npassword=other\n\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&b.store).expect("read"), before);
}

/// The token goes only to the hosts the helper was told: a real `git clone` from another
/// https host (here a self-signed server on loopback) sends no credential, and that host's
/// 401 (`credential reject`) refreshes nothing.
#[test]
fn a_clone_from_a_host_the_helper_was_not_scoped_to_gets_no_token_and_its_reject_refreshes_nothing()
{
    require("git", "git");
    let b = Backend::fresh();
    let repo = bare_repo(b.dir.path());
    let stub = Stub::start(b.dir.path(), "git", true, Some(&repo));
    let url = format!("https://127.0.0.1:{}/served.git", stub.port);
    let out = run_with_stdin(
        git(b.dir.path(), &b.store, &["clone", "-q", &url, "cloned"]),
        b"",
    );
    assert!(!out.status.success(), "the clone needs a credential");
    assert!(stub.tokens().is_empty(), "{:?}", stub.tokens());
    assert!(!text(&out.stderr).contains(&b.access_token()));

    // The same host on another port is another host.
    let other_port = format!("--host 127.0.0.1:{}", stub.port.wrapping_add(1));
    let out = run_with_stdin(
        git_scoped(b.dir.path(), &b.store, &other_port, &["ls-remote", &url]),
        b"",
    );
    assert!(!out.status.success());
    assert!(stub.tokens().is_empty(), "{:?}", stub.tokens());

    let reject = format!(
        "protocol=https\nhost=127.0.0.1:{}\nusername=oauth2\npassword={}\n\n",
        stub.port,
        b.access_token()
    );
    let out = run_with_stdin(
        git(b.dir.path(), &b.store, &["credential", "reject"]),
        reject.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(b.refreshes(), 0, "another host's 401 refreshes nothing");
    assert_eq!(b.stored_token(), b.access_token());
}

/// A helper configured without `--host` or `--url-prefix` answers nothing (git then asks the
/// next helper or the user) and says once on stderr how to scope it; its `erase` does nothing.
#[test]
fn a_helper_without_a_scope_answers_no_host_and_says_how_to_name_one() {
    require("git", "git");
    let b = Backend::fresh();
    let out = run_with_stdin(
        git_scoped(b.dir.path(), &b.store, "", &["credential", "fill"]),
        b"protocol=https\nhost=git.example.com\n\n",
    );
    assert!(!out.status.success(), "git finds no credential");
    assert_eq!(field(&out.stdout, "password"), None);
    assert!(!text(&out.stdout).contains(&b.access_token()));
    assert!(!text(&out.stderr).contains(&b.access_token()));
    assert!(
        text(&out.stderr).contains("--host"),
        "the hint names the flag: {}",
        text(&out.stderr)
    );

    let reject = format!(
        "protocol=https\nhost=git.example.com\npassword={}\n\n",
        b.access_token()
    );
    let out = run_with_stdin(
        git_scoped(b.dir.path(), &b.store, "", &["credential", "reject"]),
        reject.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(b.refreshes(), 0);
}

/// Scope matching: https only, the host exactly (a port named must match, `:443` is the
/// default), and a URL prefix on whole path segments (git sends the path with
/// `credential.useHttpPath`; without a path, a prefix with one does not match).
#[test]
fn only_https_requests_for_a_named_host_or_under_a_named_url_prefix_are_answered() {
    require("git", "git");
    let b = Backend::fresh();
    let fill = |scope: &str, request: &str, use_path: bool| {
        let mut args = vec![];
        if use_path {
            args.extend(["-c", "credential.useHttpPath=true"]);
        }
        args.extend(["credential", "fill"]);
        let out = run_with_stdin(
            git_scoped(b.dir.path(), &b.store, scope, &args),
            request.as_bytes(),
        );
        field(&out.stdout, "password")
    };
    let token = Some(b.access_token());
    let host = "--host git.example.com";
    assert_eq!(
        fill(host, "protocol=https\nhost=git.example.com\n\n", false),
        token
    );
    assert_eq!(
        fill(host, "protocol=https\nhost=GIT.example.com:443\n\n", false),
        token
    );
    assert_eq!(
        fill(host, "protocol=http\nhost=git.example.com\n\n", false),
        None
    );
    assert_eq!(
        fill(host, "protocol=https\nhost=git.example.com:8443\n\n", false),
        None
    );
    assert_eq!(
        fill(host, "protocol=https\nhost=git.example.com.evil\n\n", false),
        None
    );
    assert_eq!(
        fill(host, "protocol=https\nhost=evil.example.com\n\n", false),
        None
    );
    let port = "--host git.example.com:8443";
    assert_eq!(
        fill(port, "protocol=https\nhost=git.example.com:8443\n\n", false),
        token
    );
    assert_eq!(
        fill(port, "protocol=https\nhost=git.example.com\n\n", false),
        None
    );

    let prefix = "--url-prefix https://git.example.com/team/";
    let team = "protocol=https\nhost=git.example.com\npath=team/app.git\n\n";
    assert_eq!(fill(prefix, team, true), token);
    let other = "protocol=https\nhost=git.example.com\npath=teammate/app.git\n\n";
    assert_eq!(fill(prefix, other, true), None);
    assert_eq!(
        fill(prefix, "protocol=https\nhost=git.example.com\n\n", false),
        None
    );
    let both = "--host a.example.com --url-prefix https://git.example.com/team";
    assert_eq!(fill(both, team, true), token);
    assert_eq!(
        fill(both, "protocol=https\nhost=a.example.com\n\n", false),
        token
    );
}

/// A `--url-prefix` answers no path that a server could resolve outside it: Tomcat and
/// Spring drop `;params` (`..;`) and decode `%2e` before resolving dot segments, so the path
/// git sends as `team/..;/other` names `other`.
#[test]
fn a_url_prefix_answers_no_path_a_server_could_resolve_outside_it() {
    require("git", "git");
    let b = Backend::fresh();
    let fill = |path: &str| {
        let out = run_with_stdin(
            git_scoped(
                b.dir.path(),
                &b.store,
                "--url-prefix https://git.example.com/team/",
                &["-c", "credential.useHttpPath=true", "credential", "fill"],
            ),
            format!("protocol=https\nhost=git.example.com\npath={path}\n\n").as_bytes(),
        );
        field(&out.stdout, "password")
    };
    assert_eq!(fill("team/app.git"), Some(b.access_token()));
    for path in [
        "team/..;/other/app.git",
        "team/%2e%2e/other/app.git",
        "team//app.git",
    ] {
        assert_eq!(fill(path), None, "{path} is answered");
    }
}

#[test]
fn a_scope_that_is_not_an_https_host_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    for scope in [
        ["--host", "https://git.example.com"],
        ["--host", "user@git.example.com"],
        ["--host", ""],
        ["--url-prefix", "http://git.example.com/"],
        ["--url-prefix", "git.example.com/team"],
        ["--url-prefix", "https://u:pw@git.example.com/"],
    ] {
        let mut cmd = crate::common::credlock(&store, &["git-credential", "get"]);
        cmd.args(scope);
        // Refused before stdin is read: give it none, or writing it could hit a closed pipe.
        let out = run_with_stdin(cmd, b"");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{scope:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).contains("pw"), "{}", text(&out.stderr));
    }
}

/// The exit codes the README's helper table gives: with no session, `get` and an in-scope
/// `erase` exit 3 (git shows the message and moves on), `store` and out-of-scope requests 0;
/// nothing creates a session file; with the CI override, `erase` refreshes nothing.
#[test]
fn without_a_session_get_and_erase_exit_3_and_store_and_other_hosts_exit_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("none.json");
    let helper = |store: &Path, op: &str, request: &str| {
        let cmd =
            crate::common::credlock(store, &["git-credential", "--host", "git.example.com", op]);
        run_with_stdin(cmd, request.as_bytes())
    };
    let named = "protocol=https\nhost=git.example.com\npassword=p\n\n";
    let other = "protocol=https\nhost=other.example.com\npassword=p\n\n";
    for (op, request, code) in [
        ("get", named, 3),
        ("erase", named, 3),
        ("store", named, 0),
        ("get", other, 0),
        ("erase", other, 0),
    ] {
        let out = helper(&missing, op, request);
        assert_eq!(out.status.code(), Some(code), "{op}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{op}: {}", text(&out.stdout));
    }
    assert!(!missing.exists(), "no session file is created");

    let b = Backend::fresh();
    let mut erase = crate::common::credlock(
        &b.store,
        &["git-credential", "--host", "git.example.com", "erase"],
    );
    erase.env("CREDLOCK_ACCESS_TOKEN", "ci-token");
    let request = format!(
        "protocol=https\nhost=git.example.com\npassword={}\n\n",
        b.access_token()
    );
    let out = run_with_stdin(erase, request.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(b.refreshes(), 0);
}
