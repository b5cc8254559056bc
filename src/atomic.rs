//! Durable atomic replacement of a small file, and reads that never see half of one.
//!
//! Writers never modify the session file in place: they write a temp file in the same
//! directory, `sync_all` it, rename it over the target and fsync the directory. A reader that
//! opens the path gets either the old inode or the new one, complete. (Network and FUSE
//! filesystems can still serve a torn read through their caches; the store re-reads.)

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// A session file larger than this is not a session: refuse it instead of reading it all.
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// What a read found.
#[derive(Debug)]
pub(crate) struct FileContent {
    pub(crate) bytes: Vec<u8>,
    /// Permission bits other than the owner's that were set and have been cleared (unix).
    pub(crate) tightened_from: Option<u32>,
}

/// Reads the file at `path`; `Ok(None)` if there is none.
///
/// Refuses symbolic links, non-regular files and files over [`MAX_FILE_BYTES`]. A file that
/// group or others can read is tightened to 0600 (best effort: it may not be ours).
pub(crate) fn read(path: &Path) -> Result<Option<FileContent>, Error> {
    let file = match open_no_follow(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if is_symlink_error(&e) => {
            return Err(Error::NotASessionFile {
                path: path.to_path_buf(),
                reason: "it is a symbolic link, which credlock does not follow".into(),
            });
        }
        Err(e) => return Err(Error::io("open the session file", path)(e)),
    };
    let meta = file
        .metadata()
        .map_err(Error::io("inspect the session file", path))?;
    if !meta.is_file() {
        return Err(Error::NotASessionFile {
            path: path.to_path_buf(),
            reason: describe_file_type(&meta),
        });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0) + 1);
    (&file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Error::io("read the session file", path))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    Ok(Some(FileContent {
        bytes,
        tightened_from: tighten(&file, &meta),
    }))
}

fn too_large(path: &Path) -> Error {
    Error::NotASessionFile {
        path: path.to_path_buf(),
        reason: format!("it is larger than {MAX_FILE_BYTES} bytes"),
    }
}

/// Replaces `path` with `bytes`, durably: temp file (0600) in the same directory, write,
/// `sync_all`, rename, fsync the directory. Creates a missing directory 0700. On any error the
/// temp file is removed and the old file is untouched. Leftover temp files of killed writers
/// are removed first.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let (dir, name) = split(path)?;
    ensure_dir(&dir)?;
    refuse_non_regular_target(path)?;
    remove_leftover_temp_files(&dir, &name);
    let mut tmp = create_marked_temp_file(&dir, &name)?;
    tmp.write_all(bytes)
        .map_err(Error::io("write a temp file in", &dir))?;
    tmp.as_file()
        .sync_all()
        .map_err(Error::io("sync a temp file in", &dir))?;
    tmp.persist(path).map_err(|e| Error::Io {
        action: "rename the new session file over",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(&dir)
}

/// Creates the temp file and marks it in use (an `flock` held until it is closed), so that
/// another writer's sweep leaves it alone. A sweep can still win in the instant between
/// creation and marking; then the file we hold is no longer linked at its path, and we start
/// over with a new one.
fn create_marked_temp_file(dir: &Path, name: &str) -> Result<tempfile::NamedTempFile, Error> {
    let prefix = temp_prefix(name);
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(TEMP_SUFFIX);
    // 0600 whatever the umask. Windows has no mode bits: the file inherits the ACL of the
    // directory (normally the user's profile).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600));
    let mut attempts = 0;
    loop {
        attempts += 1;
        let tmp = builder
            .tempfile_in(dir)
            .map_err(Error::io("create a temp file in", dir))?;
        if crate::lock::try_hold_until_closed(tmp.as_file()) && still_linked(&tmp) {
            return Ok(tmp);
        }
        if attempts >= 5 {
            return Err(Error::Io {
                action: "keep a temp file (another process keeps removing it) in",
                path: dir.to_path_buf(),
                source: std::io::Error::other("temp file swept by a concurrent writer"),
            });
        }
    }
}

/// Whether the temp file's path still names the file we hold.
fn still_linked(tmp: &tempfile::NamedTempFile) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (
            tmp.as_file().metadata(),
            std::fs::symlink_metadata(tmp.path()),
        ) {
            (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tmp;
        true
    }
}

/// Removes `path`; `Ok(false)` if it was not there. Refuses to remove a symlink's target or
/// a directory: only a regular file is removed.
pub(crate) fn remove(path: &Path) -> Result<bool, Error> {
    let (dir, _) = split(path)?;
    if !regular_file_exists(path)? {
        return Ok(false);
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("delete the session file", path)(e)),
    }
    sync_dir(&dir)?;
    Ok(true)
}

