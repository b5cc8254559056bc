//! The lease file itself: created with its full content in one step, and read by opening it.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::record::LeaseRecord;
use crate::basics::clock::unix_ms;
use crate::error::Error;
use crate::file::checked_open::{check_dir_of, ensure_dir, read_checked};
use crate::file::sidecar_names::with_suffix;

/// Creates the lease file with its full content, failing (`Ok(false)`) if it exists.
pub(crate) fn create_exclusive(lease_path: &Path, record: &LeaseRecord) -> Result<bool, Error> {
    let dir = match lease_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    ensure_dir(&dir)?;
    check_dir_of(lease_path)?;
    let bytes = record.to_json();
    let staging = with_suffix(lease_path, &format!(".{}.new", record.nonce));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    // Synced before the link makes it visible: NFS may report a full disk or quota only at
    // close, which Rust does not check, and an empty lease must not be published.
    let written = opts.open(&staging).and_then(|mut f| {
        f.write_all(&bytes)?;
        crate::file::durable::sync_durably(&f)
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(Error::io("write the lease file next to", lease_path)(e));
    }
    let linked = std::fs::hard_link(&staging, lease_path);
    let _ = std::fs::remove_file(&staging);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) => create_new_then_write(lease_path, &bytes),
    }
}

/// For filesystems without hard links: `O_CREAT|O_EXCL`, then write.
fn create_new_then_write(lease_path: &Path, bytes: &[u8]) -> Result<bool, Error> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(lease_path) {
        Ok(mut f) => match f
            .write_all(bytes)
            .and_then(|()| crate::file::durable::sync_durably(&f))
        {
            Ok(()) => Ok(true),
            Err(e) => {
                // Never leave an empty lease behind (ours: nobody breaks a lease this young).
                let _ = std::fs::remove_file(lease_path);
                Err(Error::io("write the lease file", lease_path)(e))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("create the lease file", lease_path)(e)),
    }
}

/// What a lease file (or a breaker lock) holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// No file.
    Absent,
    /// A lease record.
    Record(LeaseRecord),
    /// A regular file that is not a lease record, with its modification time (ms since the
    /// epoch, `None` if the filesystem has none).
    Unreadable { modified_ms: Option<u64> },
}

/// Reads a lease by opening it (close-to-open consistency on NFS), never by `stat`; opened
/// like the session file (no symlink followed, no blocking on a FIFO, a regular file owned by
/// us or root, checked on the descriptor), so anything else at the name is an error at once.
pub(crate) fn inspect(path: &Path) -> Result<Seen, Error> {
    let Some((_, meta, bytes)) = read_checked(path, 64 * 1024, "read the lease file")? else {
        return Ok(Seen::Absent);
    };
    Ok(match LeaseRecord::from_json(&bytes) {
        Ok(r) => Seen::Record(r),
        Err(_) => Seen::Unreadable {
            modified_ms: meta.modified().ok().map(unix_ms),
        },
    })
}

/// The record at `path`, if it holds one.
#[cfg(test)]
pub(crate) fn read_record(path: &Path) -> Option<LeaseRecord> {
    match inspect(path) {
        Ok(Seen::Record(r)) => Some(r),
        _ => None,
    }
}
