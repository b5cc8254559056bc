//! See Cargo.toml: the very files credlock compiles, checked for an Apple target.
#![forbid(unsafe_code)]

#[path = "../../../src/file/durable.rs"]
pub mod durable;

/// The keychain's errors, as the library has them.
#[path = "../../../src/error/keychain.rs"]
pub mod keychain_problem;

/// `src/protection/keychain.rs`, the Keychain through `apple-native-keyring-store`; its
/// `super` here is this crate, which has the two types it takes from the library's
/// `protection` module (`keys.rs`, which calls it, needs ring, whose C code needs an Apple
/// toolchain).
#[path = "../../../src/protection/keychain.rs"]
#[allow(
    dead_code,
    reason = "the library calls these; the probe only type-checks them"
)]
pub mod keychain;

pub use keychain_problem::KeychainProblem;

/// Why the keychain did not give a key, as the library has it.
#[path = "../../../src/protection/key_failure.rs"]
#[allow(dead_code, reason = "the library reads its fields; the probe only builds it")]
pub mod key_failure;
