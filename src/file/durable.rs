//! Flushing a file to stable storage, per platform. Self-contained (std and rustix only), so
//! that CI can type-check it for an Apple target through `.ci/apple-probe`, which includes
//! this very file: the crate as a whole cannot be checked for macOS here (ring's C code
//! needs an Apple toolchain).

use std::fs::File;

/// Flushes `file` to stable storage. On macOS `fsync` only reaches the drive's cache;
/// `F_FULLFSYNC` asks the drive to flush it too (falling back to `fsync` where the filesystem
/// refuses it, as some network filesystems do).
pub fn sync_durably(file: &File) -> std::io::Result<()> {
    #[cfg(target_vendor = "apple")]
    {
        if rustix::fs::fcntl_fullfsync(file).is_ok() {
            return Ok(());
        }
    }
    file.sync_all()
}
