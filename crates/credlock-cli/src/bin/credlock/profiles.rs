//! Profiles: `--profile NAME` selects `<config>/credlock/profiles/NAME/session.json` (its own
//! lock and lease beside it); `credlock profiles` lists them with their state, no secrets.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use credlock::internal::rfc3339;
use credlock::{DEFAULT_PROFILE, Session, Store};
use serde_json::json;

use crate::{Failure, Global, Outcome};

use credlock_cli::config::{self, APP};

/// clap's parser for `--profile`: a name that cannot leave its directory.
pub fn parse_profile(name: &str) -> Result<String, String> {
    credlock::validate_profile_name(name)
        .map(|()| name.to_owned())
        .map_err(|e| e.to_string())
}

/// The configuration directory (a configuration error, exit 5, when the environment names
/// none: never the working directory).
fn config_base() -> Result<PathBuf, Failure> {
    config::config_dir().map_err(|e| Failure::Configuration(e.to_string()))
}

/// The session file of `profile` (validated by [`parse_profile`]) under `base`.
fn store_path(base: &Path, profile: Option<&str>) -> PathBuf {
    credlock::session_path_in(base, APP, profile)
        .unwrap_or_else(|_| base.join(APP).join("session.json"))
}

/// One row of `credlock profiles`.
struct Row {
    profile: String,
    store: PathBuf,
    state: &'static str,
    expires_at: Option<SystemTime>,
    /// The account the ID token names (unverified), for the table and `account` in JSON.
    account: Option<String>,
    account_json: serde_json::Value,
    problem: Option<String>,
}

fn row(g: &Global, profile: String, store: PathBuf) -> Row {
    let handle = Store::new(&store).with_margin(g.margin);
    let (state, session, problem) = match handle.load() {
        Ok(None) => ("none", None, None),
        Ok(Some(s)) => (state_of(&handle, &s), Some(s), None),
        Err(e) => ("unreadable", None, Some(e.with_causes())),
    };
    Row {
        profile,
        store,
        state,
        expires_at: session.as_ref().and_then(Session::expires_at),
        account: session
            .as_ref()
            .and_then(Session::unverified_id_token_claims)
            .and_then(|c| c.account().map(str::to_owned)),
        account_json: session
            .as_ref()
            .map_or(serde_json::Value::Null, crate::commands::account_json),
        problem,
    }
}

/// fresh: handed out as is; stale: refreshed on next use; expired: past its expiry (a
/// refresh is still possible while the refresh token lives).
fn state_of(store: &Store, s: &Session) -> &'static str {
    if store.is_fresh(s) {
        "fresh"
    } else if s.is_fresh(SystemTime::now(), std::time::Duration::ZERO) {
        "stale"
    } else {
        "expired"
    }
}

/// The named profiles under `<base>/credlock/profiles`, sorted.
fn named_profiles(app_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(app_dir.join("profiles"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| credlock::validate_profile_name(n).is_ok())
        .collect();
    names.sort();
    names
}

/// The profiles that exist: `default` when its session or settings file does, and every
/// named one.
fn known_profiles() -> Vec<String> {
    let Ok(base) = config_base() else {
        return Vec::new();
    };
    let default = store_path(&base, None);
    let mut known = Vec::new();
    if default.exists() || crate::settings::path_for(&default).exists() {
        known.push(DEFAULT_PROFILE.to_owned());
    }
    known.extend(named_profiles(&base.join(APP)));
    known
}

/// A `--profile` naming a profile with neither a session nor settings is likely a typo:
/// says so on stderr with the profiles that exist, if any do.
pub fn hint_if_unknown(g: &Global) {
    let Some(name) = g.profile.as_deref() else {
        return;
    };
    // On a server the profile is a key: the file profiles say nothing about it.
    if g.server.is_some() {
        return;
    }
    if g.store.exists() || crate::settings::path_for(&g.store).exists() {
        return;
    }
    let known: Vec<String> = known_profiles().into_iter().filter(|k| k != name).collect();
    if !known.is_empty() {
        eprintln!(
            "credlock: no profile named {name:?} has a session or login settings; known profiles: {}",
            known.join(", ")
        );
    }
}

/// `credlock profiles`: the default profile (when it has a session) and every named one.
/// Creates nothing.
pub fn list(g: &Global) -> Outcome {
    let base = config_base()?;
    let app_dir = base.join(APP);
    let mut rows = Vec::new();
    let default = store_path(&base, None);
    if default.exists() || crate::settings::path_for(&default).exists() {
        rows.push(row(g, DEFAULT_PROFILE.to_owned(), default));
    }
    for name in named_profiles(&app_dir) {
        let path = store_path(&base, Some(&name));
        rows.push(row(g, name, path));
    }
    if g.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "profile": r.profile,
                    "store": r.store,
                    "state": r.state,
                    "expires_at": r.expires_at.map(rfc3339),
                    "account": r.account_json,
                    "problem": r.problem,
                })
            })
            .collect();
        // An object, not a bare array, so that keys can be added beside the list.
        outln!("{}", json!({ "profiles": rows }))?;
        return Ok(0);
    }
    if rows.is_empty() {
        outln!("No profiles under {}", app_dir.display())?;
        return Ok(0);
    }
    outln!(
        "{:<20} {:<10} {:<25} {:<30} STORE",
        "PROFILE",
        "STATE",
        "EXPIRES",
        "ACCOUNT (UNVERIFIED)"
    )?;
    for r in &rows {
        let expires = r.expires_at.map_or_else(|| "-".to_owned(), rfc3339);
        outln!(
            "{:<20} {:<10} {:<25} {:<30} {}",
            r.profile,
            r.state,
            expires,
            r.account.as_deref().unwrap_or("-"),
            r.store.display()
        )?;
        if let Some(problem) = &r.problem {
            outln!("  {problem}")?;
        }
    }
    Ok(0)
}
