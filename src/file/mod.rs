//! The session file and its guards: atomic durable writes, the advisory lock on the sidecar
//! `.lock`, the lease file for where locks do not reach, and which filesystem holds the file.
//!
//! Layer 5 of 7 in the order `api/module-graph` checks: it may import `basics`, `session`,
//! `error` and `trace`; not `protection` or `wire`, its siblings on the same level
//! (`protection` uses the session file's format from here, not the other way round).
//!
//! - `session_file.rs`: the file's format, bytes to [`Session`](crate::Session) and back;
//! - `atomic/`: replace a file durably and atomically, read one without seeing half of it;
//! - `durable.rs`: `fsync` per platform (`.ci/apple-probe` includes it by path);
//! - `sidecar_names.rs`: the sidecars' names, unique names;
//! - `checked_open.rs`: directory creation, opening without following links;
//! - `busy.rs`: Windows' "file in use", retried;
//! - `lock.rs`: the exclusive advisory lock, the only place that touches OS locks;
//! - `lease/`: the lease file, its record, fence, heartbeat and breaker;
//! - `filesystem/`: which filesystem holds the file and whether its locks reach other machines.

pub(crate) mod atomic;
pub(crate) mod busy;
pub(crate) mod checked_open;
pub(crate) mod durable;
pub mod filesystem;
pub(crate) mod lease;
pub(crate) mod lock;
pub(crate) mod session_file;
pub(crate) mod sidecar_names;
