//! Rows of docs/design.md's failure table that only the `credlock` binary shows (the table's
//! meta-test, in the library's `tests/all/failure_table.rs`, reads this file too).

/// Failure table: the same, mode `advisory`
#[cfg(unix)]
#[test]
fn advisory_mode_where_locks_do_not_cross_machines_refreshes_under_the_lock_alone_with_a_warning() {
    let b = crate::common::tools::Backend::expired();
    let mut cmd = crate::common::credlock(&b.store, &["--lock", "advisory", "token"]);
    cmd.env("CREDLOCK_FS_KIND", "nfs-nolock");
    let out = crate::common::run_with_stdin(cmd, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n", b.stored_token())
    );
    assert_eq!(b.refreshes(), 1);
    assert!(
        stderr.contains("warning: the lock") && stderr.contains("may not exclude"),
        "{stderr}"
    );
    assert!(
        !crate::common::lease_path(&b.store).exists(),
        "no lease in advisory mode"
    );
}
