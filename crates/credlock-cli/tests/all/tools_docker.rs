//! docker: `docker-credential-credlock`, the credential-helper protocol (get, store, erase,
//! list) spoken directly, and the real docker CLI calling it (`docker manifest inspect`
//! needs no daemon) against a stub registry that requires the token.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::run_with_stdin;
use crate::common::tools::{Backend, Stub, require, text};

const HELPER: &str = env!("CARGO_BIN_EXE_docker-credential-credlock");

fn helper(store: &Path, verb: &str) -> Command {
    let mut c = Command::new(HELPER);
    c.arg(verb).env("CREDLOCK_STORE", store);
    for var in [
        "CREDLOCK_PROFILE",
        "CREDLOCK_ACCESS_TOKEN",
        "CREDLOCK_DOCKER_REGISTRIES",
        "CREDLOCK_DOCKER_USERNAME",
    ] {
        c.env_remove(var);
    }
    c
}

/// The helper with `registry.example.com` as its one registry.
fn scoped(store: &Path, verb: &str) -> Command {
    let mut c = helper(store, verb);
    c.env("CREDLOCK_DOCKER_REGISTRIES", "registry.example.com");
    c
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)))
}

#[test]
fn get_answers_the_access_token_as_the_secret_for_the_server_asked_about() {
    let b = Backend::fresh();
    let out = run_with_stdin(scoped(&b.store, "get"), b"registry.example.com\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["ServerURL"], "registry.example.com");
    assert_eq!(v["Username"], "oauth2accesstoken");
    assert_eq!(v["Secret"], b.access_token().as_str());

    let mut named = scoped(&b.store, "get");
    named.env("CREDLOCK_DOCKER_USERNAME", "robot");
    let out = run_with_stdin(named, b"registry.example.com");
    assert_eq!(json(&out)["Username"], "robot");
}

#[test]
fn store_and_erase_change_nothing_and_list_names_the_configured_registries() {
    let b = Backend::fresh();
    let before = std::fs::read(&b.store).expect("read");
    let out = run_with_stdin(
        helper(&b.store, "store"),
        br#"{"ServerURL":"r.example.com","Username":"u","Secret":"other"}"#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run_with_stdin(helper(&b.store, "erase"), b"r.example.com\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&b.store).expect("read"), before);
    assert_eq!(b.refreshes(), 0);

    let out = run_with_stdin(helper(&b.store, "list"), b"");
    assert!(out.status.success());
    assert_eq!(json(&out), serde_json::json!({}));
    let mut listed = helper(&b.store, "list");
    listed.env(
        "CREDLOCK_DOCKER_REGISTRIES",
        "a.example.com, b.example.com:5000",
    );
    let out = run_with_stdin(listed, b"");
    assert_eq!(
        json(&out),
        serde_json::json!({"a.example.com": "oauth2accesstoken", "b.example.com:5000": "oauth2accesstoken"})
    );
}

#[test]
fn a_registry_outside_the_configured_list_gets_no_token() {
    let b = Backend::fresh();
    let mut get = helper(&b.store, "get");
    get.env("CREDLOCK_DOCKER_REGISTRIES", "a.example.com");
    let out = run_with_stdin(get, b"https://evil.example.com");
    assert_eq!(out.status.code(), Some(1));
    // The message docker recognises as "no credentials" (docker-credential-helpers).
    assert_eq!(
        text(&out.stdout).trim(),
        "credentials not found in native keychain"
    );
    assert!(!text(&out.stdout).contains(&b.access_token()));
    assert!(!text(&out.stderr).contains(&b.access_token()));
}

/// A configured registry gets the token over https only: a server URL naming another scheme
/// (`http://`, `ftp://`) is "not found", while a bare host (what docker sends) and an
/// `https://` URL are answered.
#[test]
fn a_configured_registry_asked_about_over_a_scheme_other_than_https_gets_no_token() {
    let b = Backend::fresh();
    for asked in [
        "http://registry.example.com",
        "HTTP://registry.example.com/v2/",
        "ftp://registry.example.com",
        "://registry.example.com",
    ] {
        let out = run_with_stdin(scoped(&b.store, "get"), asked.as_bytes());
        assert_eq!(out.status.code(), Some(1), "{asked} is answered");
        assert_eq!(
            text(&out.stdout).trim(),
            "credentials not found in native keychain",
            "{asked}"
        );
        assert!(!text(&out.stderr).contains(&b.access_token()));
    }
    for asked in ["registry.example.com", "HTTPS://registry.example.com/v1/"] {
        let out = run_with_stdin(scoped(&b.store, "get"), asked.as_bytes());
        assert!(out.status.success(), "{asked}: {}", text(&out.stderr));
        assert_eq!(json(&out)["Secret"], b.access_token().as_str());
    }
}

#[test]
fn without_a_session_get_fails_on_stderr_and_unknown_verbs_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("none.json");
    let out = run_with_stdin(scoped(&missing, "get"), b"registry.example.com");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("credlock"),
        "{}",
        text(&out.stdout)
    );
    assert!(!missing.exists());
    let out = run_with_stdin(helper(&missing, "frobnicate"), b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_ci_override_is_handed_to_docker_without_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("none.json");
    let mut get = scoped(&missing, "get");
    get.env("CREDLOCK_ACCESS_TOKEN", "ci-token");
    let out = run_with_stdin(get, b"registry.example.com");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json(&out)["Secret"], "ci-token");
    assert!(!missing.exists());
}

