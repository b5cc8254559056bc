//! The node-local token file of `credlock token --out`: readers on a node read a local file
//! and only `credlock token --out` touches the (possibly network) session store.
//!
//! Whose file it is: only the user running credlock's. The default location's fallback is
//! the shared `/tmp`, kept for the readers that look there; a file someone else put there
//! first is refused with an error that names its owner, never silently used.

use std::path::{Path, PathBuf};

use crate::Failure;

/// `$XDG_RUNTIME_DIR/bt_u<uid>`, else `/tmp/bt_u<uid>` (the WLCG Bearer Token Discovery
/// locations, which htgettoken also writes and token readers look in; literally `/tmp`, not
/// `$TMPDIR`, or readers would not find it), `-<profile>` appended for a profile named with
/// `--profile`. In `/tmp` another user can create the file first: [`write_if_changed`] then
/// refuses it rather than trusting or failing silently on it.
pub fn default_path(profile: Option<&str>) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(shared_fallback_dir);
    let mut name = base_name();
    if let Some(p) = profile.filter(|p| *p != credlock::DEFAULT_PROFILE) {
        name.push('-');
        name.push_str(p);
    }
    dir.join(name)
}

#[cfg(unix)]
fn shared_fallback_dir() -> PathBuf {
    PathBuf::from("/tmp")
}

#[cfg(not(unix))]
fn shared_fallback_dir() -> PathBuf {
    std::env::temp_dir()
}

#[cfg(unix)]
fn base_name() -> String {
    format!("bt_u{}", rustix::process::getuid().as_raw())
}

#[cfg(not(unix))]
fn base_name() -> String {
    "bt_credlock".to_owned()
}

/// Writes `token` and a newline to `path` unless it already holds exactly that (with mode
/// 0600), as a session is saved (`credlock::internal::write_private_file`): temp file (0600)
/// in the same directory, write, fsync, rename, fsync the directory. A reader sees the old
/// token or the new one, never a partial file. Returns whether it wrote.
pub fn write_if_changed(path: &Path, token: &str) -> Result<bool, Failure> {
    refuse_foreign(path)?;
    let content = format!("{token}\n");
    if std::fs::read(path).is_ok_and(|old| old == content.as_bytes()) && private(path) {
        return Ok(false);
    }
    credlock::internal::write_private_file(path, content.as_bytes()).map_err(|e| {
        Failure::Other(format!(
            "could not write the token file {}: {}",
            path.display(),
            e.with_causes()
        ))
    })?;
    Ok(true)
}

/// Refuses (a usage error naming the file) an `--out` path that is the session file `store`
/// or one of its own files: its lock, lease and breaker files, its recorded login end and
/// set-aside names (all `<session>.*`), its temp files (`.<session>.*`) and the settings
/// file. The token written there would replace the session (the refresh token lost) or put
/// a new inode where other processes lock. Both paths are compared with their directories
/// resolved, so `sub/../session.json` or a link to the directory is caught too.
pub fn refuse_session_files(out: &Path, store: &Path) -> Result<(), Failure> {
    let (Some((out_dir, out_name)), Some((store_dir, store_name))) =
        (resolved(out), resolved(store))
    else {
        return Ok(());
    };
    if out_dir != store_dir {
        return Ok(());
    }
    let settings = crate::settings::path_for(store);
    let settings_name = settings
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let family = |name: &str| {
        out_name == name
            || out_name.starts_with(&format!("{name}."))
            || out_name.starts_with(&format!(".{name}."))
    };
    if family(&store_name) || settings_name.as_deref().is_some_and(family) {
        return Err(Failure::Usage(format!(
            "--out {} names the session file or one of its own files (lock, lease, settings, \
             temporary files): the token written there would replace it; write the token \
             file elsewhere",
            out.display()
        )));
    }
    Ok(())
}

/// `path`'s directory, resolved (links and `..` followed) where it exists, and its file name;
/// on Windows and macOS, whose filesystems usually ignore case (and Windows trailing dots
/// and spaces), the name folded so that `SESSION.JSON` is `session.json`.
fn resolved(path: &Path) -> Option<(PathBuf, String)> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let name = if cfg!(any(windows, target_vendor = "apple")) {
        name.trim_end_matches(['.', ' ']).to_lowercase()
    } else {
        name
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir = std::fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .ok()?;
    Some((dir, name))
}

/// A token file that another user owns is neither trusted nor replaced (in `/tmp` anyone can
/// create `bt_u<uid>` before us: its readers would get that user's token).
fn refuse_foreign(path: &Path) -> Result<(), Failure> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::getuid().as_raw();
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.uid() != me => Err(Failure::Other(format!(
                "the token file {} belongs to uid {}, not to you (uid {me}): its readers would get that user's token, so credlock neither uses nor replaces it; remove it (as its owner or root), or write elsewhere with --out FILE or XDG_RUNTIME_DIR (and point readers there with BEARER_TOKEN_FILE)",
                path.display(),
                m.uid()
            ))),
            _ => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Whether the file is readable by its owner only (always true where modes do not exist).
fn private(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path)
            .is_ok_and(|m| m.file_type().is_file() && m.mode() & 0o077 == 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        true
    }
}
