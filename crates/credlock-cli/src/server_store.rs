//! `--store redis://[user:password@]host:port[/db]?key=NAME` (and `rediss://`): a session
//! kept on a Redis or Valkey server (`docs/fleet.md`). The key is the URL's, else the
//! profile's, else `default`. What the rest of the CLI sees as the store is the URL without
//! its password; the password stays inside the [`credlock::Fleet`].

use std::path::{Path, PathBuf};

use credlock::{Fleet, Store};

/// The schemes of a store kept on a server, matched whatever their case (as URL schemes are).
pub const SCHEMES: [&str; 4] = ["redis", "rediss", "valkey", "valkeys"];

/// The scheme of `store` if it starts as a URL does (`scheme://`, the scheme a letter then
/// letters, digits, `+`, `-` or `.`).
fn scheme(store: &Path) -> Option<&str> {
    let (scheme, _) = store.to_str()?.split_once("://")?;
    let mut chars = scheme.chars();
    (chars.next()?.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// Whether `store` names a server rather than a file.
pub fn is_server_url(store: &Path) -> bool {
    scheme(store).is_some_and(|s| SCHEMES.iter().any(|k| s.eq_ignore_ascii_case(k)))
}

/// Whether `store` is a URL, but of a scheme no store has: refused, since taken for a file
/// path it would create files named after it (a password and all) and print it.
pub fn is_unknown_url(store: &Path) -> bool {
    scheme(store).is_some() && !is_server_url(store)
}

/// A session on a server: its fleet and key.
#[derive(Debug, Clone)]
pub struct ServerStore {
    fleet: Fleet,
    key: String,
}

impl ServerStore {
    /// The server session `url` names, with `profile` choosing the key where the URL names
    /// none. Errors never quote the URL (it may hold a password).
    pub fn select(url: &Path, profile: Option<&str>) -> Result<(ServerStore, PathBuf), String> {
        let url = url
            .to_str()
            .ok_or_else(|| "the store URL is not UTF-8".to_owned())?;
        let fleet = Fleet::redis(url).map_err(|e| e.to_string())?;
        let key = match (fleet.url_key(), profile) {
            (Some(key), Some(profile)) if key != profile => {
                return Err(format!(
                    "the store URL names the key {key} and the profile is {profile}; name one of them"
                ));
            }
            (Some(key), _) => key.to_owned(),
            (None, Some(profile)) => profile.to_owned(),
            (None, None) => credlock::DEFAULT_PROFILE.to_owned(),
        };
        let store = fleet.store(&key).map_err(|e| e.to_string())?;
        let location = store.path().to_path_buf();
        Ok((ServerStore { fleet, key }, location))
    }

    /// A store of the session (validated by [`ServerStore::select`]).
    pub fn store(&self) -> Store {
        self.fleet
            .store(&self.key)
            .expect("the key was checked when the store was selected")
    }

    /// What `status` and `doctor` say about the server's persistence: a name (`aof`, `rdb`,
    /// `none`), whether it is enough, and a sentence.
    pub fn persistence(&self) -> Result<(&'static str, bool, String), credlock::Error> {
        let p = self.fleet.persistence()?;
        Ok(if p.aof {
            (
                "aof",
                true,
                "the append-only file is on: saves survive a restart (with appendfsync always, a crash too)".to_owned(),
            )
        } else if p.rdb_saves > 0 {
            (
                "rdb",
                false,
                "RDB snapshots only: a restart loses every session saved since the last snapshot, and each such instance must log in again; turn on appendonly".to_owned(),
            )
        } else {
            (
                "none",
                false,
                "no persistence (no AOF, no RDB snapshot yet): a restart of the server loses every session, and every instance must log in again; turn on appendonly".to_owned(),
            )
        })
    }
}

/// What `doctor` says about replication, always.
pub const REPLICATION: &str = "replication is asynchronous: a failover to a replica that missed the last save brings back a refresh token already rotated; the invalid_grant fallback then deletes only that session and the next call needs a login (docs/fleet.md)";

/// The settings file of a server session (its login settings are remembered on this machine):
/// `<config>/credlock/servers/<the URL without password, made a file name and cut to 80
/// characters>-<a hash of the whole URL, 16 hex digits>.settings.json`. The readable part
/// maps many characters to `_` (`tenant:1` and `tenant_1` alike) and may be cut: the hash
/// keeps each session's file its own, and the name within a file system's 255 bytes.
pub fn settings_path(location: &str) -> PathBuf {
    let readable: String = location
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    credlock::config_dir()
        .unwrap_or_else(|_| PathBuf::from("."))
        .join("credlock")
        .join("servers")
        .join(format!(
            "{readable}-{:016x}.settings.json",
            fnv1a(location.as_bytes())
        ))
}

/// FNV-1a, 64 bits: stable across builds and Rust versions (a file name must be), and
/// enough to tell apart the few sessions one user keeps settings for; no one gains by
/// making two of their own names collide.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_differ_only_in_characters_a_file_name_cannot_hold_have_their_own_settings() {
        let a = settings_path("redis://127.0.0.1:6379/0?key=tenant:1");
        let b = settings_path("redis://127.0.0.1:6379/0?key=tenant_1");
        assert_ne!(a, b);
        assert_eq!(a, settings_path("redis://127.0.0.1:6379/0?key=tenant:1"));
    }

    #[test]
    fn the_settings_file_name_of_a_long_key_fits_a_file_system() {
        let user = "u".repeat(100);
        let long = format!("redis://{user}@127.0.0.1:6379/0?key={}", "k".repeat(200));
        let path = settings_path(&long);
        let name = path.file_name().expect("a name").len();
        assert!(name <= 255, "{name}");
        assert_ne!(
            path,
            settings_path(&format!(
                "redis://{user}@127.0.0.1:6379/0?key={}",
                "k".repeat(199)
            ))
        );
    }
}
