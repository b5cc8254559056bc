//! The login settings remembered per profile, beside its session file and apart from it
//! (`<session file stem>.settings.json`): what `login` and `token --login` use when no flags
//! are given, and when and why the last session ended. `logout` keeps them, as aws keeps
//! `~/.aws/config` apart from its SSO cache. A client secret is never stored, only the name
//! of the environment variable that holds it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use credlock::internal::{read_private_file, rfc3339, write_private_file};
use serde::{Deserialize, Serialize};

/// The settings file of the session file `store`: `session.json` → `session.settings.json`.
pub fn path_for(store: &Path) -> PathBuf {
    // A session on a server: its settings are this machine's, in the configuration directory.
    if credlock_cli::server_store::is_server_url(store) {
        return credlock_cli::server_store::settings_path(&store.to_string_lossy());
    }
    let stem = store
        .file_stem()
        .map_or_else(|| "session".into(), std::ffi::OsStr::to_os_string);
    let mut name = stem;
    name.push(".settings.json");
    store.with_file_name(name)
}

/// The whole settings file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// How to log in again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Remembered>,
    /// When and why the last session went (a refused refresh, a logout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_session_end: Option<SessionEnd>,
    /// How the profile's sessions are kept at rest (`keyring` or `none`), as last chosen with
    /// `credlock protect` or `--protect`: the sealed file's header says so only while the
    /// file exists, and a session written after it is gone must not quietly be plain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection: Option<String>,
}

/// The login flags of the last successful login (none of them secret).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Remembered {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    pub client_id: String,
    /// `none`, `basic` or `post`.
    pub client_auth: String,
    /// The name of the variable holding the client secret, never the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// `device`, `browser` or `paste`; none: chosen at each login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_hint: Option<String>,
    /// Extra authorization parameters, `[name, value]` in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<(String, String)>,
}

/// When and why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    /// RFC 3339, UTC.
    pub at: String,
    pub reason: String,
}

/// Why a session ended, as recorded.
pub const REFUSED: &str = "the server refused the refresh token (invalid_grant)";

/// The settings of `store`; none (default) if there is no file. A file that cannot be read or
/// parsed is an error that names it: a login would otherwise silently forget its settings.
pub fn load(store: &Path) -> Result<Settings, String> {
    let path = path_for(store);
    let bytes = read_private_file(&path).map_err(|e| e.with_causes())?;
    match bytes {
        None => Ok(Settings::default()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "the login settings in {} are unusable ({}); fix or delete the file",
                path.display(),
                credlock::internal::describe_json_error(&e)
            )
        }),
    }
}

/// Replaces the settings of `store`, atomically and durably, mode 0600.
pub fn save(store: &Path, settings: &Settings) -> Result<(), String> {
    let mut bytes = serde_json::to_vec_pretty(settings).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    write_private_file(&path_for(store), &bytes).map_err(|e| e.with_causes())
}

/// Records that the session of `store` ended now for `reason`. Best effort: the session is
/// gone either way, and failing the command over the record would hide why; a failure is
/// reported on stderr.
pub fn record_end(store: &Path, reason: &str) {
    let result = load(store).and_then(|mut settings| {
        settings.last_session_end = Some(SessionEnd {
            at: rfc3339(SystemTime::now()),
            reason: reason.to_owned(),
        });
        save(store, &settings)
    });
    if let Err(e) = result {
        eprintln!("credlock: warning: could not record why the session ended: {e}");
    }
}

/// Remembers `protection` (`keyring` or `none`) as the profile's choice for new sessions.
pub fn record_protection(store: &Path, protection: &str) -> Result<(), String> {
    let mut settings = load(store)?;
    if settings.protection.as_deref() == Some(protection) {
        return Ok(());
    }
    settings.protection = Some(protection.to_owned());
    save(store, &settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_file_sits_beside_the_session_file_under_its_own_name() {
        assert_eq!(
            path_for(Path::new("/c/credlock/profiles/work/session.json")),
            Path::new("/c/credlock/profiles/work/session.settings.json")
        );
        assert_eq!(path_for(Path::new("/t/s")), Path::new("/t/s.settings.json"));
    }

    #[test]
    fn settings_round_trip_and_a_file_without_login_settings_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("session.json");
        assert_eq!(load(&store).unwrap(), Settings::default());
        let settings = Settings {
            login: Some(Remembered {
                issuer: Some("https://id.example".into()),
                client_id: "cli".into(),
                client_auth: "basic".into(),
                client_secret_env: Some("CLI_SECRET".into()),
                params: vec![("acr_values".into(), "mfa".into())],
                ..Remembered::default()
            }),
            last_session_end: None,
            protection: Some("keyring".into()),
        };
        save(&store, &settings).unwrap();
        assert_eq!(load(&store).unwrap(), settings);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path_for(&store))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        record_end(&store, REFUSED);
        let after = load(&store).unwrap();
        assert_eq!(after.login, settings.login);
        assert_eq!(after.protection.as_deref(), Some("keyring"));
        assert_eq!(after.last_session_end.unwrap().reason, REFUSED);
    }
}