/// Without `CREDLOCK_DOCKER_REGISTRIES` the helper answers no registry (the token, or the CI
/// override, goes to none), and says on stderr how to name them.
#[test]
fn without_configured_registries_get_answers_no_registry_and_says_how_to_name_them() {
    let b = Backend::fresh();
    for registries in [None, Some(""), Some(" , ")] {
        let mut get = helper(&b.store, "get");
        if let Some(r) = registries {
            get.env("CREDLOCK_DOCKER_REGISTRIES", r);
        }
        let out = run_with_stdin(get, b"registry.example.com");
        assert_eq!(out.status.code(), Some(1), "{registries:?}");
        assert_eq!(
            text(&out.stdout).trim(),
            "credentials not found in native keychain"
        );
        assert!(
            text(&out.stderr).contains("CREDLOCK_DOCKER_REGISTRIES"),
            "{}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).contains(&b.access_token()));
    }
    let mut ci = helper(&b.store, "get");
    ci.env("CREDLOCK_ACCESS_TOKEN", "ci-token");
    let out = run_with_stdin(ci, b"registry.example.com");
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stdout).contains("ci-token"));
    assert_eq!(b.refreshes(), 0);
}

#[test]
fn the_docker_cli_sends_no_token_to_a_registry_the_helper_was_not_given() {
    require("docker", "docker.io (only the CLI is used; no daemon)");
    let b = Backend::fresh();
    let stub = Stub::start(b.dir.path(), "registry", true, None);
    let registry = format!("127.0.0.1:{}", stub.port);
    for registries in [None, Some("registry.example.com")] {
        let out = docker_inspect(&b, &registry, registries);
        assert!(!out.status.success(), "the stub requires a token");
        assert!(stub.tokens().is_empty(), "{:?}", stub.tokens());
        assert!(!text(&out.stderr).contains(&b.access_token()));
        assert!(!text(&out.stdout).contains(&b.access_token()));
    }
}

