//! See Cargo.toml: the very files credlock compiles, checked for an Apple target.
#![forbid(unsafe_code)]

#[path = "../../../src/durable.rs"]
pub mod durable;
