//! The names credlock makes beside a session file: its sidecars (`<file>.lock`, `<file>.lease`,
//! `<file>.lease.break`, any `<file><suffix>`), and unique names and nonces.

use std::path::{Path, PathBuf};

/// The sidecar lock file of a session file: `<path>.lock`.
#[must_use]
pub fn lock_path_for(path: &Path) -> PathBuf {
    with_suffix(path, ".lock")
}

/// The lease file of a session file: `<path>.lease`.
#[must_use]
pub fn lease_path_for(path: &Path) -> PathBuf {
    with_suffix(path, ".lease")
}

/// The breaker lock of a lease file: `<lease>.break` (`<session file>.lease.break`).
#[must_use]
pub(crate) fn break_path_for(lease_path: &Path) -> PathBuf {
    with_suffix(lease_path, ".break")
}

/// `path` with `suffix` appended to its last component (`s.json` + `.lock`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut os = path.as_os_str().to_owned();
    os.push(suffix);
    PathBuf::from(os)
}

/// A value unique among all the names and nonces this machine's processes make: the process
/// id, the time in nanoseconds and a per-process counter, in hex.
pub(crate) fn unique_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{:x}-{c:x}", std::process::id(), t)
}
