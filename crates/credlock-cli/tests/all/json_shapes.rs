//! `--json` output against its documentation: every command's object has exactly the keys,
//! with the types, that the tables of `docs/json.md` list (the tables are parsed here, so the
//! page and the output cannot drift apart).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::tools::{Backend, seed_at, text};
use crate::common::{credlock, run_with_stdin};

/// One documented key: its name and the JSON types it may have.
type Shape = Vec<(String, BTreeSet<String>)>;

/// The shapes of `docs/json.md`: each table that follows a `<!-- shape: NAME -->` line.
fn documented() -> BTreeMap<String, Shape> {
    let page = std::fs::read_to_string(crate::common::repo_root().join("docs/json.md"))
        .expect("docs/json.md");
    let mut shapes = BTreeMap::new();
    let mut current: Option<(String, Shape)> = None;
    for line in page.lines() {
        if let Some(name) = line
            .strip_prefix("<!-- shape: ")
            .and_then(|l| l.strip_suffix(" -->"))
        {
            if let Some((name, shape)) = current.take() {
                shapes.insert(name, shape);
            }
            current = Some((name.to_owned(), Vec::new()));
            continue;
        }
        let Some((_, shape)) = current.as_mut() else {
            continue;
        };
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| key | type | null when | meaning |` splits into six cells, the outer two empty.
        if cells.len() < 6 || !cells[1].starts_with('`') {
            if !shape.is_empty() && !line.starts_with('|') {
                let (name, shape) = current.take().expect("current");
                shapes.insert(name, shape);
            }
            continue;
        }
        let key = cells[1].trim_matches('`').to_owned();
        let types = cells[2].split(" or ").map(str::to_owned).collect();
        shape.push((key, types));
    }
    if let Some((name, shape)) = current {
        shapes.insert(name, shape);
    }
    shapes
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `v` against the documented shape `name`, and records that `name` was checked.
struct Checker {
    shapes: BTreeMap<String, Shape>,
    checked: BTreeSet<String>,
}

impl Checker {
    fn new() -> Checker {
        let shapes = documented();
        assert!(
            shapes.len() >= 10,
            "docs/json.md has its shapes: {shapes:?}"
        );
        Checker {
            shapes,
            checked: BTreeSet::new(),
        }
    }

    fn check(&mut self, name: &str, v: &Value, what: &str) {
        let shape = self
            .shapes
            .get(name)
            .unwrap_or_else(|| panic!("docs/json.md documents no shape {name:?}"));
        let object = v
            .as_object()
            .unwrap_or_else(|| panic!("{what}: not an object: {v}"));
        let documented: BTreeSet<&str> = shape.iter().map(|(k, _)| k.as_str()).collect();
        let printed: BTreeSet<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(
            printed, documented,
            "{what}: the keys printed (left) are the keys docs/json.md lists for {name} (right): {v}"
        );
        for (key, types) in shape {
            let got = type_of(&object[key]);
            assert!(
                types.contains(got),
                "{what}: {key} is {got}, docs/json.md says {types:?}: {v}"
            );
        }
        self.checked.insert(name.to_owned());
    }
}

