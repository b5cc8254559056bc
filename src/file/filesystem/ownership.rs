//! What would make credlock refuse a session's files because another user could control them.

use std::path::{Path, PathBuf};

/// What would make credlock refuse the files of the session at `session_path` because
/// another user could control them, one sentence each (empty if nothing): the directory is
/// writable by every user without the sticky bit, or the session file, its lock file, its
/// lease, its breaker lock or its `.login-ended` record exists and is owned by neither the current user nor root. For
/// `credlock doctor`; the store refuses the same things on use (checked there on the opened
/// descriptor, not by path). Always empty on non-Unix platforms.
#[must_use]
pub fn ownership_problems(session_path: &Path) -> Vec<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let me = rustix::process::geteuid().as_raw();
        let mut problems = Vec::new();
        let dir = match session_path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Ok(m) = std::fs::metadata(&dir) {
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                problems.push(format!(
                    "the directory {} is writable by every user and has no sticky bit (mode {mode:04o}): any user could replace the session file; `chmod o-w` it",
                    dir.display()
                ));
            }
        }
        let lease = crate::file::sidecar_names::lease_path_for(session_path);
        let files = [
            session_path.to_path_buf(),
            crate::file::sidecar_names::lock_path_for(session_path),
            crate::file::sidecar_names::break_path_for(&lease),
            lease,
            crate::file::sidecar_names::with_suffix(session_path, ".login-ended"),
        ];
        for f in files {
            if let Ok(m) = std::fs::symlink_metadata(&f)
                && m.uid() != me
                && m.uid() != 0
            {
                problems.push(format!(
                    "{} is owned by uid {}, not by the current user (uid {me}): credlock refuses it",
                    f.display(),
                    m.uid()
                ));
            }
        }
        problems
    }
    #[cfg(not(unix))]
    {
        let _ = session_path;
        Vec::new()
    }
}
