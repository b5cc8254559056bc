//! Putting a set-aside file back without ever replacing a newer one.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use super::MAX_FILE_BYTES;
use crate::file::checked_open::open_no_follow;

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
    #[allow(
        clippy::disallowed_methods,
        reason = "the atomic module owns every rename; this one never replaces"
    )]
    let renamed = renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE);
    renamed.map_err(std::io::Error::from)
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
        .and_then(|()| crate::file::durable::sync_durably(&file))
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

pub(crate) fn same_file(file: &File, path: &Path) -> bool {
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
