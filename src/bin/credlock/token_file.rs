//! The node-local token file of `credlock token --out`: readers on a node read a local file
//! and only `credlock token --out` touches the (possibly network) session store.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Failure;

/// `$XDG_RUNTIME_DIR/bt_u<uid>`, else `/tmp/bt_u<uid>` (the WLCG Bearer Token Discovery
/// locations, which htgettoken also writes), `-<profile>` appended for a named profile.
pub fn default_path(profile: Option<&str>) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(std::env::temp_dir);
    let mut name = base_name();
    if let Some(p) = profile.filter(|p| *p != credlock::DEFAULT_PROFILE) {
        name.push('-');
        name.push_str(p);
    }
    dir.join(name)
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
/// 0600): temp file (0600) in the same directory, write, fsync, rename, fsync the directory.
/// A reader sees the old token or the new one, never a partial file. Returns whether it
/// wrote.
pub fn write_if_changed(path: &Path, token: &str) -> Result<bool, Failure> {
    let content = format!("{token}\n");
    if std::fs::read(path).is_ok_and(|old| old == content.as_bytes()) && private(path) {
        return Ok(false);
    }
    let failed = |what: &str, e: std::io::Error| {
        Failure::Other(format!(
            "could not {what} the token file {}: {e}",
            path.display()
        ))
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)
        .map_err(|e| failed("create a temporary file beside", e))?;
    tmp.write_all(content.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| failed("write", e))?;
    #[allow(
        clippy::disallowed_methods,
        reason = "the token file, not the session: written for other tools to read"
    )]
    let persisted = tmp.persist(path);
    persisted.map_err(|e| failed("replace", e.error))?;
    sync_dir(dir).map_err(|e| failed("sync the directory of", e))?;
    Ok(true)
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

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a directory for fsync; the rename is durable with the file.
        let _ = dir;
        Ok(())
    }
}
