//! Durable atomic replacement of a small file, and reads that never see half of one.
//!
//! Writers never modify the session file in place: they write a temp file in the same
//! directory, `sync_all` it, rename it over the target and fsync the directory. A reader that
//! opens the path gets either the old inode or the new one, complete. (Network and FUSE
//! filesystems can still serve a torn read through their caches; the store re-reads.)

use std::fs::File;
use std::io::{Read, Seek, Write};
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
/// Refuses symbolic links, non-regular files, files over [`MAX_FILE_BYTES`], a file owned by
/// another user and a directory writable by others without the sticky bit (see
/// [`open_checked`]). A file that group or others can read is tightened to 0600.
pub(crate) fn read(path: &Path) -> Result<Option<FileContent>, Error> {
    let Some((file, meta)) = open_checked(path)? else {
        return Ok(None);
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0) + 1);
    // On Windows a writer's or a compare-and-delete's byte-range lock can still cover a file
    // just renamed into place, for the instant until it closes its handle.
    crate::busy::retry_while_busy(|| {
        bytes.clear();
        (&file).seek(std::io::SeekFrom::Start(0))?;
        (&file).take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)
    })
    .map_err(Error::io("read the session file", path))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    Ok(Some(FileContent {
        bytes,
        tightened_from: tighten(&file, &meta),
    }))
}

/// Opens an existing file of credlock's (the session file, a lease) for reading, and checks what was opened, on the descriptor (no race with a rename): the
/// directory is not writable by others without the sticky bit, the path is not a symbolic
/// link (not followed), a FIFO does not block the open and is refused like any non-regular
/// file, and the file is owned by the current user or root. `Ok(None)` if there is no file.
pub(crate) fn open_checked(path: &Path) -> Result<Option<(File, std::fs::Metadata)>, Error> {
    check_dir_of(path)?;
    // A directory refuses the open on Windows with "Access denied", as a busy file does:
    // only a regular file is worth waiting for.
    let worth_waiting = || std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file());
    let file = match crate::busy::retry_while(|| open_no_follow(path, false), worth_waiting) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_error(path, e)),
    };
    let meta = file.metadata().map_err(Error::io("inspect", path))?;
    check_regular_and_owned(&meta, path)?;
    Ok(Some((file, meta)))
}

/// The error for a failed no-follow open: a symbolic link (`ELOOP`) or a socket (`ENXIO`) is
/// "not a usable file", anything else an I/O error.
pub(crate) fn open_error(path: &Path, e: std::io::Error) -> Error {
    // What is there decides, where the platform's error does not say (Windows answers
    // "Access denied" for a directory).
    if let Ok(m) = std::fs::symlink_metadata(path)
        && !m.is_file()
        && !m.is_symlink()
    {
        return Error::NotASessionFile {
            path: path.to_path_buf(),
            reason: describe_file_type(&m),
        };
    }
    if is_symlink_error(&e) {
        return Error::NotASessionFile {
            path: path.to_path_buf(),
            reason: "it is a symbolic link, which credlock does not follow".into(),
        };
    }
    #[cfg(unix)]
    if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) {
        return Error::NotASessionFile {
            path: path.to_path_buf(),
            reason: "it is not a regular file (a socket or a device)".into(),
        };
    }
    Error::Io {
        action: "open",
        path: path.to_path_buf(),
        source: e,
    }
}

/// Refuses what was opened unless it is a regular file owned by the current user (or root).
pub(crate) fn check_regular_and_owned(meta: &std::fs::Metadata, path: &Path) -> Result<(), Error> {
    if !meta.is_file() {
        return Err(Error::NotASessionFile {
            path: path.to_path_buf(),
            reason: describe_file_type(meta),
        });
    }
    check_owner(meta, path)
}

/// A file owned by another user could have been planted by them (a session pointing at their
/// token endpoint, a lock file that another user holds, a lease that never expires): refused.
/// Root-owned files are accepted (root can do anything anyway). Root itself is held to the same
/// rule: as root, a file owned by another user is refused too, because the refreshed session
/// would be written back owned by root and the user would lose it (run as the file's owner).
#[cfg(unix)]
pub(crate) fn check_owner(meta: &std::fs::Metadata, path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let owner = meta.uid();
    let me = rustix::process::geteuid().as_raw();
    if owner == me || owner == 0 {
        return Ok(());
    }
    Err(Error::NotASessionFile {
        path: path.to_path_buf(),
        reason: if me == 0 {
            format!(
                "it is owned by uid {owner}, not by root: run credlock as that user (as root it would write the session back owned by root), or chown the file if it is really root's"
            )
        } else {
            format!(
                "it is owned by uid {owner}, not by the current user (uid {me}): another user could have planted it, so credlock does not use it (remove it, or chown it if it is really yours)"
            )
        },
    })
}

