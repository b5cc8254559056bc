//! One integration binary (linking once is what costs on two cores), a module per behaviour.

mod common;

#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod config_errors;
mod fallback;
#[cfg(all(unix, feature = "cli"))]
mod faults;
mod files;
mod hostile;
mod lease;
mod locking;
#[cfg(feature = "proptest")]
mod model;
#[cfg(feature = "cli")]
mod oidc;
mod processes;
#[cfg(feature = "cli")]
mod proxy;
mod refresh;
mod secrets;
#[cfg(all(unix, feature = "cli"))]
mod twin_mount;