/// `Ok(false)` if nothing is at `path`, `Ok(true)` for a regular file, an error for anything
/// else (a symlink is not followed, a directory is not removed).
fn regular_file_exists(path: &Path) -> Result<bool, Error> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("inspect the session file", path)(e)),
        Ok(m) if !m.is_file() => Err(Error::NotASessionFile {
            path: path.to_path_buf(),
            reason: describe_file_type(&m),
        }),
        Ok(_) => Ok(true),
    }
}

/// Removes `path` only if its content still satisfies `still_the_one` when removed: the file
/// is renamed aside first (one atomic step that no writer can interleave with), checked, and
/// deleted, or put back with `link` (which will not replace a newer file saved meanwhile).
/// Returns whether it was removed. Between the rename and the put-back, a reader finds no
/// file; that happens only when a writer raced the delete.
pub(crate) fn remove_if(path: &Path, still_the_one: impl Fn(&[u8]) -> bool) -> Result<bool, Error> {
    let (dir, name) = split(path)?;
    if !regular_file_exists(path)? {
        return Ok(false);
    }
    // Named like a temp file, so that a process killed right here leaves something the
    // next write sweeps.
    let aside = dir.join(format!(
        "{}{}-{}{DELETING_MARK}{TEMP_SUFFIX}",
        temp_prefix(&name),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("delete the session file", path)(e)),
    }
    let matches = std::fs::read(&aside).is_ok_and(|bytes| still_the_one(&bytes));
    if !matches {
        // A writer got in first: put its session back, unless an even newer one is there.
        let _ = std::fs::hard_link(&aside, path);
    }
    let _ = std::fs::remove_file(&aside);
    sync_dir(&dir)?;
    Ok(matches)
}

const TEMP_SUFFIX: &str = ".tmp";
/// Marks the temp-like name of a file that [`remove_if`] renamed aside.
const DELETING_MARK: &str = "-deleting";

fn temp_prefix(name: &str) -> String {
    format!(".{name}.")
}

fn split(path: &Path) -> Result<(PathBuf, String), Error> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::NotASessionFile {
            path: path.to_path_buf(),
            reason: "the path has no UTF-8 file name".into(),
        })?
        .to_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

fn refuse_non_regular_target(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() => Err(Error::NotASessionFile {
            path: path.to_path_buf(),
            reason: describe_file_type(&m),
        }),
        _ => Ok(()),
    }
}

fn describe_file_type(m: &std::fs::Metadata) -> String {
    if m.is_symlink() {
        "it is a symbolic link, which credlock does not follow".into()
    } else if m.is_dir() {
        "it is a directory".into()
    } else {
        "it is not a regular file".into()
    }
}

/// Creates the directory (and missing parents) with mode 0700.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(Error::io("create the directory", dir))
}

/// Removes temp files that a killed writer left behind. A temp file whose writer is alive is
/// locked by it and kept. Best effort: a failure here must not fail the write.
fn remove_leftover_temp_files(dir: &Path, name: &str) {
    let prefix = temp_prefix(name);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        if !(n.starts_with(&prefix) && n.ends_with(TEMP_SUFFIX)) {
            continue;
        }
        let p = entry.path();
        let Ok(f) = open_no_follow(&p, true) else {
            continue;
        };
        // Holding the lock while unlinking: a writer that marks its file after this sees it
        // unlinked and starts over (see `create_marked_temp_file`).
        if crate::lock::try_hold_until_closed(&f) {
            let _removed = std::fs::remove_file(&p);
        }
        drop(f);
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("sync the directory", dir))
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a directory as a file; NTFS journals the rename itself.
        let _ = dir;
        Ok(())
    }
}

