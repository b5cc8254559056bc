//! The session file as the CLI reports it: `credlock doctor` on what the store would refuse.
//! (The file's own tests are in the library's `tests/all/files.rs`.)

use credlock_test::ReusePolicy;

use crate::common::Bed;

/// `credlock doctor` says what the store would refuse.
#[cfg(unix)]
#[test]
fn doctor_reports_a_directory_anyone_may_write_and_a_file_of_another_user() {
    use std::os::unix::fs::PermissionsExt;
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed();
    std::fs::set_permissions(bed.dir.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    let is_root = rustix::process::geteuid().is_root();
    let login_ended = bed.path.with_file_name("session.json.login-ended");
    if is_root {
        std::os::unix::fs::chown(&bed.path, Some(65534), Some(65534)).expect("chown");
        std::fs::write(&login_ended, "{}").expect("plant");
        std::os::unix::fs::chown(&login_ended, Some(65534), Some(65534)).expect("chown");
    }
    let out = crate::common::credlock(&bed.path, &["doctor"])
        .output()
        .expect("doctor");
    std::fs::set_permissions(bed.dir.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let ownership: Vec<_> = stdout
        .lines()
        .filter(|l| l.starts_with("fail  permissions"))
        .collect();
    assert!(
        ownership
            .iter()
            .any(|l| l.contains("writable by every user")),
        "{stdout}"
    );
    if is_root {
        assert!(
            ownership
                .iter()
                .any(|l| l.contains("session.json is owned by uid 65534")),
            "{stdout}"
        );
        assert!(
            ownership
                .iter()
                .any(|l| l.contains("session.json.login-ended is owned by uid 65534")),
            "{stdout}"
        );
    } else {
        eprintln!("skipped the foreign-owner half: chown needs root");
    }
}