#[cfg(not(unix))]
pub(crate) fn check_owner(_meta: &std::fs::Metadata, _path: &Path) -> Result<(), Error> {
    Ok(())
}

/// Refuses the directory of `path` if every user may write to it and it has no sticky bit:
/// anyone could then rename their own file over the session, the lock or the lease. A missing
/// directory passes (it is created 0700).
pub(crate) fn check_dir_of(path: &Path) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    check_dir(dir)
}

#[cfg(unix)]
fn check_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_dir() && mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(Error::Io {
            action: "use the directory",
            path: dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "it is writable by every user and has no sticky bit (mode {mode:04o}), so any user could replace the session file; `chmod o-w` (or `chmod +t`) it"
                ),
            ),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_dir(_dir: &Path) -> Result<(), Error> {
    Ok(())
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
    write_checked(path, bytes, None).map(|_| ())
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
    write_checked(path, bytes, Some(&still_ok))
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
    crate::durable::sync_durably(tmp.as_file()).map_err(Error::io("sync a temp file in", &dir))?;
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
fn persist_patiently(mut tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_micros(500);
    loop {
        match tmp.persist(path) {
            Ok(_) => return Ok(()),
            Err(e)
                if crate::busy::is_busy(&e.error) && started.elapsed() < crate::busy::PATIENCE =>
            {
                tmp = e.file;
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            Err(e) => {
                return Err(Error::Io {
                    action: "rename the new session file over",
                    path: path.to_path_buf(),
                    source: e.error,
                });
            }
        }
    }
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

/// Removes `path`; `Ok(false)` if it was not there. Refuses to remove a symlink's target, a
/// directory or another user's file: only a regular file of ours is removed.
pub(crate) fn remove(path: &Path) -> Result<bool, Error> {
    let (dir, _) = split(path)?;
    if !regular_file_exists(path)? {
        return Ok(false);
    }
    match crate::busy::retry_while_busy(|| std::fs::remove_file(path)) {
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
    check_dir_of(path)?;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("inspect the session file", path)(e)),
        Ok(m) => check_regular_and_owned(&m, path).map(|()| true),
    }
}

/// Removes `path` only if its content still satisfies `still_the_one` when removed: the file
/// is renamed aside first (one atomic step that no writer can interleave with), checked, and
/// deleted, or put back (see [`put_back`]) without ever replacing a newer file saved
/// meanwhile. Returns whether it was removed.
///
/// A file that did not match is never unlinked: if it cannot be put back (a newer file took
/// the name, or the filesystem refuses every way of putting it back), it is left at its aside
/// name and the error names that path, so that the user can recover it.
///
/// The aside name is `.<name>.aside-<pid>-<nanos>-<n>` in the same directory ([`ASIDE_INFIX`]),
/// which the temp-file sweep never removes; while the compare-and-delete runs, its process
/// holds an `flock` on it, taken on the file before the rename ([`set_aside_files`] tells
/// in-progress from left-over ones). Between the rename and the put-back, a reader finds no
/// file at the path, and a marked aside file; that happens only when a writer raced the delete.
pub(crate) fn remove_if(path: &Path, still_the_one: impl Fn(&[u8]) -> bool) -> Result<bool, Error> {
    remove_if_with(path, still_the_one, &PutBackMethod::ALL)
}

fn remove_if_with(
    path: &Path,
    still_the_one: impl Fn(&[u8]) -> bool,
    methods: &[PutBackMethod],
) -> Result<bool, Error> {
    let (dir, name) = split(path)?;
    if !regular_file_exists(path)? {
        return Ok(false);
    }
    let aside = dir.join(aside_name(&name));
    // Marked in progress (an flock, held until the descriptor closes at the end) before the
    // rename: the flock is on the inode, which the rename carries to the aside name, so a
    // reader that finds no file at the path finds the aside file already marked.
    let marked = open_no_follow(path, false).ok();
    if let Some(f) = &marked {
        let _ = crate::lock::try_hold_until_closed(f);
    }
    match crate::busy::retry_while_busy(|| std::fs::rename(path, &aside)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("delete the session file", path)(e)),
    }
    let held = match marked {
        Some(f) if same_file(&f, &aside) => Some(f),
        // A writer replaced the file between our open and the rename: what was set aside is
        // its file, marked only now (for that rare case, a reader can miss the mark).
        _ => {
            let f = open_no_follow(&aside, false).ok();
            if let Some(f) = &f {
                let _ = crate::lock::try_hold_until_closed(f);
            }
            f
        }
    };
    let matches = held.as_ref().is_some_and(|f| {
        f.metadata()
            .is_ok_and(|m| check_regular_and_owned(&m, &aside).is_ok() && m.len() <= MAX_FILE_BYTES)
            && {
                let mut bytes = Vec::new();
                f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).is_ok() && still_the_one(&bytes)
            }
    });
    if matches {
        std::fs::remove_file(&aside).map_err(Error::io("delete the session file", &aside))?;
        sync_dir(&dir)?;
        return Ok(true);
    }
    // A writer got in first: put its session back, unless an even newer one is there.
    match put_back_with(&aside, path, methods) {
        Ok(()) => {
            sync_dir(&dir)?;
            Ok(false)
        }
        Err(e) => Err(left_aside(&aside, path, e)),
    }
}