/// `docker manifest inspect` of `registry`'s `team/app:1.0` with credlock as the registry's
/// credential helper, given `registries` as `CREDLOCK_DOCKER_REGISTRIES`.
fn docker_inspect(b: &Backend, registry: &str, registries: Option<&str>) -> Output {
    let config = b.dir.path().join("docker");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::write(
        config.join("config.json"),
        serde_json::json!({"credHelpers": {registry: "credlock"}}).to_string(),
    )
    .expect("docker config");
    let helper_dir = Path::new(HELPER).parent().expect("helper dir");
    let path = format!(
        "{}:{}",
        helper_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut docker = Command::new("docker");
    docker
        .args(["manifest", "inspect", "--insecure"])
        .arg(format!("{registry}/team/app:1.0"))
        .env("DOCKER_CONFIG", &config)
        .env("PATH", path)
        .env("CREDLOCK_STORE", &b.store)
        .env_remove("CREDLOCK_ACCESS_TOKEN")
        .env_remove("CREDLOCK_PROFILE")
        .env_remove("CREDLOCK_DOCKER_REGISTRIES")
        .env_remove("DOCKER_HOST");
    if let Some(r) = registries {
        docker.env("CREDLOCK_DOCKER_REGISTRIES", r);
    }
    run_with_stdin(docker, b"")
}

#[test]
fn the_docker_cli_pulls_a_manifest_with_the_token_through_the_helper() {
    require("docker", "docker.io (only the CLI is used; no daemon)");
    let b = Backend::fresh();
    let stub = Stub::start(b.dir.path(), "registry", true, None);
    let registry = format!("127.0.0.1:{}", stub.port);
    let out = docker_inspect(
        &b,
        &registry,
        Some(&format!("other.example.com,{registry}")),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("schemaVersion"));
    let tokens = stub.tokens();
    assert!(!tokens.is_empty(), "docker sent no credentials");
    assert!(tokens.iter().all(|t| *t == b.access_token()), "{tokens:?}");
}

/// Both binaries open the store through one configuration (`credlock_cli::config`): a
/// warning `credlock` gives on stderr, the docker helper gives too (docker reads stdout only),
/// here a session file others could read, tightened to 0600 as it is read.
#[test]
fn the_docker_helper_warns_on_stderr_as_credlock_does_when_it_tightens_the_session_file() {
    use std::os::unix::fs::PermissionsExt;
    let b = Backend::fresh();
    std::fs::set_permissions(&b.store, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = run_with_stdin(scoped(&b.store, "get"), b"registry.example.com");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json(&out)["Secret"], b.access_token().as_str());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("had mode 0644; set it to 0600"),
        "no warning on stderr: {stderr:?}"
    );
    let mode = std::fs::metadata(&b.store)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

/// An empty `CREDLOCK_*` variable is an unset one for the docker helper too.
#[test]
fn the_docker_helper_treats_empty_credlock_variables_as_unset() {
    let b = Backend::fresh();
    let mut get = scoped(&b.store, "get");
    for var in [
        "CREDLOCK_PROFILE",
        "CREDLOCK_LOCK",
        "CREDLOCK_MARGIN",
        "CREDLOCK_ACCESS_TOKEN",
        "CREDLOCK_DOCKER_USERNAME",
    ] {
        get.env(var, "");
    }
    let out = run_with_stdin(get, b"registry.example.com");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["Secret"], b.access_token().as_str());
    assert_eq!(v["Username"], "oauth2accesstoken");

    // An empty CREDLOCK_STORE falls back to the profile's file, as an unset one does.
    let home = tempfile::tempdir().expect("tempdir");
    let mut get = scoped(&b.store, "get");
    get.env("CREDLOCK_STORE", "")
        .env("CREDLOCK_PROFILE", "")
        .env("XDG_CONFIG_HOME", home.path())
        .env("HOME", home.path());
    let out = run_with_stdin(get, b"registry.example.com");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no session"),
        "{}",
        text(&out.stdout)
    );
}

/// A temporary `bin` directory with `docker-credential-credlock-NAME` symlinks to the helper,
/// one per name.
fn helper_links(dir: &Path, names: &[&str]) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    for name in names {
        std::os::unix::fs::symlink(
            HELPER,
            bin.join(format!("docker-credential-credlock-{name}")),
        )
        .expect("symlink");
    }
    bin
}

