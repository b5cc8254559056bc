//! See Cargo.toml: the very files credlock compiles, checked for an Apple target.
#![forbid(unsafe_code)]

#[path = "../../../src/file/durable.rs"]
pub mod durable;

/// The keychain's errors, as the library has them.
#[path = "../../../src/error/keychain.rs"]
pub mod keychain_problem;

/// `src/protection/keychain.rs`, the Keychain through `apple-native-keyring-store`; its
/// `super` here is this crate, which has the two types it takes from the library's
/// `protection` module (`keys.rs` itself needs ring, whose C code needs an Apple toolchain).
#[path = "../../../src/protection/keychain.rs"]
#[allow(
    dead_code,
    reason = "the library calls these; the probe only type-checks them"
)]
pub mod keychain;

pub use keychain_problem::KeychainProblem;

/// As in `src/protection/keys.rs`.
pub mod keys {
    #[derive(Debug, Clone)]
    pub struct KeyFailure {
        pub problem: super::KeychainProblem,
        pub detail: String,
    }
}
