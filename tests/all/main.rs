//! One integration binary (linking once is what costs on two cores), a module per behaviour.
//! The library's tests, through its public API and the test kit (`credlock-test`); the tests
//! that run the `credlock` binaries live in `crates/credlock-cli/tests/all/`, on the same
//! helpers (`common`).

// The tests play the other processes: they lock and rename files behind credlock's back.
#![allow(
    clippy::disallowed_methods,
    reason = "tests lock and rename as other processes would"
)]

mod common;

#[cfg(feature = "tokio")]
mod async_store;

mod client_credentials;
mod failure_table;
mod fallback;
mod files;
#[cfg(all(unix, feature = "redis"))]
mod fleet;
#[cfg(all(unix, feature = "redis"))]
mod fleet_bench;
#[cfg(all(unix, feature = "redis"))]
mod fleet_faults;
mod hostile;
mod import;
mod lease;
mod locking;
mod login_store;
mod logout;
mod model;
mod processes;
mod protection;
mod proxy;
mod readers;
mod refresh;
mod rustdoc;
mod secrets;
mod test_kit_login;
mod tls;
#[cfg(feature = "tracing")]
mod traces;
mod unexpired;
