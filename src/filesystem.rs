//! Which filesystem holds the session, and whether its locks reach other machines.
//!
//! `flock` on NFS mounted `nolock` (or with `local_lock=`), on SMB and on most FUSE
//! filesystems succeeds on every machine but excludes only processes on the same machine.
//! credlock cannot see that from the lock call, so it asks the filesystem: `statfs` f_type,
//! and for NFS the mount options in `/proc/self/mountinfo`.

use std::path::{Path, PathBuf};

/// The environment variable that forces the detected kind (`local`, `nfs`, `nfs-nolock`,
/// `smb`, `fuse`, `network`, `unknown`): for tests, and for users who know better.
pub const FS_KIND_ENV: &str = "CREDLOCK_FS_KIND";

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

    fn from_override(value: &str) -> Option<FsKind> {
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

/// What detection found, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    if let Ok(value) = std::env::var(FS_KIND_ENV)
        && let Some(kind) = FsKind::from_override(value.trim())
    {
        return Detected {
            kind,
            evidence: format!("{FS_KIND_ENV}={value}"),
        };
    }
    let existing = nearest_existing(path);
    detect_os(&existing)
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
                .and_then(|table| mount_of(&table, path));
            let kind = classify_f_type(f_type, mount.as_ref());
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
                kind: classify_fstypename(&name),
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

/// What would make credlock refuse the files of the session at `session_path` because
/// another user could control them, one sentence each (empty if nothing): the directory is
/// writable by every user without the sticky bit, or the session file, its lock file, its
/// lease or its breaker lock exists and is owned by neither the current user nor root. For
/// `credlock doctor`; the store refuses the same things on use (checked there on the opened
/// descriptor, not by path). Always empty on non-Unix platforms.
#[must_use]
pub fn ownership_problems(session_path: &Path) -> Vec<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let me = rustix::process::geteuid().as_raw();
        let mut problems = Vec::new();
        let dir = match session_path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Ok(m) = std::fs::metadata(&dir) {
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                problems.push(format!(
                    "the directory {} is writable by every user and has no sticky bit (mode {mode:04o}): any user could replace the session file; `chmod o-w` it",
                    dir.display()
                ));
            }
        }
        let lease = crate::lease::lease_path_for(session_path);
        let files = [
            session_path.to_path_buf(),
            crate::lock::lock_path_for(session_path),
            crate::lease::break_path_for(&lease),
            lease,
        ];
        for f in files {
            if let Ok(m) = std::fs::symlink_metadata(&f)
                && m.uid() != me
                && m.uid() != 0
            {
                problems.push(format!(
                    "{} is owned by uid {}, not by the current user (uid {me}): credlock refuses it",
                    f.display(),
                    m.uid()
                ));
            }
        }
        problems
    }
    #[cfg(not(unix))]
    {
        let _ = session_path;
        Vec::new()
    }
}

/// One line of `/proc/self/mountinfo`, the fields credlock needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Where it is mounted (octal escapes decoded).
    pub mount_point: String,
    /// The filesystem type (`nfs4`, `fuse.sshfs`, `ext4`).
    pub fs_type: String,
    /// Per-mount and superblock options, comma-joined.
    pub options: String,
}

impl MountInfo {
    /// Parses one mountinfo line (proc(5)); `None` if malformed.
    #[must_use]
    pub fn parse(line: &str) -> Option<MountInfo> {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 6 || right.len() < 3 {
            return None;
        }
        Some(MountInfo {
            mount_point: unescape(left[4])?,
            fs_type: right[0].to_owned(),
            options: format!("{},{}", left[5], right[2]),
        })
    }

    /// Whether the NFS options keep locks local: `nolock`, `local_lock=flock` or `=all`.
    #[must_use]
    pub fn nfs_locks_are_local(&self) -> bool {
        self.options
            .split(',')
            .any(|o| o == "nolock" || o == "local_lock=flock" || o == "local_lock=all")
    }
}

/// The mount holding `path`: the entry with the longest mount point that prefixes it.
#[must_use]
pub fn mount_of(table: &str, path: &Path) -> Option<MountInfo> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    table
        .lines()
        .filter_map(MountInfo::parse)
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.len())
}

/// Decodes mountinfo's octal escapes (`\040` for a space); other bytes pass through.
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|d| {
            u8::try_from(d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'))).ok()
        }) {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NFS_NOLOCK: &str = "36 25 0:32 / /home rw,relatime shared:1 - nfs4 server:/home rw,vers=4.2,local_lock=flock,addr=10.0.0.1";

    #[test]
    fn mountinfo_lines_are_parsed_with_both_option_sets() {
        let m = MountInfo::parse(NFS_NOLOCK).expect("parses");
        assert_eq!(m.mount_point, "/home");
        assert_eq!(m.fs_type, "nfs4");
        assert!(m.nfs_locks_are_local());
        let escaped = MountInfo::parse("1 2 0:3 / /mnt/my\\040drive rw - fuse.sshfs host: rw")
            .expect("parses");
        assert_eq!(escaped.mount_point, "/mnt/my drive");
        assert_eq!(MountInfo::parse("garbage"), None);
        let odd = MountInfo::parse("1 2 0:3 / /mnt/\\777\\04 rw - ext4 /d rw").expect("parses");
        assert_eq!(
            odd.mount_point, "/mnt/\\777\\04",
            "escapes out of range or cut short pass through"
        );
    }

    #[test]
    fn f_types_are_classified() {
        let m = MountInfo::parse(NFS_NOLOCK).expect("parses");
        assert_eq!(
            classify_f_type(0x6969, Some(&m)),
            FsKind::Nfs { local_locks: true }
        );
        assert_eq!(
            classify_f_type(0x6969, None),
            FsKind::Nfs { local_locks: false }
        );
        assert_eq!(classify_f_type(0xFE53_4D42, None), FsKind::Smb);
        let fuse = MountInfo::parse("1 2 0:3 / /mnt rw - fuse.bindfs /b rw").expect("parses");
        assert_eq!(
            classify_f_type(0x6573_5546, Some(&fuse)).name(),
            "fuse.bindfs"
        );
        assert_eq!(classify_f_type(0xEF53, None), FsKind::Local);
        assert_eq!(classify_f_type(0x00C3_6400, None).name(), "ceph");
        assert!(!FsKind::Smb.locks_are_reliable());
        assert!(FsKind::Local.locks_are_reliable());
    }

    #[test]
    fn macos_type_names_are_classified() {
        assert_eq!(classify_fstypename("apfs"), FsKind::Local);
        assert_eq!(
            classify_fstypename("nfs"),
            FsKind::Nfs { local_locks: true }
        );
        assert_eq!(classify_fstypename("smbfs"), FsKind::Smb);
        assert_eq!(classify_fstypename("webdav").name(), "webdav");
        assert_eq!(classify_fstypename("macfuse").name(), "fuse");
    }

    #[cfg(unix)]
    #[test]
    fn the_longest_mount_point_wins() {
        let table = "1 0 0:1 / / rw - ext4 /dev/sda rw\n2 1 0:2 / /home rw - nfs s:/h rw,nolock\n";
        let m = mount_of(table, Path::new("/home/me/.config")).expect("found");
        assert_eq!(m.mount_point, "/home");
        let m = mount_of(table, Path::new("/etc")).expect("found");
        assert_eq!(m.mount_point, "/");
    }
}