/// The error for a file left at its aside name: it names the aside path.
pub(crate) fn left_aside(aside: &Path, path: &Path, e: std::io::Error) -> Error {
    let why = if e.kind() == std::io::ErrorKind::AlreadyExists {
        format!(
            "{} was taken by a newer file meanwhile; the set-aside file was kept: if the one at {} is missing or older, move it back by hand",
            path.display(),
            path.display()
        )
    } else {
        format!(
            "{e}; the set-aside file was kept: move it back to {} by hand",
            path.display()
        )
    };
    Error::Io {
        action: "put back the file set aside at",
        path: aside.to_path_buf(),
        source: std::io::Error::new(e.kind(), why),
    }
}

/// What every aside name of a session file contains after `.<name>.`.
pub(crate) const ASIDE_INFIX: &str = "aside-";

fn aside_name(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}{ASIDE_INFIX}{}-{}-{}",
        temp_prefix(name),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The files that a compare-and-delete of `path` has set aside, each with whether its
/// compare-and-delete is still in progress (its process holds an `flock` on it). One in
/// progress means the session may reappear at `path` in a moment; one that is not was left by
/// a process that died between the rename and the put-back, or could not be put back (see
/// [`remove_if`]): it holds a session that was never judged deletable. Where `flock` does not
/// reach other machines, another machine's compare-and-delete looks "not in progress".
pub(crate) fn set_aside_files(path: &Path) -> Vec<(PathBuf, bool)> {
    let Ok((dir, name)) = split(path) else {
        return Vec::new();
    };
    let prefix = format!("{}{ASIDE_INFIX}", temp_prefix(&name));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| {
            let p = e.path();
            let in_progress = open_no_follow(&p, false).is_ok_and(|f| {
                let mut lock = fd_lock::RwLock::new(f);
                lock.try_write().is_err()
            });
            (p, in_progress)
        })
        .collect()
}

/// The ways of putting a set-aside file back, in the order [`put_back`] tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PutBackMethod {
    /// `renameat2(RENAME_NOREPLACE)` (Linux), `renameatx_np(RENAME_EXCL)` (macOS): atomic,
    /// fails with `EEXIST` rather than replace. Not every filesystem supports it (NFS, many
    /// FUSE filesystems answer `EINVAL`).
    NoReplaceRename,
    /// `link` then unlink the aside name: atomic, fails with `EEXIST`. Not on vfat, exfat and
    /// many FUSE filesystems (rclone, s3fs, davfs).
    Link,
    /// Create the name with `O_CREAT|O_EXCL` (fails with `EEXIST`), write the content, sync,
    /// then unlink the aside name. Works everywhere; a reader may meet the new file half
    /// written for an instant (`load` re-reads a file that does not parse). A writer that
    /// renames its newer file over it meanwhile wins: we write through our descriptor, never
    /// through the name.
    ExclusiveCopy,
}

