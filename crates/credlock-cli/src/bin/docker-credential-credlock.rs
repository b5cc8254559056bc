//! `docker-credential-credlock`: a docker credential helper (the get/store/erase/list
//! protocol of docker-credential-helpers) that answers credlock's access token, for
//! registries that accept an OAuth access token as the password.
//!
//! Run under the name `docker-credential-credlock-NAME` (a symlink or a copy; docker runs it
//! for a `credHelpers` value `credlock-NAME`), it answers from the profile NAME: two
//! registries with two accounts need no wrapper scripts. The name wins over
//! `CREDLOCK_PROFILE` and `CREDLOCK_STORE`; NAME must be a valid profile name. The store is
//! chosen as `credlock` chooses it (`credlock_cli::config::select`, the name counting as a
//! flag): `CREDLOCK_STORE` and `CREDLOCK_PROFILE` both set is an error, so is an unknown
//! `CREDLOCK_FS_KIND`, and so is no configuration directory when no store is named. When
//! `CREDLOCK_STORE` is a Redis URL (`redis://…`, `docs/fleet.md`), the session is on that
//! server, under the URL's key, else the profile's (the name, else `CREDLOCK_PROFILE`).
//!
//! Configuration, all from the environment (docker passes its own to the helper):
//! `CREDLOCK_STORE` or `CREDLOCK_PROFILE` select the session, and `CREDLOCK_LOCK`,
//! `CREDLOCK_MARGIN` and `CREDLOCK_KEYCHAIN_TIMEOUT` tune it, read and applied by the same
//! module as for `credlock` (`credlock_cli::config`, warnings on stderr included);
//! `CREDLOCK_ACCESS_TOKEN` overrides it; `CREDLOCK_DOCKER_USERNAME` is the username to answer
//! (default `oauth2accesstoken`, what Google's registries expect); `CREDLOCK_DOCKER_REGISTRIES`,
//! a comma-separated list of registry hosts, is the registries the token (or the override)
//! goes to and what `list` reports. Without it `get` answers no registry, as docker's "not
//! found" with a hint on stderr: a helper that ends up configured for every registry
//! (`credsStore`) must not hand the token to any registry docker asks about. A server URL
//! with a scheme other than `https://` (`http://…`) is "not found" too; a bare host, what
//! docker sends, is https.
//! An empty variable is the same as an unset one.
//!
//! Exit codes: 0 success; 1 failure (message on stdout, where docker reads it); 2 usage.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use credlock_cli::config::{StoreOptions, override_token, var};
use serde_json::json;

/// What docker-credential-helpers' client recognises as "no credentials for this server".
const NOT_FOUND: &str = "credentials not found in native keychain";

fn main() -> ExitCode {
    let verb = std::env::args().nth(1).unwrap_or_default();
    let result = match verb.as_str() {
        "get" => read_stdin().and_then(|input| get(input.trim())),
        // The session is credlock's: docker login/logout do not change it.
        "store" | "erase" => read_stdin().map(|_| String::new()),
        "list" => Ok(list()),
        "version" => Ok(format!(
            "docker-credential-credlock {}",
            env!("CARGO_PKG_VERSION")
        )),
        other => {
            eprintln!(
                "usage: docker-credential-credlock get|store|erase|list|version (got {other:?})"
            );
            return ExitCode::from(2);
        }
    };
    let (text, code) = match result {
        Ok(out) => (out, ExitCode::SUCCESS),
        Err(message) => (message, ExitCode::from(1)),
    };
    if text.is_empty() {
        return code;
    }
    // A closed stdout (docker gone) is a failure to report, not a panic.
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => code,
        Err(_) => ExitCode::from(1),
    }
}

fn read_stdin() -> Result<String, String> {
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| format!("credlock: could not read stdin: {e}"))?;
    Ok(text)
}

fn username() -> String {
    var("CREDLOCK_DOCKER_USERNAME").unwrap_or_else(|| "oauth2accesstoken".to_owned())
}

/// `registry.example.com:5000` from `https://registry.example.com:5000/v1/` and the like.
fn host_of(server_url: &str) -> &str {
    let rest = server_url
        .split_once("://")
        .map_or(server_url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// The registries named in `CREDLOCK_DOCKER_REGISTRIES` (none when unset or empty).
fn registries() -> Vec<String> {
    var("CREDLOCK_DOCKER_REGISTRIES")
        .unwrap_or_default()
        .split(',')
        .map(|r| host_of(r.trim()).to_ascii_lowercase())
        .filter(|r| !r.is_empty())
        .collect()
}

fn list() -> String {
    let user = username();
    let map: serde_json::Map<String, serde_json::Value> =
        registries().into_iter().map(|r| (r, json!(user))).collect();
    serde_json::Value::Object(map).to_string()
}

fn get(server_url: &str) -> Result<String, String> {
    let allowed = registries();
    if allowed.is_empty() {
        eprintln!(
            "credlock: docker-credential-credlock answers no registry until told which: set \
             CREDLOCK_DOCKER_REGISTRIES=registry.example.com[,…]"
        );
        return Err(NOT_FOUND.to_owned());
    }
    // A bare host is what docker sends; an explicit scheme must be https, or the token would
    // go out in clear (`http://`) or to whatever else the caller speaks.
    let scheme_ok = server_url
        .split_once("://")
        .is_none_or(|(scheme, _)| scheme.eq_ignore_ascii_case("https"));
    let asked = host_of(server_url).to_ascii_lowercase();
    if !scheme_ok || !allowed.contains(&asked) {
        return Err(NOT_FOUND.to_owned());
    }
    let token = match override_token() {
        Some(t) => t.secret().to_owned(),
        None => store()?
            .access_token()
            .map_err(|e| format!("credlock: {}", e.with_causes()))?
            .secret()
            .to_owned(),
    };
    Ok(json!({"ServerURL": server_url, "Username": username(), "Secret": token}).to_string())
}

/// What the helper's own name puts before a profile name.
const NAMED_PREFIX: &str = "docker-credential-credlock-";

/// The profile the program's name selects: `docker-credential-credlock-NAME` is profile NAME
/// (checked by the library's profile-name rule), any other name none.
fn profile_from_program_name() -> Result<Option<String>, String> {
    let Some(arg0) = std::env::args_os().next() else {
        return Ok(None);
    };
    let file_name = Path::new(&arg0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = file_name.strip_suffix(".exe").unwrap_or(&file_name);
    let Some(profile) = name.strip_prefix(NAMED_PREFIX) else {
        return Ok(None);
    };
    credlock::validate_profile_name(profile).map_err(|e| {
        format!("credlock: the helper's name {name:?} selects the profile {profile:?}, which is not a profile name: {e}; rename the link to {NAMED_PREFIX}PROFILE")
    })?;
    Ok(Some(profile.to_owned()))
}

/// The store the environment selects, opened as `credlock` opens it.
fn store() -> Result<credlock::Store, String> {
    let named = profile_from_program_name()?;
    Ok(StoreOptions::from_env(named.as_deref())?.open(|_| {}))
}
