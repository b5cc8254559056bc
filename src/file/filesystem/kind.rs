//! Telling filesystems apart by their `statfs` magic number and mount entry (Linux) or their
//! type name (macOS).

use super::FsKind;
use super::mountinfo::MountInfo;

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

/// Classifies a BSD/macOS `statfs` `f_fstypename`.
#[must_use]
pub fn classify_fstypename(name: &str) -> FsKind {
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
