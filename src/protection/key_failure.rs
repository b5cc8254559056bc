//! Why the keychain did not give (or take) a key: what `keychain.rs` reports and `keys.rs`
//! passes on. A file of its own so that neither imports the other's caller, and so that
//! `.ci/apple-probe` compiles this very type beside `keychain.rs`.

use super::KeychainProblem;

/// Why the keychain did not give (or take) a key.
#[derive(Debug, Clone)]
pub(crate) struct KeyFailure {
    pub(crate) problem: KeychainProblem,
    /// The keychain's own words, without any secret.
    pub(crate) detail: String,
}
