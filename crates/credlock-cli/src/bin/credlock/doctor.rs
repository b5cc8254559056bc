//! `credlock doctor`: checks a user can act on, one line each.

use std::time::Duration;

use credlock::{Error, LockMode};
use serde_json::json;

use crate::{Global, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// `credlock doctor`: exits 1 if any check fails.
pub fn run(g: &Global) -> Outcome {
    let store = g.store();
    let mut checks: Vec<(&str, Level, String)> = Vec::new();

    match store.load() {
        Ok(Some(s)) if store.is_fresh(&s) => checks.push((
            "store",
            Level::Ok,
            format!("{} holds a valid session", store.path().display()),
        )),
        Ok(Some(_)) => checks.push((
            "store",
            Level::Ok,
            format!(
                "{} holds a session that will be refreshed on next use",
                store.path().display()
            ),
        )),
        Ok(None) => checks.push((
            "store",
            Level::Warn,
            format!(
                "no session at {}: log in with `credlock login` (or store a token response with `credlock import`)",
                store.path().display()
            ),
        )),
        Err(e) => checks.push(("store", Level::Fail, e.with_causes())),
    }

    let protection = store.file_protection();
    match &protection {
        Ok(Some(p @ credlock::FileProtection::None)) => checks.push((
            "protection",
            Level::Ok,
            format!(
                "{p}: plain JSON; `credlock protect keyring` seals it with a key in the OS keychain"
            ),
        )),
        Ok(Some(p)) => checks.push(("protection", Level::Ok, p.to_string())),
        Ok(None) => {}
        Err(e) => checks.push(("protection", Level::Fail, e.with_causes())),
    }

    if let Some(server) = &g.server {
        server_checks(server, &mut checks);
        return report(g, &checks, protection.ok().flatten());
    }

    // Files another user controls, or a directory anyone may write to: the store refuses them.
    let problems = credlock::filesystem::ownership_problems(store.path());
    for problem in &problems {
        checks.push(("permissions", Level::Fail, problem.clone()));
    }
    match store.file_mode() {
        _ if !problems.is_empty() => {}
        Some(m) if m & 0o077 == 0 => {
            checks.push(("permissions", Level::Ok, format!("mode {m:04o}")))
        }
        Some(m) => checks.push((
            "permissions",
            Level::Warn,
            format!(
                "mode {m:04o}: readable by others; credlock tightens it to 0600 on the next read"
            ),
        )),
        None if cfg!(windows) => checks.push((
            "permissions",
            Level::Warn,
            "Windows has no mode bits: the file inherits the ACL of its directory (under %APPDATA%, the user's own profile); credlock does not set or check ACLs".into(),
        )),
        None => checks.push((
            "permissions",
            Level::Ok,
            "no file yet; it will be created 0600".into(),
        )),
    }

    if g.lock == LockMode::Off {
        checks.push((
            "lock",
            Level::Warn,
            "locks are off (--lock off): concurrent refreshes rely on the invalid_grant fallback"
                .into(),
        ));
    } else {
        let probe = g.store().with_lock_timeout(Duration::from_secs(2));
        match probe.probe_lock() {
            Ok(true) => checks.push((
                "lock",
                Level::Ok,
                format!("{} can be locked", store.lock_path().display()),
            )),
            Ok(false) => checks.push((
                "lock",
                Level::Ok,
                format!(
                    "{} does not exist yet; the first refresh or save creates it 0600",
                    store.lock_path().display()
                ),
            )),
            Err(e @ Error::LockTimeout { .. }) => checks.push((
                "lock",
                Level::Warn,
                format!("{} (a refresh may be in progress)", e.with_causes()),
            )),
            Err(e) => checks.push(("lock", Level::Fail, e.with_causes())),
        }
    }

    // The lease in force is healthy (the plan's reason says what it relies on); only guards
    // that may let two machines refresh at once warn, with the way out.
    let plan = store.lock_plan();
    let mut fs_line = format!(
        "{} ({}); {}",
        plan.filesystem.kind.name(),
        plan.filesystem.evidence,
        plan.summary()
    );
    if plan.degraded {
        fs_line.push_str(
            "; to guard every machine sharing the session, use --lock auto (it adds the lease where locks do not reach other machines) or --lock lease",
        );
    }
    checks.push((
        "filesystem",
        if plan.degraded {
            Level::Warn
        } else {
            Level::Ok
        },
        fs_line,
    ));

    report(g, &checks, protection.ok().flatten())
}

/// A session on a server: whether the server keeps it across a restart, and what a failover
/// can lose (no lock file, no filesystem to check).
fn server_checks(
    server: &credlock_cli::server_store::ServerStore,
    checks: &mut Vec<(&str, Level, String)>,
) {
    match server.persistence() {
        Ok((_, enough, sentence)) => checks.push((
            "persistence",
            if enough { Level::Ok } else { Level::Warn },
            sentence,
        )),
        Err(e) => checks.push(("persistence", Level::Fail, e.with_causes())),
    }
    checks.push((
        "replication",
        Level::Ok,
        credlock_cli::server_store::REPLICATION.to_owned(),
    ));
}

/// Prints the checks; exits 1 if any failed.
fn report(
    g: &Global,
    checks: &[(&str, Level, String)],
    protection: Option<credlock::FileProtection>,
) -> Outcome {
    let worst = checks.iter().map(|c| c.1).max().unwrap_or(Level::Ok);
    if g.json {
        let list: Vec<_> = checks
            .iter()
            .map(|(name, level, detail)| json!({"check": name, "level": level.name(), "detail": detail}))
            .collect();
        let protection = protection.map(|p| p.to_string());
        outln!(
            "{}",
            json!({"checks": list, "worst": worst.name(), "protection": protection})
        )?;
    } else {
        for (name, level, detail) in checks {
            outln!("{:<5} {:<12} {detail}", level.name(), name)?;
        }
    }
    Ok(u8::from(worst == Level::Fail))
}
