//! What the two binaries of `credlock-cli` share: how a store is found and opened from the
//! command line or the environment, and the access-token override. Not a library for others
//! (the `credlock` crate is): this target exists so that `credlock` and
//! `docker-credential-credlock` cannot drift apart.
#![forbid(unsafe_code)]

pub mod config;
pub mod server_store;
