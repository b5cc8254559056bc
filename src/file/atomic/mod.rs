//! Durable atomic replacement of a small file, and reads that never see half of one.
//!
//! Writers never modify the session file in place: they write a temp file in the same
//! directory, `sync_all` it, rename it over the target and fsync the directory. A reader that
//! opens the path gets either the old inode or the new one, complete. (Network and FUSE
//! filesystems can still serve a torn read through their caches; the store re-reads.)
//!
//! - `mod.rs`: reads, writes and plain deletes;
//! - `remove_if.rs`: compare-and-delete, and how readers tell one in progress;
//! - `put_back.rs`: putting a set-aside file back without replacing a newer one.

mod put_back;
mod remove_if;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::Error;
use crate::file::checked_open::{
    check_dir, check_dir_of, check_regular_and_owned, ensure_dir, open_no_follow, read_checked,
    split, sync_dir,
};
pub(crate) use put_back::put_back;
pub(crate) use remove_if::{delete_in_progress, left_aside, remove_if};

/// A session file larger than this is not a session: refuse it instead of reading it all.
pub(crate) const MAX_FILE_BYTES: u64 = crate::session::model::MAX_SESSION_FILE_BYTES;

/// What a read found.
#[derive(Debug)]
pub(crate) struct FileContent {
    pub(crate) bytes: Vec<u8>,
    /// Permission bits other than the owner's that were set and have been cleared (unix).
    pub(crate) tightened_from: Option<u32>,
}

/// Reads the file at `path`; `Ok(None)` if there is none.
///
/// Refuses symbolic links, non-regular files, files over [`MAX_FILE_BYTES`], a file owned by
/// another user and a directory writable by others without the sticky bit (see
/// [`crate::file::checked_open::open_checked`]). A file that group or others can read is tightened to 0600.
pub(crate) fn read(path: &Path) -> Result<Option<FileContent>, Error> {
    let Some((file, meta, bytes)) = read_checked(path, MAX_FILE_BYTES, "read the session file")?
    else {
        return Ok(None);
    };
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
    crate::trace::Span::save(path).run(|| write_checked(path, bytes, None).map(|_| ()))
}

/// Replaces a file of a program's own beside its session (a CLI's settings) as a session is
/// saved: a temp file (0600) in the same directory, `sync_all`, rename, directory sync, and the
/// same checks (no symbolic link followed, the owner, the directory).
///
/// # Errors
/// As a session save: [`Error::Io`] naming the step, [`Error::NotASessionFile`] for a
/// symbolic link or another non-regular file at `path`, an ownership or directory error.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write(path, bytes)
}

/// Reads a file of a program's own beside its session as a session is read: `Ok(None)` if
/// there is none; the same checks (no symbolic link, the owner, at most 1 MiB), and a file
/// group or others can read is tightened to 0600.
///
/// # Errors
/// As a session read: [`Error::Io`], [`Error::NotASessionFile`], an ownership or directory
/// error.
pub fn read_private_file(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    read(path).map(|c| c.map(|c| c.bytes))
}

/// As [`write`], but only if what `path` holds right before the rename (its bytes, `None` if
/// there is no file) satisfies `still_ok`; `Ok(false)`, and nothing changed, if not.
///
/// The check reads the file after the new content is written and synced, so the window in
/// which another writer can replace the file unseen is the time between that read and the
/// rename: nothing else excludes a writer that takes no lock, or whose lock does not reach
/// this machine (then the rename replaces what it saved).
pub(crate) fn write_if(
    path: &Path,
    bytes: &[u8],
    still_ok: impl Fn(Option<&[u8]>) -> bool,
) -> Result<bool, Error> {
    crate::trace::Span::save(path).run(|| write_checked(path, bytes, Some(&still_ok)))
}

/// A check of what a file holds right before it is replaced (`None`: no file).
type StillOk<'a> = &'a dyn Fn(Option<&[u8]>) -> bool;

fn write_checked(path: &Path, bytes: &[u8], still_ok: Option<StillOk<'_>>) -> Result<bool, Error> {
    let (dir, name) = split(path)?;
    ensure_dir(&dir)?;
    check_dir(&dir)?;
    refuse_non_regular_target(path)?;
    remove_leftover_temp_files(&dir, &name);
    let mut tmp = create_marked_temp_file(&dir, &name)?;
    tmp.write_all(bytes)
        .map_err(Error::io("write a temp file in", &dir))?;
    crate::file::durable::sync_durably(tmp.as_file())
        .map_err(Error::io("sync a temp file in", &dir))?;
    if let Some(still_ok) = still_ok {
        let current = read(path)?;
        if !still_ok(current.as_ref().map(|c| c.bytes.as_slice())) {
            // Dropping the temp file removes it.
            return Ok(false);
        }
    }
    persist_patiently(tmp, path)?;
    sync_dir(&dir)?;
    Ok(true)
}

