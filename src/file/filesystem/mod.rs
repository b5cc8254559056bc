//! Which filesystem holds the session, and whether its locks reach other machines.
//!
//! `flock` on NFS mounted `nolock` (or with `local_lock=`), on SMB and on most FUSE
//! filesystems succeeds on every machine but excludes only processes on the same machine.
//! credlock cannot see that from the lock call, so it asks the filesystem: `statfs` f_type,
//! and for NFS the mount options in `/proc/self/mountinfo`.
//!
//! - `kind.rs`: [`FsKind`], and telling filesystems apart by magic number or type name;
//! - `mountinfo.rs`: the mount that holds a path, from `/proc/self/mountinfo`;
//! - `ownership.rs`: the files another user could control (for `credlock doctor`).

pub(crate) mod kind;
pub(crate) mod mountinfo;
mod ownership;
#[cfg(test)]
mod tests;

pub use kind::FsKind;
pub use ownership::ownership_problems;

use std::path::{Path, PathBuf};

/// The environment variable that forces the detected kind (one of [`FS_KIND_NAMES`]): for
/// tests, and for users who know better. A value that is not one of them is ignored by
/// [`detect`], which says so in [`Detected::evidence`]; the `credlock` CLI refuses it.
pub const FS_KIND_ENV: &str = "CREDLOCK_FS_KIND";

/// The values [`FS_KIND_ENV`] accepts (`cifs` is another name for `smb`).
pub const FS_KIND_NAMES: [&str; 8] = [
    "local",
    "nfs",
    "nfs-nolock",
    "smb",
    "cifs",
    "fuse",
    "network",
    "unknown",
];

/// What detection found, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Detected {
    /// The kind.
    pub kind: FsKind,
    /// How it was determined: `statfs f_type 0x…`, `CREDLOCK_FS_KIND=…`, or why not.
    pub evidence: String,
}

/// Detects the filesystem that holds `path` (or, if it does not exist yet, its nearest
/// existing ancestor). [`FS_KIND_ENV`] overrides detection.
#[must_use]
pub fn detect(path: &Path) -> Detected {
    let forced = std::env::var_os(FS_KIND_ENV);
    detect_with(forced.as_deref(), path)
}

/// [`detect`] with the override's value given.
fn detect_with(forced: Option<&std::ffi::OsStr>, path: &Path) -> Detected {
    let forced = forced.map(|v| v.to_string_lossy().trim().to_owned());
    if let Some(value) = &forced
        && let Some(kind) = FsKind::from_override(value)
    {
        return Detected {
            kind,
            evidence: format!("{FS_KIND_ENV}={value}"),
        };
    }
    let mut detected = detect_os(&nearest_existing(path));
    if let Some(value) = forced.filter(|v| !v.is_empty()) {
        detected.evidence = format!(
            "{FS_KIND_ENV}={value:?} ignored (not one of {}); {}",
            FS_KIND_NAMES.join(", "),
            detected.evidence
        );
    }
    detected
}

fn nearest_existing(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    loop {
        if std::fs::symlink_metadata(&p).is_ok() {
            return p;
        }
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn detect_os(path: &Path) -> Detected {
    match rustix::fs::statfs(path) {
        Ok(st) => {
            #[allow(
                clippy::useless_conversion,
                reason = "f_type's width differs by target"
            )]
            let f_type = u64::try_from(st.f_type).unwrap_or(0) & 0xFFFF_FFFF;
            let mount = std::fs::read_to_string("/proc/self/mountinfo")
                .ok()
                .and_then(|table| mountinfo::mount_of(&table, path));
            let kind = kind::classify_f_type(f_type, mount.as_ref());
            let mut evidence = format!("statfs f_type {f_type:#x}");
            if let Some(m) = &mount {
                evidence.push_str(&format!(", mounted at {} as {}", m.mount_point, m.fs_type));
            }
            Detected { kind, evidence }
        }
        Err(e) => Detected {
            kind: FsKind::Unknown,
            evidence: format!("statfs failed: {e}"),
        },
    }
}

// Written against libc's `statfs` for Apple targets; this crate's CI builds Linux only.
#[cfg(target_os = "macos")]
fn detect_os(path: &Path) -> Detected {
    match rustix::fs::statfs(path) {
        Ok(st) => {
            let name: String = st
                .f_fstypename
                .iter()
                .take_while(|c| **c != 0)
                .map(|c| char::from(*c as u8))
                .collect();
            Detected {
                kind: kind::classify_fstypename(&name),
                evidence: format!("statfs f_fstypename {name}"),
            }
        }
        Err(e) => Detected {
            kind: FsKind::Unknown,
            evidence: format!("statfs failed: {e}"),
        },
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
fn detect_os(_path: &Path) -> Detected {
    Detected {
        kind: FsKind::Unknown,
        evidence: "filesystem detection is implemented for Linux and macOS only".into(),
    }
}