fn json_of(out: &Output, what: &str) -> Value {
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "{what}: one line on stdout: {stdout:?} / {}",
        text(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {stdout:?}"))
}

fn run(cmd: Command) -> Output {
    run_with_stdin(cmd, b"")
}

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

/// `credlock --store STORE ARGS` (without the override, as `credlock` gives it).
fn on(store: &Path, args: &[&str]) -> Command {
    credlock(store, args)
}

/// Every documented command, run with `--json` in the states that change its output
/// (a session or none, fresh or refreshed, the override or not), prints exactly the keys
/// and types its table in `docs/json.md` lists, and every table there is checked by a run.
#[test]
fn every_json_object_has_the_keys_and_types_that_docs_json_md_lists() {
    let mut c = Checker::new();

    // token: a stored token, a refreshed one, --min-valid, the override, --out.
    let fresh = Backend::fresh();
    let out = run(on(&fresh.store, &["token", "--json"]));
    let v = json_of(&out, "token");
    c.check("token", &v, "token (fresh)");
    assert_eq!(
        (&v["refreshed"], &v["saved"], &v["source"]),
        (
            &Value::Bool(false),
            &Value::Bool(true),
            &Value::from("store")
        )
    );
    let expired = Backend::expired();
    let v = json_of(&run(on(&expired.store, &["token", "--json"])), "token");
    c.check("token", &v, "token (refreshed)");
    assert_eq!(v["refreshed"], true, "{v}");
    let v = json_of(
        &run(on(&fresh.store, &["token", "--json", "--min-valid", "60"])),
        "token --min-valid",
    );
    c.check("token", &v, "token --min-valid");
    let mut overridden = on(&fresh.store, &["token", "--json"]);
    overridden.env("CREDLOCK_ACCESS_TOKEN", "from-ci");
    let v = json_of(&run(overridden), "token with the override");
    c.check("token", &v, "token with CREDLOCK_ACCESS_TOKEN");
    assert_eq!(
        (&v["access_token"], &v["source"], &v["saved"]),
        (
            &Value::from("from-ci"),
            &Value::from("override"),
            &Value::Null
        )
    );
    let file = fresh.dir.path().join("token-file");
    let file_arg = file.to_str().expect("utf-8");
    let v = json_of(
        &run(on(&fresh.store, &["token", "--json", "--out", file_arg])),
        "token --out",
    );
    c.check("token-out", &v, "token --out");
    assert_eq!(v["written"], true, "{v}");

    // status, with a session and without (exit 3, the same keys).
    let v = json_of(&run(on(&fresh.store, &["status", "--json"])), "status");
    c.check("status", &v, "status (session)");
    let empty = tempfile::tempdir().expect("tempdir");
    let nothing = empty.path().join("session.json");
    let out = run(on(&nothing, &["status", "--json"]));
    assert_eq!(out.status.code(), Some(3));
    let v = json_of(&out, "status without a session");
    c.check("status", &v, "status (no session)");
    assert_eq!(v["client_id"], Value::Null, "{v}");
    // status of a session whose ID token names the account: the account object.
    let named = tempfile::tempdir().expect("tempdir");
    let with_id_token = named.path().join("session.json");
    let mut session: Value =
        serde_json::from_slice(&std::fs::read(&fresh.store).expect("read")).expect("json");
    // {"sub":"user-1","email":"jane@example.com","iss":"https://id.example"}, unsigned.
    session["extra"]["id_token"] = Value::from(
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyLTEiLCJlbWFpbCI6ImphbmVAZXhhbXBsZS5jb20iLCJpc3MiOiJodHRwczovL2lkLmV4YW1wbGUifQ.",
    );
    let session = credlock::Session::from_json(
        &serde_json::to_vec(&session).expect("bytes"),
        &with_id_token,
    )
    .expect("a session with an ID token");
    credlock::Store::new(&with_id_token)
        .save(&session)
        .expect("save");
    let v = json_of(&run(on(&with_id_token, &["status", "--json"])), "status");
    c.check("status", &v, "status (a session with an ID token)");
    c.check("account", &v["account"], "status's account");
    assert_eq!(v["account"]["sub"], "user-1", "{v}");

    // doctor.
    let v = json_of(&run(on(&fresh.store, &["doctor", "--json"])), "doctor");
    c.check("doctor", &v, "doctor");
    for check in v["checks"].as_array().expect("checks") {
        c.check("doctor-check", check, "doctor check");
    }

    // profiles: default, a named one, an unreadable one.
    let home = tempfile::tempdir().expect("tempdir");
    let path = |p| credlock::session_path_in(&home.path().join("config"), "credlock", p);
    let (_f1, _h1, _) = seed_at(&path(None).expect("path"), false);
    let (_f2, _h2, _) = seed_at(&path(Some("work")).expect("path"), true);
    let broken = path(Some("broken")).expect("path");
    std::fs::create_dir_all(broken.parent().expect("parent")).expect("mkdir");
    std::fs::write(&broken, b"{not json").expect("write");
    let v = json_of(
        &run(credlock_in(home.path(), &["profiles", "--json"])),
        "profiles",
    );
    c.check("profiles", &v, "profiles");
    let rows = v["profiles"].as_array().expect("profiles");
    assert_eq!(rows.len(), 3, "{v}");
    for row in rows {
        c.check("profiles-entry", row, "a profile");
    }

    // import, then logout.
    let imported = empty.path().join("imported.json");
    let import = on(
        &imported,
        &[
            "import",
            "--json",
            "--token-endpoint",
            "https://auth.example.com/token",
            "--client-id",
            "cli",
        ],
    );
    let out = run_with_stdin(
        import,
        br#"{"access_token":"a","refresh_token":"r","token_type":"Bearer","expires_in":3600}"#,
    );
    let v = json_of(&out, "import");
    c.check("import", &v, "import");
    // A client-credentials import: the same keys, and a status of such a session.
    let machine = empty.path().join("machine.json");
    let v = json_of(
        &run(on(
            &machine,
            &[
                "import",
                "--json",
                "--grant",
                "client-credentials",
                "--token-endpoint",
                "https://auth.example.com/token",
                "--client-id",
                "machine",
                "--client-secret-env",
                "MACHINE_SECRET",
            ],
        )),
        "import --grant client-credentials",
    );
    c.check("import", &v, "import (client credentials)");
    assert_eq!(v["grant"], "client_credentials", "{v}");
    let v = json_of(&run(on(&machine, &["status", "--json"])), "status");
    c.check("status", &v, "status (a client-credentials session)");
    let v = json_of(&run(on(&imported, &["logout", "--json"])), "logout");
    c.check("logout", &v, "logout");
    assert_eq!(v["deleted"], true, "{v}");

    // Errors: no session (exit 3), a usage error (exit 2).
    for (args, code) in [
        (&["token", "--json"][..], 3),
        (&["token", "--json", "--no-such-flag"][..], 2),
    ] {
        let out = run(on(&nothing, args));
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let v = json_of(&out, "an error");
        c.check("error", &v, &format!("{args:?}"));
        c.check("error-fields", &v["error"], &format!("{args:?}"));
        assert_eq!(v["error"]["exit_code"], code);
    }

    // `login` needs a real authorization server: its shape is checked by
    // `login_json_has_the_keys_and_types_that_docs_json_md_lists` (node-oidc-provider).
    let unchecked: Vec<&String> = c
        .shapes
        .keys()
        .filter(|name| !c.checked.contains(*name) && *name != "login")
        .collect();
    assert!(
        unchecked.is_empty(),
        "shapes of docs/json.md that no run checks: {unchecked:?}"
    );
}

/// `token --json` has the same keys whether the token comes from the session or from
/// `CREDLOCK_ACCESS_TOKEN` (null where the override has no value to give), so a script
/// written on a laptop works in CI.
#[test]
fn token_json_has_the_same_keys_with_and_without_the_access_token_override() {
    let b = Backend::fresh();
    let stored = json_of(&run(on(&b.store, &["token", "--json"])), "token");
    let mut cmd = on(&b.store, &["token", "--json"]);
    cmd.env("CREDLOCK_ACCESS_TOKEN", "from-ci");
    let overridden = json_of(&run(cmd), "token with the override");
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&stored), keys(&overridden), "{stored} / {overridden}");
    assert_eq!(stored["access_token"], b.access_token().as_str());
    assert_eq!(overridden["access_token"], "from-ci");
}