/// Renames `tmp` over `path`. Where a rename over a file another handle has open is refused
/// (Windows without POSIX rename semantics), tries again while readers come and go: they hold
/// the file for microseconds, and never block each other's renames on Unix.
fn persist_patiently(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), Error> {
    use crate::basics::wait::{Attempt, Backoff, Waited};
    // A refused rename hands the temp file back, for the next attempt.
    let mut tmp = Some(tmp);
    let attempt = || {
        // Only a rename that went through leaves no file, and that ends the wait.
        let Some(file) = tmp.take() else {
            return Attempt::Done(Err(std::io::Error::other("the temp file is gone")));
        };
        #[allow(
            clippy::disallowed_methods,
            reason = "the one rename over the session file"
        )]
        let persisted = file.persist(path);
        match persisted {
            Ok(_) => Attempt::Done(Ok(())),
            Err(e) if crate::file::busy::is_busy(&e.error) => {
                tmp = Some(e.file);
                Attempt::Pending(e.error)
            }
            Err(e) => Attempt::Done(Err(e.error)),
        }
    };
    let pauses = Backoff::doubling(
        std::time::Duration::from_micros(500),
        std::time::Duration::from_millis(50),
    );
    let refused =
        match crate::basics::wait::until(crate::file::busy::PATIENCE, pauses, attempt, |_| {
            None::<std::convert::Infallible>
        }) {
            Waited::Done(Ok(())) => return Ok(()),
            Waited::Done(Err(e)) | Waited::TimedOut(_, e) => e,
            Waited::Stopped(never, _) => match never {},
        };
    Err(Error::Io {
        action: "rename the new session file over",
        path: path.to_path_buf(),
        source: refused,
    })
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
        if crate::file::lock::hold_until_closed(tmp.as_file()) && still_linked(&tmp) {
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

/// Removes `path`; `Ok(false)` if it was not there. Refuses to remove a symlink's target, a
/// directory or another user's file: only a regular file of ours is removed.
pub(crate) fn remove(path: &Path) -> Result<bool, Error> {
    let (dir, _) = split(path)?;
    if !regular_file_exists(path)? {
        return Ok(false);
    }
    match crate::file::busy::retry_while_busy(|| std::fs::remove_file(path)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("delete the session file", path)(e)),
    }
    sync_dir(&dir)?;
    Ok(true)
}

/// `Ok(false)` if nothing is at `path`, `Ok(true)` for a regular file, an error for anything
/// else (a symlink is not followed, a directory is not removed).
pub(crate) fn regular_file_exists(path: &Path) -> Result<bool, Error> {
    check_dir_of(path)?;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("inspect the session file", path)(e)),
        Ok(m) => check_regular_and_owned(&m, path).map(|()| true),
    }
}

/// Whether a regular file is at `path` (a symbolic link or a directory there is an error),
/// without opening or creating anything.
pub(crate) fn exists(path: &Path) -> Result<bool, Error> {
    regular_file_exists(path)
}

/// Renames `from` to `to` (replacing what is there, as a rename does): every rename of credlock's
/// besides [`write`]'s goes through here (a compare-and-delete setting the session aside, the
/// lease setting a stale lease aside).
#[allow(
    clippy::disallowed_methods,
    reason = "the atomic module owns every rename"
)]
pub(crate) fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)
}

const TEMP_SUFFIX: &str = ".tmp";

pub(crate) fn temp_prefix(name: &str) -> String {
    format!(".{name}.")
}

/// A file already at the path must be a regular file of ours: a save does not replace another
/// user's file any more than a read uses it.
fn refuse_non_regular_target(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => check_regular_and_owned(&m, path),
        _ => Ok(()),
    }
}

/// Removes temp files that a killed writer left behind. A temp file whose writer is alive is
/// locked by it and kept. Best effort: a failure here must not fail the write.
fn remove_leftover_temp_files(dir: &Path, name: &str) {
    for p in temp_files(dir, name) {
        let Ok(f) = open_no_follow(&p, true) else {
            continue;
        };
        // Holding the lock while unlinking: a writer that marks its file after this sees it
        // unlinked and starts over (see `create_marked_temp_file`).
        if crate::file::lock::hold_until_closed(&f) {
            let _removed = std::fs::remove_file(&p);
        }
        drop(f);
    }
}

/// The temp files of writers of `dir/name`, live or dead.
fn temp_files(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    files_named(dir, &temp_prefix(name), TEMP_SUFFIX)
}

/// The files in `dir` whose names start with `prefix` and end with `suffix` (none if `dir`
/// cannot be listed: a sweep or a look for work in progress is best effort).
pub(crate) fn files_named(dir: &Path, prefix: &str, suffix: &str) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .map(|e| e.path())
        .collect()
}

/// Whether a write of `path` is under way: a temp file whose writer still holds its mark (see
/// [`create_marked_temp_file`]; one left by a killed writer is not). Windows without POSIX
/// rename semantics (and Wine) refuses to rename over a file that any reader has open, so a
/// reader there waits this out before opening the file ([`wait_out_write`]).
pub(crate) fn write_in_progress(path: &Path) -> bool {
    let Ok((dir, name)) = split(path) else {
        return false;
    };
    temp_files(&dir, &name)
        .iter()
        .any(|p| open_no_follow(p, false).is_ok_and(|f| crate::file::lock::is_held_elsewhere(&f)))
}

/// Waits, up to [`crate::file::busy::PATIENCE`], while a write of `path` is under way, so that this
/// reader's handle does not keep the write's rename from finding the file closed: readers
/// that poll the file (waiters for the lock adopting a sibling's session) could otherwise
/// hold it open for the writer's every retry, until its save fails with "Access denied".
pub(crate) fn wait_out_write(path: &Path) {
    use crate::basics::wait::{Attempt, Backoff};
    let pauses = Backoff::doubling(
        std::time::Duration::from_micros(500),
        std::time::Duration::from_millis(10),
    );
    let settled = || {
        if write_in_progress(path) {
            Attempt::Pending(())
        } else {
            Attempt::Done(())
        }
    };
    // Past the patience, the reader goes ahead: a write that long is not one it delays.
    let _ = crate::basics::wait::until(crate::file::busy::PATIENCE, pauses, settled, |_| {
        None::<std::convert::Infallible>
    });
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