impl PutBackMethod {
    pub(crate) const ALL: [PutBackMethod; 3] = [
        PutBackMethod::NoReplaceRename,
        PutBackMethod::Link,
        PutBackMethod::ExclusiveCopy,
    ];
}

/// Moves `aside` back to `path` without ever replacing a file at `path`: each method in turn
/// until one works; `AlreadyExists` as soon as one finds `path` taken (then `aside` is left
/// where it is, untouched). On error, `aside` still exists.
pub(crate) fn put_back(aside: &Path, path: &Path) -> std::io::Result<()> {
    put_back_with(aside, path, &PutBackMethod::ALL)
}

pub(crate) fn put_back_with(
    aside: &Path,
    path: &Path,
    methods: &[PutBackMethod],
) -> std::io::Result<()> {
    let mut last = std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no way of putting a file back was tried",
    );
    for method in methods {
        let tried = match method {
            PutBackMethod::NoReplaceRename => rename_no_replace(aside, path),
            PutBackMethod::Link => std::fs::hard_link(aside, path).map(|()| {
                let _ = std::fs::remove_file(aside);
            }),
            PutBackMethod::ExclusiveCopy => copy_exclusive(aside, path),
        };
        match tried {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios"
))]
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(std::io::Error::from)
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios"
)))]
fn rename_no_replace(_from: &Path, _to: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no no-replace rename on this platform",
    ))
}

fn copy_exclusive(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    open_no_follow(from, false)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(to)?;
    if let Err(e) = file
        .write_all(&bytes)
        .and_then(|()| crate::durable::sync_durably(&file))
    {
        // Remove our half-written file, unless a writer has replaced it meanwhile.
        if same_file(&file, to) {
            let _ = std::fs::remove_file(to);
        }
        return Err(e);
    }
    std::fs::remove_file(from).or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(e)
        }
    })
}

fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::symlink_metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

const TEMP_SUFFIX: &str = ".tmp";

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

/// A file already at the path must be a regular file of ours: a save does not replace another
/// user's file any more than a read uses it.
fn refuse_non_regular_target(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => check_regular_and_owned(&m, path),
        _ => Ok(()),
    }
}

pub(crate) fn describe_file_type(m: &std::fs::Metadata) -> String {
    if m.is_symlink() {
        "it is a symbolic link, which credlock does not follow".into()
    } else if m.is_dir() {
        "it is a directory".into()
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            let t = m.file_type();
            if t.is_fifo() {
                return "it is a named pipe (FIFO), not a regular file".into();
            }
            if t.is_socket() {
                return "it is a socket, not a regular file".into();
            }
            if t.is_block_device() || t.is_char_device() {
                return "it is a device, not a regular file".into();
            }
        }
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
            .and_then(|d| crate::durable::sync_durably(&d))
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
pub(crate) fn open_no_follow(path: &Path, write: bool) -> std::io::Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(write);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut opts,
        (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
    );
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        // Share read, write and delete, so that a writer's rename over the file is never
        // blocked by this reader's handle; open a symbolic link (reparse point) itself rather
        // than its target, so that it is seen, and refused, as a link.
        const FILE_SHARE_READ_WRITE_DELETE: u32 = 0x1 | 0x2 | 0x4;
        const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
        opts.share_mode(FILE_SHARE_READ_WRITE_DELETE)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    }
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

