//! One configuration for both binaries: `CREDLOCK_STORE` / `CREDLOCK_PROFILE` select the
//! session, `CREDLOCK_LOCK` and `CREDLOCK_MARGIN` tune it, `CREDLOCK_KEYCHAIN_TIMEOUT` bounds a
//! keychain call, and `CREDLOCK_ACCESS_TOKEN` replaces the store. `credlock` reads the first
//! four through its command line parser (flags win over the environment); the docker helper,
//! which has no flags, through [`StoreOptions::from_env`]. Both choose the store with
//! [`select`] and open it with [`StoreOptions::open`]. An empty variable is the same as an
//! unset one.

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

/// Where a selecting value came from: the command line beats the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A flag (`--store`, `--profile`), or the docker helper's own name.
    CommandLine,
    /// A `CREDLOCK_*` variable.
    Environment,
}

/// Why no store can be selected. The message names what to change; each binary prefixes it
/// and maps the kind to its own exit convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectError {
    /// The values contradict each other or one does not parse (`credlock`: exit 2).
    Usage(String),
    /// The environment names no configuration directory for the default session
    /// (`credlock`: exit 5).
    Configuration(String),
}

impl std::fmt::Display for SelectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelectError::Usage(m) | SelectError::Configuration(m) => f.write_str(m),
        }
    }
}

/// The session that the store and profile select.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The session file, or the server session's URL without its password.
    pub path: PathBuf,
    /// The session on a server (`redis://…`), if the store names one.
    pub server: Option<crate::server_store::ServerStore>,
    /// The profile that chose the file or the server key, if one did.
    pub profile: Option<String>,
}

/// The variables that name the configuration directory on this platform, for the message
/// that asks for one.
const CONFIG_DIR_VARS: &str = if cfg!(windows) {
    "APPDATA"
} else if cfg!(target_os = "macos") {
    "HOME"
} else {
    "XDG_CONFIG_HOME or HOME"
};

/// The configuration directory. Never the working directory: without one, a configuration
/// error that says which variables to set.
///
/// # Errors
/// [`SelectError::Configuration`] when the environment names no configuration directory.
pub fn config_dir() -> Result<PathBuf, SelectError> {
    credlock::config_dir().map_err(|e| {
        SelectError::Configuration(format!(
            "{e}: set {CONFIG_DIR_VARS} to an absolute directory, or name the session file in CREDLOCK_STORE (or --store)"
        ))
    })
}

/// The session file of `profile` under the configuration directory ([`config_dir`]).
///
/// # Errors
/// [`SelectError::Configuration`] without a configuration directory, [`SelectError::Usage`]
/// for an invalid profile name.
pub fn default_path(profile: Option<&str>) -> Result<PathBuf, SelectError> {
    credlock::session_path_in(&config_dir()?, APP, profile)
        .map_err(|e| SelectError::Usage(e.to_string()))
}

