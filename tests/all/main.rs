//! One integration binary (linking once is what costs on two cores), a module per behaviour.

// The tests play the other processes: they lock and rename files behind credlock's back.
#![allow(
    clippy::disallowed_methods,
    reason = "tests lock and rename as other processes would"
)]

mod common;

#[cfg(feature = "tokio")]
mod async_store;

#[cfg(feature = "cli")]
mod cli;
#[cfg(all(unix, feature = "cli"))]
mod cli_unix_tool;
#[cfg(feature = "cli")]
mod config_errors;
#[cfg(all(unix, feature = "cli"))]
mod exit_codes;
mod failure_table;
mod fallback;
#[cfg(all(unix, feature = "cli"))]
mod faults;
mod files;
#[cfg(all(unix, feature = "redis"))]
mod fleet;
#[cfg(all(unix, feature = "redis"))]
mod fleet_bench;
#[cfg(all(unix, feature = "redis", feature = "cli"))]
mod fleet_cli;
mod hostile;
mod import;
#[cfg(all(unix, feature = "cli"))]
mod json_shapes;
#[cfg(all(unix, feature = "cli"))]
mod keychain;
#[cfg(all(windows, feature = "cli"))]
mod keychain_windows;
mod lease;
mod locking;
#[cfg(all(unix, feature = "cli"))]
mod login_browser;
#[cfg(all(unix, feature = "cli"))]
mod login_device;
#[cfg(all(unix, feature = "cli"))]
mod login_many;
#[cfg(all(unix, feature = "cli"))]
mod login_settings;
mod login_store;
mod logout;
#[cfg(feature = "proptest")]
mod model;
#[cfg(feature = "cli")]
mod oidc;
mod processes;
#[cfg(all(unix, feature = "cli"))]
mod profiles;
#[cfg(feature = "cli")]
mod proxy;
mod readers;
mod refresh;
mod rustdoc;
mod secrets;
mod test_kit_login;
#[cfg(feature = "cli")]
mod tls;
#[cfg(all(unix, feature = "cli"))]
mod tools_docker;
#[cfg(all(unix, feature = "cli"))]
mod tools_exec;
#[cfg(all(unix, feature = "cli"))]
mod tools_git;
#[cfg(all(unix, feature = "cli"))]
mod tools_kubectl;
#[cfg(feature = "tracing")]
mod traces;
#[cfg(all(unix, feature = "cli"))]
mod twin_mount;
mod unexpired;