/// Opens without following a symlink, and without blocking on a FIFO (which is then refused
/// as not a regular file).
fn open_no_follow(path: &Path, write: bool) -> std::io::Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(write);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut opts,
        (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
    );
    opts.open(path)
}

fn is_symlink_error(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

#[cfg(unix)]
fn tighten(file: &File, meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return None;
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))
        .ok()
        .map(|()| mode)
}

#[cfg(not(unix))]
fn tighten(_file: &File, _meta: &std::fs::Metadata) -> Option<u32> {
    None
}

/// Whether a regular file is at `path` (a symbolic link or a directory there is an error),
/// without opening or creating anything.
pub(crate) fn exists(path: &Path) -> Result<bool, Error> {
    regular_file_exists(path)
}

/// Whether a compare-and-delete ([`remove_if`]) of `path` may be under way: the file it
/// renames aside is there, and was renamed recently (one left by a killed process is swept
/// by the next write, and must not slow every "no session" answer until then). A reader that
/// finds no file then must not conclude "no session" yet: the file may be put back in a
/// moment.
pub(crate) fn delete_in_progress(path: &Path) -> bool {
    let Ok((dir, name)) = split(path) else {
        return false;
    };
    let prefix = temp_prefix(&name);
    let suffix = format!("{DELETING_MARK}{TEMP_SUFFIX}");
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&suffix))
                && e.metadata().is_ok_and(|m| renamed_recently(&m))
        })
    })
}

/// A delete in progress holds the file aside for milliseconds; ten seconds covers a paused
/// process and a slow network filesystem.
const ASIDE_IS_RECENT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the file's inode changed (a rename counts, on Unix) within [`ASIDE_IS_RECENT`].
fn renamed_recently(meta: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    let changed = {
        use std::os::unix::fs::MetadataExt;
        u64::try_from(meta.ctime())
            .ok()
            .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
    };
    // Windows keeps the modification time across a rename: the best available sign.
    #[cfg(not(unix))]
    let changed = meta.modified().ok();
    changed.is_some_and(|t| {
        std::time::SystemTime::now()
            .duration_since(t)
            .map_or(true, |age| age < ASIDE_IS_RECENT)
    })
}

/// The permission bits of a file, where the platform has them.
pub(crate) fn mode_of(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leftover_temp_file_is_removed_by_the_next_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.json");
        let leftover = dir.path().join(".session.json.abc123.tmp");
        std::fs::write(&leftover, b"half").expect("write");
        write(&path, b"{}").expect("write");
        assert!(!leftover.exists());
        assert_eq!(std::fs::read(&path).expect("read"), b"{}");
    }

    #[test]
    fn a_locked_temp_file_of_a_live_writer_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.json");
        let live = dir.path().join(".session.json.live00.tmp");
        std::fs::write(&live, b"in progress").expect("write");
        let mut lock = fd_lock::RwLock::new(open_no_follow(&live, true).expect("open"));
        let _guard = lock.try_write().expect("lock");
        write(&path, b"{}").expect("write");
        assert!(live.exists());
    }

    #[test]
    fn remove_if_deletes_only_what_still_matches_and_puts_the_rest_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.json");
        std::fs::write(&path, b"newer").expect("write");
        assert!(!remove_if(&path, |b| b == b"failed").expect("io"));
        assert_eq!(std::fs::read(&path).expect("kept"), b"newer");
        assert!(remove_if(&path, |b| b == b"newer").expect("io"));
        assert!(!path.exists());
        assert!(
            !remove_if(&path, |_| true).expect("io"),
            "nothing to remove"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("ls").count(),
            0,
            "nothing left aside"
        );
    }

    #[test]
    fn files_of_other_names_are_not_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let other = dir.path().join(".other.json.abc.tmp");
        std::fs::write(&other, b"x").expect("write");
        write(&dir.path().join("session.json"), b"{}").expect("write");
        assert!(other.exists());
    }
}
