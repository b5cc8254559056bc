//! One integration binary (linking once is what costs on two cores), a module per behaviour:
//! the tests that run the `credlock` and `docker-credential-credlock` binaries. The library's
//! own tests are in the top `tests/all/`; both suites share its helpers (`common`).

// The tests play the other processes: they lock and rename files behind credlock's back.
#![allow(
    clippy::disallowed_methods,
    reason = "tests lock and rename as other processes would"
)]

mod common;

mod cli;
#[cfg(unix)]
mod cli_unix_tool;
mod client_credentials_cli;
mod config_errors;
#[cfg(unix)]
mod exit_codes;
mod failure_table;
#[cfg(unix)]
mod faults;
mod files;
#[cfg(unix)]
mod fleet_cli;
#[cfg(target_os = "linux")]
mod fleet_hosts;
#[cfg(unix)]
mod json_shapes;
#[cfg(unix)]
mod keychain;
#[cfg(windows)]
mod keychain_windows;
mod lease;
#[cfg(unix)]
mod login_browser;
#[cfg(unix)]
mod login_device;
#[cfg(unix)]
mod login_many;
#[cfg(unix)]
mod login_settings;
mod oidc;
#[cfg(unix)]
mod profiles;
mod proxy;
mod secrets;
mod tls;
#[cfg(unix)]
mod tools_docker;
#[cfg(unix)]
mod tools_exec;
#[cfg(unix)]
mod tools_git;
#[cfg(unix)]
mod tools_kubectl;
#[cfg(unix)]
mod twin_mount;