/// `exec --json` keeps the `--json` promise when the command cannot start: one error object
/// on stdout (the command never ran, so stdout is still credlock's), exit 127.
#[test]
fn exec_json_prints_one_error_object_when_the_command_cannot_start() {
    let b = Backend::fresh();
    let missing = b.dir.path().join("no-such-command");
    let out = run(on(
        &b.store,
        &[
            "exec",
            "--json",
            "--",
            missing.to_str().expect("utf-8"),
            "arg",
        ],
    ));
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    let v = json_of(&out, "exec of a missing command");
    let mut c = Checker::new();
    c.check("error", &v, "exec");
    c.check("error-fields", &v["error"], "exec");
    assert_eq!(v["error"]["kind"], "command_not_found", "{v}");
    assert_eq!(v["error"]["exit_code"], 127, "{v}");
    assert!(!text(&out.stdout).contains(&b.access_token()));
}

/// `login --json` prints the keys and types `docs/json.md` lists (a device login approved
/// at node-oidc-provider).
#[test]
#[ignore = "needs node-oidc-provider; .ci/run runs it"]
fn login_json_has_the_keys_and_types_that_docs_json_md_lists() {
    use crate::common::idp::{Browser, Provider, user_code_in};
    let p = Provider::start(&["--device-interval", "1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("session.json");
    let err = dir.path().join("stderr");
    let child = crate::login_device::spawn_device(&store, &err, &p.issuer, &["login"]);
    let code = user_code_in(&err, std::time::Duration::from_secs(20));
    Browser::new().approve_device(&p.issuer, &code, false);
    let out = crate::common::finish(child, std::time::Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    let v = json_of(&out, "login");
    Checker::new().check("login", &v, "login");
    assert_eq!(
        (&v["saved"], &v["error"]),
        (&Value::Bool(true), &Value::Null)
    );
}
