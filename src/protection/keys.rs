//! The keys of sealed session files, read from the OS keychain once per process and kept in
//! memory by key id: a refresh, and every read after the first, touches no keychain. A key is
//! written to the keychain only when a store is first protected ([`create`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ring::aead::LessSafeKey;

use super::KeychainProblem;
use super::envelope::{KEY_LEN, aead_key};
use super::key_failure::KeyFailure;

/// The keys this process has read or created, by id.
static KEYS: Mutex<Vec<(String, Arc<LessSafeKey>)>> = Mutex::new(Vec::new());

fn cached(id: &str) -> Option<Arc<LessSafeKey>> {
    let keys = KEYS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    keys.iter()
        .find(|(k, _)| k == id)
        .map(|(_, key)| key.clone())
}

fn remember(id: &str, bytes: &[u8; KEY_LEN]) -> Arc<LessSafeKey> {
    let key = Arc::new(aead_key(bytes));
    let mut keys = KEYS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, known)) = keys.iter().find(|(k, _)| k == id) {
        return known.clone();
    }
    keys.push((id.to_owned(), key.clone()));
    key
}

/// The key `id`: from this process's memory, or else from the keychain, waiting for it at
/// most `deadline`.
pub(crate) fn get(id: &str, deadline: Duration) -> Result<Arc<LessSafeKey>, KeyFailure> {
    if let Some(key) = cached(id) {
        return Ok(key);
    }
    let bytes = fetch(id, deadline)?;
    let bytes: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| KeyFailure {
        problem: KeychainProblem::Failed,
        detail: format!("the keychain entry is not a {KEY_LEN}-byte credlock key"),
    })?;
    Ok(remember(id, &bytes))
}

/// Whether the keychain answers, by looking up an entry that is never there: reachable and
/// unlocked if it says "no such entry" (or, oddly, has one).
pub(crate) fn probe(deadline: Duration) -> Result<(), KeyFailure> {
    match fetch("credlock-probe", deadline) {
        Ok(_) => Ok(()),
        Err(f) if f.problem == KeychainProblem::KeyMissing => Ok(()),
        Err(f) => Err(f),
    }
}

/// A new random key, stored in the keychain under a new random id, read back from it (a
/// keychain that accepts a secret it cannot give back would leave a file nobody can open).
pub(crate) fn create(deadline: Duration) -> Result<(String, Arc<LessSafeKey>), KeyFailure> {
    let rng = ring::rand::SystemRandom::new();
    let mut bytes = [0u8; KEY_LEN];
    let mut id = [0u8; 8];
    let no_randomness = |_| KeyFailure {
        problem: KeychainProblem::Failed,
        detail: "the OS gave no random bytes for a key".to_owned(),
    };
    ring::rand::SecureRandom::fill(&rng, &mut bytes).map_err(no_randomness)?;
    ring::rand::SecureRandom::fill(&rng, &mut id).map_err(no_randomness)?;
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    store(&id, &bytes, deadline)?;
    let back = fetch(&id, deadline)?;
    if back.as_slice() != bytes.as_slice() {
        return Err(KeyFailure {
            problem: KeychainProblem::Failed,
            detail: "the keychain gave back another secret than the key just stored".to_owned(),
        });
    }
    Ok((id.clone(), remember(&id, &bytes)))
}

#[cfg(feature = "keyring")]
fn fetch(id: &str, deadline: Duration) -> Result<Vec<u8>, KeyFailure> {
    let id = id.to_owned();
    super::deadline::within(deadline, move || super::keychain::get(&id))
        .map_err(|missed| missed_failure(missed, deadline))?
}

#[cfg(feature = "keyring")]
fn store(id: &str, bytes: &[u8; KEY_LEN], deadline: Duration) -> Result<(), KeyFailure> {
    let id = id.to_owned();
    let bytes = *bytes;
    super::deadline::within(deadline, move || super::keychain::set(&id, &bytes))
        .map_err(|missed| missed_failure(missed, deadline))?
}

#[cfg(feature = "keyring")]
fn missed_failure(missed: super::deadline::Missed, deadline: Duration) -> KeyFailure {
    match missed {
        super::deadline::Missed::TimedOut => KeyFailure {
            problem: KeychainProblem::TimedOut,
            detail: format!("no answer within {:.1} s", deadline.as_secs_f64()),
        },
        super::deadline::Missed::Failed(why) => KeyFailure {
            problem: KeychainProblem::Failed,
            detail: why.to_owned(),
        },
    }
}

#[cfg(not(feature = "keyring"))]
fn fetch(_id: &str, _deadline: Duration) -> Result<Vec<u8>, KeyFailure> {
    Err(not_built_in())
}

#[cfg(not(feature = "keyring"))]
fn store(_id: &str, _bytes: &[u8; KEY_LEN], _deadline: Duration) -> Result<(), KeyFailure> {
    Err(not_built_in())
}

#[cfg(not(feature = "keyring"))]
fn not_built_in() -> KeyFailure {
    KeyFailure {
        problem: KeychainProblem::NotBuiltIn,
        detail: "credlock was built without its `keyring` feature".to_owned(),
    }
}

/// Puts a key in this process's memory as if read from the keychain: for the tests of sealed
/// stores, which run without a keychain (`internal`, no semver promise).
pub fn remember_key_for_tests(id: &str, bytes: &[u8; KEY_LEN]) {
    remember(id, bytes);
}
