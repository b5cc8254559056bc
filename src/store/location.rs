//! Where a session lives by default: one file per application and profile, under the
//! platform's per-user configuration directory.
//!
//! | Platform            | Base directory                                              |
//! |---------------------|-------------------------------------------------------------|
//! | Linux, other Unix   | `$XDG_CONFIG_HOME` if set and absolute, else `$HOME/.config` |
//! | macOS               | `$HOME/Library/Application Support`                         |
//! | Windows             | `%APPDATA%` (the roaming profile)                           |
//!
//! Under it, `<app>/session.json` is the default profile and
//! `<app>/profiles/<name>/session.json` a named one. Each profile is its own file, so it has
//! its own lock and lease: two profiles never wait for, nor refresh, each other. There is no
//! "active profile" stored anywhere; a caller names the profile every time.

use std::path::{Path, PathBuf};

/// The name of the profile used when none is given; it maps to `<app>/session.json`.
pub const DEFAULT_PROFILE: &str = "default";

/// The longest profile name accepted.
pub const MAX_PROFILE_NAME_LEN: usize = 64;

/// Why no default session path could be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocationError {
    /// A profile or application name that could escape its directory or is not portable.
    #[error(
        "invalid {what} name {name:?}: {reason} (use 1 to {MAX_PROFILE_NAME_LEN} of A-Z a-z 0-9 . _ -, not starting with '.' or '-')"
    )]
    InvalidName {
        /// "profile" or "application".
        what: &'static str,
        /// The rejected name (a name, never a secret).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The environment names no usable base directory (`HOME`, `XDG_CONFIG_HOME`, `APPDATA`
    /// unset or relative).
    #[error("no configuration directory: {variable} is not set to an absolute path")]
    NoConfigDirectory {
        /// The variable that was missing.
        variable: &'static str,
    },
}

/// Checks that `name` can name a profile: 1 to [`MAX_PROFILE_NAME_LEN`] ASCII letters,
/// digits, `.`, `_` or `-`, not starting with `.` or `-`. So no path separator, no `..`, no
/// hidden file, nothing a shell or a Windows path would read differently.
///
/// # Errors
/// [`LocationError::InvalidName`] saying what is wrong.
///
/// # Examples
/// ```
/// assert!(credlock::validate_profile_name("work-eu.2").is_ok());
/// assert!(credlock::validate_profile_name("../other").is_err());
/// ```
pub fn validate_profile_name(name: &str) -> Result<(), LocationError> {
    validate(name, "profile")
}

fn validate(name: &str, what: &'static str) -> Result<(), LocationError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_PROFILE_NAME_LEN {
        Some("it is too long")
    } else if name.starts_with('.') || name.starts_with('-') {
        Some("it starts with '.' or '-'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("it contains a character other than A-Z a-z 0-9 . _ -")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(LocationError::InvalidName {
            what,
            name: name.to_owned(),
            reason,
        }),
    }
}

/// The per-user configuration directory of this platform, read from the environment:
/// `$XDG_CONFIG_HOME` if set and absolute, else `$HOME/.config` (Linux, other Unix);
/// `$HOME/Library/Application Support` (macOS); `%APPDATA%` (Windows).
///
/// # Errors
/// [`LocationError::NoConfigDirectory`] when the variable it comes from is unset or relative.
pub fn config_dir() -> Result<PathBuf, LocationError> {
    config_dir_from(|var| std::env::var_os(var))
}

fn config_dir_from(
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<PathBuf, LocationError> {
    let absolute = |var: &'static str| {
        env(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .ok_or(LocationError::NoConfigDirectory { variable: var })
    };
    if cfg!(windows) {
        absolute("APPDATA")
    } else if cfg!(target_os = "macos") {
        Ok(absolute("HOME")?
            .join("Library")
            .join("Application Support"))
    } else {
        // The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
        absolute("XDG_CONFIG_HOME").or_else(|_| Ok(absolute("HOME")?.join(".config")))
    }
}

/// The default session file of application `app` and profile `profile` (`None` or
/// [`DEFAULT_PROFILE`] for the default one): `<config>/<app>/session.json`, or
/// `<config>/<app>/profiles/<profile>/session.json`. Pass the result to
/// [`Store::new`](crate::Store::new).
///
/// # Errors
/// - [`LocationError::InvalidName`] for an `app` or `profile` that
///   [`validate_profile_name`] refuses.
/// - [`LocationError::NoConfigDirectory`] when the environment names no base directory.
///
/// # Examples
/// ```
/// let path = credlock::default_session_path("my-cli", Some("staging"))?;
/// assert!(path.ends_with("my-cli/profiles/staging/session.json"));
/// let store = credlock::Store::new(path);
/// # let _ = store;
/// # Ok::<(), credlock::LocationError>(())
/// ```
pub fn default_session_path(app: &str, profile: Option<&str>) -> Result<PathBuf, LocationError> {
    session_path_in(&config_dir()?, app, profile)
}

/// [`default_session_path`] under `base` instead of the platform's configuration directory.
///
/// # Errors
/// [`LocationError::InvalidName`] as [`default_session_path`].
pub fn session_path_in(
    base: &Path,
    app: &str,
    profile: Option<&str>,
) -> Result<PathBuf, LocationError> {
    validate(app, "application")?;
    let app_dir = base.join(app);
    match profile {
        None => Ok(app_dir.join("session.json")),
        Some(p) if p == DEFAULT_PROFILE => Ok(app_dir.join("session.json")),
        Some(p) => {
            validate_profile_name(p)?;
            Ok(app_dir.join("profiles").join(p).join("session.json"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", ".hidden", "-rf", "a b", "é", "a:b", "a\0b",
        ] {
            assert!(validate_profile_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_profile_name(&"a".repeat(MAX_PROFILE_NAME_LEN + 1)).is_err());
        for good in [
            "a",
            "work",
            "Work_2",
            "eu-west.1",
            &"a".repeat(MAX_PROFILE_NAME_LEN),
        ] {
            assert!(validate_profile_name(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn each_profile_has_its_own_directory_and_the_default_keeps_the_plain_path() {
        let base = Path::new("/cfg");
        assert_eq!(
            session_path_in(base, "credlock", None).expect("path"),
            Path::new("/cfg/credlock/session.json")
        );
        assert_eq!(
            session_path_in(base, "credlock", Some(DEFAULT_PROFILE)).expect("path"),
            Path::new("/cfg/credlock/session.json")
        );
        assert_eq!(
            session_path_in(base, "credlock", Some("ci")).expect("path"),
            Path::new("/cfg/credlock/profiles/ci/session.json")
        );
        assert!(session_path_in(base, "../etc", None).is_err());
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn xdg_config_home_wins_unless_it_is_relative() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |var: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == var)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert_eq!(
            config_dir_from(env(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")])),
            Ok(PathBuf::from("/x"))
        );
        assert_eq!(
            config_dir_from(env(&[("XDG_CONFIG_HOME", "rel"), ("HOME", "/h")])),
            Ok(PathBuf::from("/h/.config"))
        );
        assert_eq!(
            config_dir_from(env(&[])),
            Err(LocationError::NoConfigDirectory { variable: "HOME" })
        );
    }
}
