//! The kinds of filesystem, as far as locking is concerned ([`FsKind`]), told apart by their
//! `statfs` magic number and mount entry (Linux) or their type name (macOS).

use super::mountinfo::MountInfo;

/// The kind of filesystem, as far as locking is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsKind {
    /// A local disk filesystem (ext4, xfs, btrfs, tmpfs, apfs, …): locks work.
    Local,
    /// NFS. `local_locks` is true when mounted `nolock` or `local_lock=flock|all`, which keeps
    /// locks on this client only.
    Nfs {
        /// Locks stay on this client.
        local_locks: bool,
    },
    /// SMB / CIFS.
    Smb,
    /// FUSE (sshfs, bindfs, most network drives); `subtype` as `/proc/mounts` names it.
    Fuse {
        /// e.g. `sshfs`, `bindfs`.
        subtype: Option<String>,
    },
    /// Another network or cluster filesystem (AFS, Ceph, Lustre, GPFS, 9p, GFS2, OCFS2, Coda).
    Network {
        /// Its name.
        name: String,
    },
    /// Not determined (not Linux, or `statfs` failed).
    Unknown,
}

impl FsKind {
    /// Whether an advisory lock taken here is trusted to exclude processes on other machines
    /// that share the directory. `false` for NFS with local locks, SMB, FUSE and other network
    /// filesystems (a lock manager may exist, but credlock cannot tell); `true` for local
    /// disks and NFS with a lock manager; `true` for unknown (not Linux, or `statfs` failed):
    /// most such directories are local, and a lease on every refresh there would cost every
    /// user for the sake of a few (force the kind for those).
    #[must_use]
    pub fn locks_are_reliable(&self) -> bool {
        matches!(
            self,
            FsKind::Local | FsKind::Nfs { local_locks: false } | FsKind::Unknown
        )
    }

    /// Whether the directory is known to be shared over a network or FUSE (so attribute
    /// caches may serve old data for seconds). `false` for local and unknown filesystems.
    #[must_use]
    pub fn is_networked(&self) -> bool {
        !matches!(self, FsKind::Local | FsKind::Unknown)
    }

    /// A short name: `local`, `nfs`, `nfs-nolock`, `smb`, `fuse`, `fuse.sshfs`, `ceph`, …
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            FsKind::Local => "local".into(),
            FsKind::Nfs { local_locks: false } => "nfs".into(),
            FsKind::Nfs { local_locks: true } => "nfs-nolock".into(),
            FsKind::Smb => "smb".into(),
            FsKind::Fuse { subtype: None } => "fuse".into(),
            FsKind::Fuse { subtype: Some(s) } => format!("fuse.{s}"),
            FsKind::Network { name } => name.clone(),
            FsKind::Unknown => "unknown".into(),
        }
    }

    /// The kind a value of [`FS_KIND_ENV`](super::FS_KIND_ENV) names.
    pub(super) fn from_override(value: &str) -> Option<FsKind> {
        Some(match value {
            "local" => FsKind::Local,
            "nfs" => FsKind::Nfs { local_locks: false },
            "nfs-nolock" => FsKind::Nfs { local_locks: true },
            "smb" | "cifs" => FsKind::Smb,
            "fuse" => FsKind::Fuse { subtype: None },
            "network" => FsKind::Network {
                name: "network".into(),
            },
            "unknown" => FsKind::Unknown,
            _ => return None,
        })
    }
}

const NFS: u64 = 0x6969;
const SMB2: u64 = 0xFE53_4D42;
const CIFS: u64 = 0xFF53_4D42;
const SMB1: u64 = 0x517B;
const FUSE: u64 = 0x6573_5546;
const NETWORKED: [(u64, &str); 9] = [
    (0x5346_414F, "afs"),
    (0x6B41_4653, "afs"),
    (0x00C3_6400, "ceph"),
    (0x0BD0_0BD0, "lustre"),
    (0x4750_4653, "gpfs"),
    (0x0102_1997, "9p"),
    (0x0116_1970, "gfs2"),
    (0x7461_636F, "ocfs2"),
    (0x7375_7245, "coda"),
];

/// Classifies a Linux `statfs` f_type; `mount` is the mountinfo entry, if found.
#[must_use]
pub fn classify_f_type(f_type: u64, mount: Option<&MountInfo>) -> FsKind {
    match f_type {
        NFS => FsKind::Nfs {
            local_locks: mount.is_some_and(MountInfo::nfs_locks_are_local),
        },
        SMB2 | CIFS | SMB1 => FsKind::Smb,
        FUSE => FsKind::Fuse {
            subtype: mount.and_then(|m| m.fs_type.strip_prefix("fuse.").map(str::to_owned)),
        },
        other => NETWORKED.iter().find(|(magic, _)| *magic == other).map_or(
            FsKind::Local,
            |(_, name)| FsKind::Network {
                name: (*name).to_owned(),
            },
        ),
    }
}

/// Classifies a macOS `statfs` `f_fstypename`.
#[cfg(any(target_os = "macos", test))]
#[must_use]
pub(crate) fn classify_fstypename(name: &str) -> FsKind {
    match name {
        // macOS does not report NFS lock options through statfs: assume locks stay local.
        "nfs" => FsKind::Nfs { local_locks: true },
        "smbfs" | "cifs" => FsKind::Smb,
        "afpfs" | "webdav" | "ftp" => FsKind::Network {
            name: name.to_owned(),
        },
        n if n.contains("fuse") => FsKind::Fuse { subtype: None },
        _ => FsKind::Local,
    }
}