/// The store that `store` (`--store` / `CREDLOCK_STORE`) and `profile` (`--profile` /
/// `CREDLOCK_PROFILE` / the docker helper's name) select, for both binaries:
/// - a store that is a Redis URL (`redis://…`) is a session on that server, under the URL's
///   key, else the profile's;
/// - a store that is a URL of another scheme (`http://…`) is refused, unquoted;
/// - a file store and a profile: the one from the command line wins (so a child given
///   `--store` ignores an inherited `CREDLOCK_PROFILE`); both from the same place is a usage
///   error, since either could be the wrong session;
/// - else the store's file, else the profile's under the configuration directory
///   ([`default_path`]).
///
/// A `CREDLOCK_FS_KIND` credlock does not know is refused first: ignored, it would leave a
/// `nolock` NFS home without the lease its user asked for.
///
/// # Errors
/// [`SelectError`] saying what to change.
pub fn select(
    store: Option<(PathBuf, Origin)>,
    profile: Option<(String, Origin)>,
) -> Result<Selection, SelectError> {
    fs_kind_is_known()?;
    if let Some((_, origin)) = store
        .as_ref()
        .filter(|(s, _)| crate::server_store::is_unknown_url(s))
    {
        let named_by = match origin {
            Origin::CommandLine => "--store",
            Origin::Environment => "CREDLOCK_STORE",
        };
        return Err(SelectError::Usage(format!(
            "{named_by} is a URL whose scheme credlock does not know (not quoted: it may hold a password); a store is a file path, or redis://, rediss://, valkey:// or valkeys://"
        )));
    }
    if let Some((url, origin)) = store
        .as_ref()
        .filter(|(s, _)| crate::server_store::is_server_url(s))
    {
        let profile = profile.map(|(p, _)| p);
        let (server, location) = crate::server_store::ServerStore::select(url, profile.as_deref())
            .map_err(|e| {
                let named_by = match origin {
                    Origin::CommandLine => "--store",
                    Origin::Environment => "CREDLOCK_STORE",
                };
                SelectError::Usage(format!("{named_by}: {e}"))
            })?;
        return Ok(Selection {
            path: location,
            server: Some(server),
            profile,
        });
    }
    let file = |path: PathBuf| Selection {
        path,
        server: None,
        profile: None,
    };
    let of_profile = |profile: Option<String>| {
        Ok(Selection {
            path: default_path(profile.as_deref())?,
            server: None,
            profile,
        })
    };
    match (store, profile) {
        (Some((store, Origin::CommandLine)), Some((_, Origin::Environment))) | (Some((store, _)), None) => {
            Ok(file(store))
        }
        (Some((_, Origin::Environment)), Some((profile, Origin::CommandLine))) => {
            of_profile(Some(profile))
        }
        (Some(_), Some(_)) => Err(SelectError::Usage(
            "a store and a profile are both given; name one of them (--store or CREDLOCK_STORE, --profile or CREDLOCK_PROFILE)".to_owned(),
        )),
        (None, profile) => of_profile(profile.map(|(p, _)| p)),
    }
}

/// A `CREDLOCK_FS_KIND` that is empty, unset or one the library knows.
fn fs_kind_is_known() -> Result<(), SelectError> {
    use credlock::filesystem::{FS_KIND_ENV, FS_KIND_NAMES};
    let Some(value) = std::env::var_os(FS_KIND_ENV) else {
        return Ok(());
    };
    let value = value.to_string_lossy();
    let value = value.trim();
    if value.is_empty() || FS_KIND_NAMES.contains(&value) {
        return Ok(());
    }
    Err(SelectError::Usage(format!(
        "{FS_KIND_ENV}={value:?} is not a filesystem kind credlock knows ({}); fix it, or unset it to let credlock detect the filesystem",
        FS_KIND_NAMES.join(", ")
    )))
}

impl StoreOptions {
    /// The options from the environment alone, for the docker helper: the store [`select`]
    /// chooses from `named_profile` (the profile the helper's own name selects, which counts
    /// as the command line), `CREDLOCK_STORE` and `CREDLOCK_PROFILE`; `CREDLOCK_LOCK` and
    /// `CREDLOCK_MARGIN` as for `credlock`.
    ///
    /// # Errors
    /// A message for the user: what [`select`] refuses, or a lock mode or margin that does
    /// not parse.
    pub fn from_env(named_profile: Option<&str>) -> Result<StoreOptions, String> {
        let store = var("CREDLOCK_STORE").map(|s| (PathBuf::from(s), Origin::Environment));
        let profile = match named_profile {
            Some(name) => Some((name.to_owned(), Origin::CommandLine)),
            None => var("CREDLOCK_PROFILE").map(|p| (p, Origin::Environment)),
        };
        let selection = select(store, profile).map_err(|e| format!("credlock: {e}"))?;
        Ok(StoreOptions {
            path: selection.path,
            server: selection.server,
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