/// Whether a compare-and-delete ([`remove_if`]) of `path` is under way: a set-aside file
/// whose process still holds its `flock` (one left by a killed process is not, and must not
/// slow every "no session" answer). A reader that finds no file then must not conclude "no
/// session" yet: the file may be put back in a moment.
pub(crate) fn delete_in_progress(path: &Path) -> bool {
    set_aside_files(path)
        .iter()
        .any(|(_, in_progress)| *in_progress)
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
    fn write_if_replaces_only_what_the_check_accepts_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.json");
        let is = |want: &'static [u8]| move |b: Option<&[u8]>| b == Some(want);
        assert!(
            !write_if(&path, b"new", is(b"sent")).expect("io"),
            "no file: a logout"
        );
        assert!(!path.exists());
        write(&path, b"newer").expect("write");
        assert!(!write_if(&path, b"new", is(b"sent")).expect("io"));
        assert_eq!(std::fs::read(&path).expect("read"), b"newer");
        write(&path, b"sent").expect("write");
        assert!(write_if(&path, b"new", is(b"sent")).expect("io"));
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("e").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

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

    /// Where `link` fails (vfat, exfat, rclone, s3fs, davfs; here ext4 refusing a 65001st link
    /// with `EMLINK`), the file that did not match must still be put back, never unlinked.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_that_did_not_match_is_put_back_even_where_link_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.json");
        std::fs::write(&path, b"newer").expect("write");
        let links = dir.path().join("links");
        std::fs::create_dir(&links).expect("mkdir");
        let link_failed = std::sync::atomic::AtomicBool::new(false);
        let removed = remove_if(&path, |bytes| {
            // Between the rename and the put-back: make `link` of the set-aside file fail.
            let aside = std::fs::read_dir(dir.path())
                .expect("ls")
                .map(|e| e.expect("e").path())
                .find(|p| p.is_file() && p != &path)
                .expect("the set-aside file");
            for i in 0..70_000 {
                match std::fs::hard_link(&aside, links.join(i.to_string())) {
                    Ok(()) => {}
                    Err(e) => {
                        link_failed.store(true, std::sync::atomic::Ordering::SeqCst);
                        eprintln!("link fails after {i} links: {e}");
                        break;
                    }
                }
            }
            bytes == b"failed"
        })
        .expect("io");
        if !link_failed.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("skipped the link failure: this filesystem has no link limit");
        }
        assert!(!removed);
        assert_eq!(std::fs::read(&path).expect("kept"), b"newer", "put back");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("e").file_name())
            .filter(|n| n != "links" && n != "session.json")
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn without_rename_or_link_a_file_is_put_back_by_exclusive_copy_and_never_over_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (aside, path) = (dir.path().join("aside"), dir.path().join("session.json"));
        std::fs::write(&aside, b"winner").expect("write");
        put_back_with(&aside, &path, &[PutBackMethod::ExclusiveCopy]).expect("copied");
        assert_eq!(std::fs::read(&path).expect("read"), b"winner");
        assert!(!aside.exists());
        std::fs::write(&aside, b"older").expect("write");
        for methods in [
            &PutBackMethod::ALL[..],
            &[PutBackMethod::Link],
            &[PutBackMethod::ExclusiveCopy],
        ] {
            let e = put_back_with(&aside, &path, methods).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{methods:?}");
            assert_eq!(
                std::fs::read(&path).expect("read"),
                b"winner",
                "{methods:?}"
            );
            assert_eq!(
                std::fs::read(&aside).expect("kept"),
                b"older",
                "{methods:?}"
            );
        }
        assert!(put_back_with(&aside, &path, &[]).is_err(), "no way at all");
        assert!(aside.exists());
    }

    #[test]
    fn a_file_that_cannot_be_put_back_is_left_aside_and_the_error_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.json");
        std::fs::write(&path, b"newer").expect("write");
        let seen_in_progress = std::sync::Mutex::new(Vec::new());
        let err = remove_if(&path, |_| {
            *seen_in_progress.lock().expect("lock") = set_aside_files(&path);
            // A writer saves the newest session while the newer one is set aside.
            std::fs::write(&path, b"newest").expect("write");
            false
        })
        .unwrap_err();
        let in_progress = seen_in_progress.into_inner().expect("lock");
        assert_eq!(in_progress.len(), 1, "{in_progress:?}");
        assert!(in_progress[0].1, "marked in progress while it runs");
        let aside = &in_progress[0].0;
        let name = aside.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(name.starts_with(".session.json.aside-"), "{name}");
        assert!(
            matches!(&err, Error::Io { path: p, .. } if p == aside),
            "{err:?}"
        );
        assert!(err.to_string().contains("move it back"), "{err}");
        assert_eq!(std::fs::read(aside).expect("kept"), b"newer");
        assert_eq!(std::fs::read(&path).expect("read"), b"newest");
        assert_eq!(
            set_aside_files(&path),
            vec![(aside.clone(), false)],
            "left over"
        );
        // The temp-file sweep of the next write leaves it alone.
        write(&path, b"after").expect("write");
        assert!(aside.exists());
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
