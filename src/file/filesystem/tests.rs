use super::kind::{classify_f_type, classify_fstypename};
use super::mountinfo::{MountInfo, mount_of};
use super::*;

const NFS_NOLOCK: &str = "36 25 0:32 / /home rw,relatime shared:1 - nfs4 server:/home rw,vers=4.2,local_lock=flock,addr=10.0.0.1";

#[test]
fn mountinfo_lines_are_parsed_with_both_option_sets() {
    let m = MountInfo::parse(NFS_NOLOCK).expect("parses");
    assert_eq!(m.mount_point, "/home");
    assert_eq!(m.fs_type, "nfs4");
    assert!(m.nfs_locks_are_local());
    let escaped =
        MountInfo::parse("1 2 0:3 / /mnt/my\\040drive rw - fuse.sshfs host: rw").expect("parses");
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

#[test]
fn every_override_name_is_a_kind_and_an_unknown_one_is_named_in_the_evidence() {
    for name in FS_KIND_NAMES {
        assert!(FsKind::from_override(name).is_some(), "{name}");
        let d = detect_with(Some(std::ffi::OsStr::new(name)), Path::new("."));
        assert_eq!(d.evidence, format!("{FS_KIND_ENV}={name}"));
    }
    assert_eq!(FsKind::from_override("cifs"), Some(FsKind::Smb));
    let d = detect_with(Some(std::ffi::OsStr::new("nfs-nolok")), Path::new("."));
    assert!(
        d.evidence.starts_with(
            "CREDLOCK_FS_KIND=\"nfs-nolok\" ignored (not one of local, nfs, nfs-nolock"
        ),
        "{}",
        d.evidence
    );
    let unset = detect_with(None, Path::new("."));
    assert_eq!(
        detect_with(Some(std::ffi::OsStr::new(" ")), Path::new(".")),
        unset
    );
}
