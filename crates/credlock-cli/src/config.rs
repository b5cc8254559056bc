//! One configuration for both binaries: `CREDLOCK_STORE` / `CREDLOCK_PROFILE` select the
//! session, `CREDLOCK_LOCK` and `CREDLOCK_MARGIN` tune it, `CREDLOCK_KEYCHAIN_TIMEOUT` bounds a
//! keychain call, and `CREDLOCK_ACCESS_TOKEN` replaces the store. `credlock` reads the first
//! four through its command line parser (flags win over the environment); the docker helper,
//! which has no flags, through [`StoreOptions::from_env`]. Both open the store with
//! [`StoreOptions::open`]. An empty variable is the same as an unset one.

use std::path::PathBuf;
use std::time::Duration;

use credlock::{Event, LockMode, Secret, Store};

/// The application directory name under the configuration directory.
pub const APP: &str = "credlock";

/// The environment variable that replaces the store (as `GH_TOKEN` does for gh).
pub const OVERRIDE_VAR: &str = "CREDLOCK_ACCESS_TOKEN";

/// The variable `name`, if it is set and not empty: an empty `CREDLOCK_*` variable counts as
/// unset.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The access-token override, if set and not empty.
pub fn override_token() -> Option<Secret> {
    var(OVERRIDE_VAR).map(|t| Secret::new(t.trim()))
}

/// `CREDLOCK_KEYCHAIN_TIMEOUT` (seconds, fractions allowed), else the library's default.
pub fn keychain_timeout() -> Duration {
    var("CREDLOCK_KEYCHAIN_TIMEOUT")
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(credlock::DEFAULT_KEYCHAIN_TIMEOUT, Duration::from_secs_f64)
}

/// How a session is opened, the same for both binaries.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The session file, or the server session's URL without its password.
    pub path: PathBuf,
    /// The session on a server (`redis://…`), if the store names one.
    pub server: Option<crate::server_store::ServerStore>,
    /// How refreshes are serialised.
    pub lock: LockMode,
    /// Refresh this long before expiry.
    pub margin: Duration,
    /// Report the routine steps on stderr too, not only the warnings.
    pub verbose: bool,
}

impl StoreOptions {
    /// The options from the environment alone: the session of `named_profile` (a profile the
    /// caller's own name selects) if given, else `CREDLOCK_STORE`, else `CREDLOCK_PROFILE`
    /// under the default directory; `CREDLOCK_LOCK` and `CREDLOCK_MARGIN` as for `credlock`.
    /// A `CREDLOCK_STORE` that is a Redis URL (`redis://…`) names a session on that server,
    /// under the URL's key, else the profile's (`named_profile`, else `CREDLOCK_PROFILE`).
    ///
    /// # Errors
    /// A message for the user: no configuration directory, an invalid profile name, or a
    /// lock mode or margin that does not parse.
    pub fn from_env(named_profile: Option<&str>) -> Result<StoreOptions, String> {
        let default_path = |profile: Option<&str>| {
            credlock::default_session_path(APP, profile).map_err(|e| format!("credlock: {e}"))
        };
        // A Redis URL in CREDLOCK_STORE keeps the session on that server, under the URL's
        // key, else the profile's (the caller's own name, else CREDLOCK_PROFILE).
        let store = var("CREDLOCK_STORE");
        if let Some(url) = store
            .as_deref()
            .filter(|s| crate::server_store::is_server_url(std::path::Path::new(s)))
        {
            let profile = named_profile
                .map(str::to_owned)
                .or_else(|| var("CREDLOCK_PROFILE"));
            let (server, location) = crate::server_store::ServerStore::select(
                std::path::Path::new(url),
                profile.as_deref(),
            )
            .map_err(|e| format!("credlock: CREDLOCK_STORE: {e}"))?;
            return Ok(StoreOptions {
                path: location,
                server: Some(server),
                ..StoreOptions::tuning_from_env()?
            });
        }
        let path = match (named_profile, store) {
            (Some(profile), _) => default_path(Some(profile))?,
            (None, Some(p)) => PathBuf::from(p),
            (None, None) => default_path(var("CREDLOCK_PROFILE").as_deref())?,
        };
        Ok(StoreOptions {
            path,
            ..StoreOptions::tuning_from_env()?
        })
    }

    /// `CREDLOCK_LOCK` and `CREDLOCK_MARGIN`, for a store still to be named.
    fn tuning_from_env() -> Result<StoreOptions, String> {
        let lock = match var("CREDLOCK_LOCK") {
            Some(mode) => mode.parse().map_err(|e| format!("credlock: {e}"))?,
            None => LockMode::default(),
        };
        let margin = match var("CREDLOCK_MARGIN") {
            Some(margin) => Duration::from_secs(margin.parse().map_err(|_| {
                format!("credlock: CREDLOCK_MARGIN={margin:?} is not a number of seconds")
            })?),
            None => credlock::DEFAULT_MARGIN,
        };
        Ok(StoreOptions {
            path: PathBuf::new(),
            server: None,
            lock,
            margin,
            verbose: false,
        })
    }

    /// The store with these options. Events that matter to a user go to stderr (all of them
    /// with `verbose`); `also` sees every event first.
    pub fn open(&self, also: impl Fn(&Event) + Send + Sync + 'static) -> Store {
        let verbose = self.verbose;
        match &self.server {
            Some(server) => server.store(),
            None => Store::new(&self.path),
        }
        .with_keychain_timeout(keychain_timeout())
        .with_lock_mode(self.lock)
        .with_margin(self.margin)
        .on_event(move |e| {
            also(e);
            if verbose || is_warning(e) {
                eprintln!("credlock: {e}");
            }
        })
    }
}

/// The events said on stderr without `--verbose`. A lock wait is normal under contention and
/// usually milliseconds: said only when it has lasted about a second. Not
/// `DeletedStaleSession`: the `session_expired` error that follows it says "the stale session
/// was removed" already.
fn is_warning(e: &Event) -> bool {
    matches!(
        e,
        Event::StillWaitingForLock { .. }
            | Event::LocksUnavailable { .. }
            | Event::PermissionsTightened { .. }
            | Event::UsingUnexpiredToken { .. }
    )
}
