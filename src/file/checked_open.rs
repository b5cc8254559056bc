//! Opening a file of credlock's without trusting what is at its name (no symbolic link
//! followed, no FIFO blocking, owner and directory checked), creating and syncing its
//! directory.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Opens an existing file of credlock's (the session file, a lease) for reading, and checks what was opened, on the descriptor (no race with a rename): the
/// directory is not writable by others without the sticky bit, the path is not a symbolic
/// link (not followed), a FIFO does not block the open and is refused like any non-regular
/// file, and the file is owned by the current user or root. `Ok(None)` if there is no file.
pub(crate) fn open_checked(path: &Path) -> Result<Option<(File, std::fs::Metadata)>, Error> {
    check_dir_of(path)?;
    // A directory refuses the open on Windows with "Access denied", as a busy file does:
    // only a regular file is worth waiting for.
    let worth_waiting = || std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file());
    let mut opened_again = 0;
    loop {
        let file =
            match crate::file::busy::retry_while(|| open_no_follow(path, false), worth_waiting) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(open_error(path, e)),
            };
        match file.metadata() {
            Ok(meta) => {
                check_regular_and_owned(&meta, path)?;
                return Ok(Some((file, meta)));
            }
            // FUSE (by path) and NFS (ESTALE) can answer fstat on a descriptor whose file
            // another machine has just removed or replaced: that file is gone, and what is at
            // the name now is what to read. A new open decides.
            Err(e) if is_gone(&e) && opened_again < GONE_REOPENS => opened_again += 1,
            Err(e) => return Err(Error::io("inspect", path)(e)),
        }
    }
}

/// Opens `path` as [`open_checked`] does and reads at most `limit + 1` bytes (one more than
/// allowed, so that the caller can tell a file over its limit); `Ok(None)` if there is no
/// file. The error for a failed read names `action`.
pub(crate) fn read_checked(
    path: &Path,
    limit: u64,
    action: &'static str,
) -> Result<Option<(File, std::fs::Metadata, Vec<u8>)>, Error> {
    use std::io::{Read, Seek};
    let mut read_again = 0;
    loop {
        let Some((file, meta)) = open_checked(path)? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(limit)).unwrap_or(0) + 1);
        // On Windows a writer's or a compare-and-delete's byte-range lock can still cover a
        // file just renamed into place, for the instant until it closes its handle.
        match crate::file::busy::retry_while_busy(|| {
            bytes.clear();
            (&file).seek(std::io::SeekFrom::Start(0))?;
            (&file).take(limit + 1).read_to_end(&mut bytes)
        }) {
            Ok(_) => return Ok(Some((file, meta, bytes))),
            // NFS answers ESTALE once another machine replaced the file we opened: read the
            // one at the name now.
            Err(e) if is_gone(&e) && read_again < GONE_REOPENS => read_again += 1,
            Err(e) => return Err(Error::io(action, path)(e)),
        }
    }
}

/// How many times a file that vanished between its open and its `fstat` is opened again: each
/// time another machine removed or replaced it in that instant.
const GONE_REOPENS: u32 = 16;

/// Whether `e`, from an operation on an open descriptor, means its file was removed or
/// replaced by someone else (`ENOENT` from FUSE, `ESTALE` from NFS).
pub(crate) fn is_gone(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(rustix::io::Errno::STALE.raw_os_error()) {
        return true;
    }
    e.kind() == std::io::ErrorKind::NotFound
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
pub(crate) fn check_dir(dir: &Path) -> Result<(), Error> {
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
pub(crate) fn check_dir(_dir: &Path) -> Result<(), Error> {
    Ok(())
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

pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| crate::file::durable::sync_durably(&d))
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

pub(crate) fn is_symlink_error(e: &std::io::Error) -> bool {
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

pub(crate) fn split(path: &Path) -> Result<(PathBuf, String), Error> {
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
