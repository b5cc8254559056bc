//! Protection of the session file at rest: the whole session sealed with AES-256-GCM under a
//! key kept in the OS keychain, opt-in, and never silently undone.
//!
//! - `envelope.rs`: the sealed file's format and its AEAD (pure, fuzzed);
//! - `keys.rs`: the keys, read from the keychain once per process;
//! - `keychain.rs`: the keychain itself (the `keyring` feature);
//! - `key_failure.rs`: why the keychain did not give or take a key;
//! - `deadline.rs`: every keychain call with a deadline.
//!
//! The file stays the locked, atomically replaced source of truth; only its bytes change. The
//! file's own header decides how it is read; a store's [`Protection`] decides how a new
//! session is written; a refresh keeps the protection (and the key) of the file it replaces.
//!
//! Layer 5 of 7 in the order `api/module-graph` checks: it may import `basics`, `session`,
//! `error` and `trace`, and of `file`, its sibling, the session file's format (the plaintext
//! is a session file); not `wire`. The store hands it the file's bytes.

#[cfg(any(feature = "keyring", test))]
mod deadline;
pub(crate) mod envelope;
mod key_failure;
#[cfg(feature = "keyring")]
mod keychain;
pub(crate) mod keys;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ring::aead::LessSafeKey;

use crate::error::Error;
pub use crate::error::KeychainProblem;
use crate::session::model::Session;
use envelope::Unreadable;

/// How long a keychain call may take before it is given up (an unanswered unlock prompt, an
/// agent that never replies): [`crate::Store::with_keychain_timeout`] changes it.
pub const DEFAULT_KEYCHAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How a store protects a session file it writes anew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protection {
    /// Plain JSON, readable by the file's owner only (mode 0600).
    None,
    /// Sealed with AES-256-GCM under a 32-byte key kept in the OS keychain (Secret Service,
    /// Keychain, Credential Manager); the file holds no token in the clear.
    Keyring,
}

impl Protection {
    /// The name the CLI and JSON use: `none` or `keyring`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Protection::None => "none",
            Protection::Keyring => "keyring",
        }
    }
}

impl std::fmt::Display for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Protection {
    type Err = String;
    fn from_str(s: &str) -> Result<Protection, String> {
        match s {
            "none" => Ok(Protection::None),
            "keyring" => Ok(Protection::Keyring),
            other => Err(format!(
                "`{other}` is not a protection: use keyring or none"
            )),
        }
    }
}

/// How a stored session file is protected, as its header says (no key is needed to tell).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileProtection {
    /// Plain JSON.
    None,
    /// Sealed under key `key_id` of the OS keychain with `scheme`.
    Keyring {
        /// The key's id: its user name under the service `credlock` in the keychain.
        key_id: String,
        /// The AEAD scheme (`aes-256-gcm`).
        scheme: &'static str,
    },
}

impl FileProtection {
    /// The protection a store would ask for to write a file like this one.
    #[must_use]
    pub fn kind(&self) -> Protection {
        match self {
            FileProtection::None => Protection::None,
            FileProtection::Keyring { .. } => Protection::Keyring,
        }
    }
}

/// `none`, or `keyring (aes-256-gcm, key <id>)`.
impl std::fmt::Display for FileProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProtection::None => f.write_str("none"),
            FileProtection::Keyring { key_id, scheme } => {
                write!(f, "keyring ({scheme}, key {key_id})")
            }
        }
    }
}

/// How to write a session: in the clear, or sealed under a key.
#[derive(Clone)]
pub(crate) enum Sealing {
    Plain,
    Key { id: String, key: Arc<LessSafeKey> },
}

/// The protection of a session file, from its bytes (only the header is looked at).
pub(crate) fn protection_of(bytes: &[u8], path: &Path) -> Result<FileProtection, Error> {
    if !envelope::is_sealed(bytes) {
        return Ok(FileProtection::None);
    }
    let (header, _, _) = envelope::parse_header(bytes).map_err(|e| unreadable(e, path, ""))?;
    Ok(FileProtection::Keyring {
        key_id: header.key_id,
        scheme: envelope::SCHEME,
    })
}

/// The session in a session file's bytes, sealed or not: a sealed file's key comes from this
/// process's memory or the keychain (waiting at most `deadline`).
pub(crate) fn decode(bytes: &[u8], path: &Path, deadline: Duration) -> Result<Session, Error> {
    if !envelope::is_sealed(bytes) {
        return Session::from_json(bytes, path);
    }
    let (header, _, _) = envelope::parse_header(bytes).map_err(|e| unreadable(e, path, ""))?;
    let key =
        keys::get(&header.key_id, deadline).map_err(|f| keychain_error(f, path, &header.key_id))?;
    let plaintext = envelope::open(&key, bytes).map_err(|e| unreadable(e, path, &header.key_id))?;
    // A sealed file holds a whole session file's JSON: the same reader, the same errors.
    Session::from_json(&plaintext, path)
}

/// The sealing a file's bytes call for, to write its successor the same way: its key from
/// this process's memory or the keychain (never a new key).
pub(crate) fn sealing_of(bytes: &[u8], path: &Path, deadline: Duration) -> Result<Sealing, Error> {
    match protection_of(bytes, path)? {
        FileProtection::None => Ok(Sealing::Plain),
        FileProtection::Keyring { key_id, .. } => {
            let key = keys::get(&key_id, deadline).map_err(|f| keychain_error(f, path, &key_id))?;
            Ok(Sealing::Key { id: key_id, key })
        }
    }
}

/// A new key in the keychain, for a store protected for the first time.
pub(crate) fn new_sealing(path: &Path, deadline: Duration) -> Result<Sealing, Error> {
    let (id, key) = keys::create(deadline).map_err(|f| keychain_error(f, path, "(new)"))?;
    Ok(Sealing::Key { id, key })
}

/// Whether the keychain answers now (a lookup of an entry that is never there).
pub(crate) fn probe_keychain(path: &Path, deadline: Duration) -> Result<(), Error> {
    keys::probe(deadline).map_err(|f| keychain_error(f, path, "(new)"))
}

/// The bytes of a session file holding `session`, sealed as `sealing` says.
pub(crate) fn encode(session: &Session, sealing: &Sealing, path: &Path) -> Result<Vec<u8>, Error> {
    let json = session.to_json();
    match sealing {
        Sealing::Plain => Ok(json),
        Sealing::Key { id, key } => envelope::seal(key, id, &json).map_err(|reason| Error::Io {
            action: "encrypt the session for",
            path: path.to_path_buf(),
            source: std::io::Error::other(reason),
        }),
    }
}

fn keychain_error(f: key_failure::KeyFailure, path: &Path, key_id: &str) -> Error {
    Error::Keychain {
        path: path.to_path_buf(),
        key_id: key_id.to_owned(),
        problem: f.problem,
        detail: f.detail,
    }
}

fn unreadable(e: Unreadable, path: &Path, key_id: &str) -> Error {
    match e {
        Unreadable::Malformed(why) => Error::Corrupt {
            path: path.to_path_buf(),
            reason: format!("a sealed session file, but {why}"),
        },
        Unreadable::NewerVersion(v) => Error::UnsupportedProtection {
            path: path.to_path_buf(),
            scheme: format!("credlock-sealed/{v}"),
        },
        Unreadable::UnknownScheme(scheme) => Error::UnsupportedProtection {
            path: path.to_path_buf(),
            scheme,
        },
        Unreadable::DoesNotDecrypt => Error::Undecryptable {
            path: path.to_path_buf(),
            key_id: key_id.to_owned(),
        },
    }
}