/// `docker-credential-credlock-NAME` (a symlink or copy of the helper) selects profile NAME,
/// over `CREDLOCK_PROFILE` and `CREDLOCK_STORE`: docker's `credHelpers` value `credlock-NAME`
/// runs it, so two registries with two accounts need no wrapper scripts. A name that is not
/// a valid profile name is refused and reads nothing.
#[test]
fn a_helper_named_docker_credential_credlock_name_answers_profile_names_token() {
    let home = tempfile::tempdir().expect("tempdir");
    let path = |p| {
        credlock::session_path_in(&home.path().join("config"), "credlock", Some(p)).expect("path")
    };
    let (_fw, _hw, work) = crate::common::tools::seed_at(&path("work"), false);
    let (_fp, _hp, personal) = crate::common::tools::seed_at(&path("personal"), false);
    assert_ne!(work.access_token(), personal.access_token());
    let bin = helper_links(home.path(), &["work", "personal", ".hidden"]);
    let other = tempfile::tempdir().expect("tempdir");
    for (name, session) in [("work", &work), ("personal", &personal)] {
        let mut get = Command::new(bin.join(format!("docker-credential-credlock-{name}")));
        get.arg("get")
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("CREDLOCK_DOCKER_REGISTRIES", "registry.example.com")
            // Both lose to the program's name.
            .env("CREDLOCK_PROFILE", "elsewhere")
            .env("CREDLOCK_STORE", other.path().join("session.json"))
            .env_remove("CREDLOCK_ACCESS_TOKEN");
        let out = run_with_stdin(get, b"registry.example.com");
        assert!(out.status.success(), "{name}: {}", text(&out.stdout));
        assert_eq!(
            json(&out)["Secret"],
            session.access_token().secret(),
            "{name}"
        );
    }
    let mut bad = Command::new(bin.join("docker-credential-credlock-.hidden"));
    bad.arg("get")
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("CREDLOCK_DOCKER_REGISTRIES", "registry.example.com")
        .env_remove("CREDLOCK_ACCESS_TOKEN");
    let out = run_with_stdin(bad, b"registry.example.com");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(".hidden") && text(&out.stdout).contains("profile"),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains(work.access_token().secret()));
}

/// The real docker CLI with `credHelpers` naming `credlock-work` for one registry and
/// `credlock-personal` for another sends each registry its own profile's token.
#[test]
fn the_docker_cli_sends_each_registry_the_token_of_the_profile_its_helper_name_selects() {
    require("docker", "docker.io (only the CLI is used; no daemon)");
    let home = tempfile::tempdir().expect("tempdir");
    let path = |p| {
        credlock::session_path_in(&home.path().join("config"), "credlock", Some(p)).expect("path")
    };
    let (_fw, _hw, work) = crate::common::tools::seed_at(&path("work"), false);
    let (_fp, _hp, personal) = crate::common::tools::seed_at(&path("personal"), false);
    assert_ne!(work.access_token(), personal.access_token());
    let bin = helper_links(home.path(), &["work", "personal"]);
    let work_dir = home.path().join("work-registry");
    let personal_dir = home.path().join("personal-registry");
    std::fs::create_dir_all(&work_dir).expect("mkdir");
    std::fs::create_dir_all(&personal_dir).expect("mkdir");
    let work_stub = Stub::start(&work_dir, "registry", true, None);
    let personal_stub = Stub::start(&personal_dir, "registry", true, None);
    let work_registry = format!("127.0.0.1:{}", work_stub.port);
    let personal_registry = format!("127.0.0.1:{}", personal_stub.port);
    let config = home.path().join("docker");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::write(
        config.join("config.json"),
        serde_json::json!({"credHelpers": {
            &work_registry: "credlock-work",
            &personal_registry: "credlock-personal",
        }})
        .to_string(),
    )
    .expect("docker config");
    let path_var = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for registry in [&work_registry, &personal_registry] {
        let mut docker = Command::new("docker");
        docker
            .args(["manifest", "inspect", "--insecure"])
            .arg(format!("{registry}/team/app:1.0"))
            .env("DOCKER_CONFIG", &config)
            .env("PATH", &path_var)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env(
                "CREDLOCK_DOCKER_REGISTRIES",
                format!("{work_registry},{personal_registry}"),
            )
            .env_remove("CREDLOCK_STORE")
            .env_remove("CREDLOCK_PROFILE")
            .env_remove("CREDLOCK_ACCESS_TOKEN")
            .env_remove("DOCKER_HOST");
        let out = run_with_stdin(docker, b"");
        assert!(out.status.success(), "{registry}: {}", text(&out.stderr));
    }
    let sent = |stub: &Stub| {
        let tokens = stub.tokens();
        assert!(!tokens.is_empty(), "docker sent no credentials");
        tokens
    };
    assert!(
        sent(&work_stub)
            .iter()
            .all(|t| t == work.access_token().secret()),
        "the work registry got the work token"
    );
    assert!(
        sent(&personal_stub)
            .iter()
            .all(|t| t == personal.access_token().secret()),
        "the personal registry got the personal token"
    );
}
