//! Reading `/proc/self/mountinfo`: the mount that holds a path.

use std::path::Path;

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
