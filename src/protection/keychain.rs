//! The OS keychain through the `keyring` ecosystem's maintained stores: Secret Service over
//! pure-Rust D-Bus on Linux and the BSDs, Keychain on macOS, Credential Manager on Windows.
//! Only a 32-byte key is kept there (never the session: Credential Manager caps a secret at
//! 2,560 bytes and macOS's `security` at 4,096). Each call connects afresh on the helper
//! thread of [`super::deadline`], so an abandoned call shares nothing with the next one.

use super::KeychainProblem;
use super::key_failure::KeyFailure;

/// The keychain entries' service name; the entry's user name is the key id.
pub(crate) const SERVICE: &str = "credlock";

/// The key stored under `id`.
pub(crate) fn get(id: &str) -> Result<Vec<u8>, KeyFailure> {
    let entry = entry(id)?;
    entry.get_secret().map_err(failure)
}

/// Stores `secret` under `id`.
pub(crate) fn set(id: &str, secret: &[u8]) -> Result<(), KeyFailure> {
    let entry = entry(id)?;
    entry.set_secret(secret).map_err(failure)
}

fn entry(id: &str) -> Result<keyring_core::Entry, KeyFailure> {
    let store = platform_store().map_err(failure)?;
    keyring_core::Entry::new_in_store(&store, SERVICE, id).map_err(failure)
}

#[cfg(all(unix, not(target_vendor = "apple"), not(target_os = "android")))]
fn platform_store() -> keyring_core::Result<std::sync::Arc<keyring_core::CredentialStore>> {
    Ok(zbus_secret_service_keyring_store::Store::new()?)
}

#[cfg(target_vendor = "apple")]
fn platform_store() -> keyring_core::Result<std::sync::Arc<keyring_core::CredentialStore>> {
    Ok(apple_native_keyring_store::keychain::Store::new()?)
}

#[cfg(windows)]
fn platform_store() -> keyring_core::Result<std::sync::Arc<keyring_core::CredentialStore>> {
    Ok(windows_native_keyring_store::Store::new()?)
}

#[cfg(not(any(unix, windows)))]
fn platform_store() -> keyring_core::Result<std::sync::Arc<keyring_core::CredentialStore>> {
    Err(keyring_core::Error::NotSupportedByStore(
        "no keychain store for this platform".into(),
    ))
}

/// What a keychain error means for the user. The details of a store's errors name services
/// and addresses, never a secret; the two variants that carry the secret's bytes are
/// described without them.
fn failure(e: keyring_core::Error) -> KeyFailure {
    use keyring_core::Error as E;
    let (problem, detail) = match e {
        E::NoEntry => (
            KeychainProblem::KeyMissing,
            "no such entry in the keychain".to_owned(),
        ),
        E::NoStorageAccess(e) => (KeychainProblem::Locked, e.to_string()),
        E::PlatformFailure(e) => (KeychainProblem::Unreachable, e.to_string()),
        E::NoDefaultStore => (KeychainProblem::Unreachable, "no keychain store".to_owned()),
        E::NotSupportedByStore(what) => (KeychainProblem::Unreachable, what),
        E::BadEncoding(_) | E::BadDataFormat(..) => (
            KeychainProblem::Failed,
            "the keychain entry is not a credlock key".to_owned(),
        ),
        other => (KeychainProblem::Failed, other.to_string()),
    };
    KeyFailure { problem, detail }
}
