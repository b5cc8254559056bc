//! The session file: modes, bad files, torn reads, and what a failed write leaves behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use credlock::Error;
#[cfg(unix)]
use credlock::Store;
use credlock_test::ReusePolicy;

use crate::common::Bed;

/// Failure table: file does not parse after re-reads
#[test]
fn a_corrupt_file_is_reported_with_its_path_and_never_touched() {
    for bytes in [
        &b""[..],
        b"{\"version\":1,\"client\":",
        b"\x00\xff\xfe garbage",
        b"[1,2,3]",
        b"{\"version\":1}",
    ] {
        let bed = Bed::new(ReusePolicy::RevokeGrant);
        std::fs::write(&bed.path, bytes).expect("write");
        let err = bed.store().access_token().unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{bytes:?}: {err:?}");
        assert!(err.to_string().contains(&bed.path.display().to_string()));
        assert_eq!(bed.bytes(), bytes, "untouched");
        assert_eq!(bed.server.counters().refresh_requests, 0);
        assert!(
            bed.store()
                .save(
                    &bed.server
                        .seed_session(crate::common::TOKEN_ENDPOINT)
                        .expect("seed")
                )
                .is_ok(),
            "an explicit save (a new login) may replace it"
        );
    }
}

#[test]
fn a_torn_read_is_retried_before_the_file_is_called_corrupt() {
    let bed = Arc::new(Bed::new(ReusePolicy::RevokeGrant));
    let session = bed.seed();
    let good = bed.bytes();
    std::fs::write(&bed.path, &good[..good.len() / 2]).expect("tear");
    let retries = Arc::new(AtomicUsize::new(0));
    {
        let (path, retries) = (bed.path.clone(), Arc::clone(&retries));
        bed.clock.on_sleep(move |_| {
            // The cache catches up on the second re-read.
            if retries.fetch_add(1, Ordering::SeqCst) == 1 {
                std::fs::write(&path, &good).expect("heal");
            }
        });
    }
    assert_eq!(bed.store().load().expect("load"), Some(session));
    assert_eq!(retries.load(Ordering::SeqCst), 2);
}

/// Failure table: file of a newer format version
#[test]
fn a_file_from_a_newer_version_is_refused_and_kept() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let newer = String::from_utf8(bed.bytes())
        .expect("utf8")
        .replace("\"version\":1", "\"version\":7");
    std::fs::write(&bed.path, &newer).expect("write");
    let err = bed.store().access_token().unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { found: 7, .. }),
        "{err:?}"
    );
    assert_eq!(bed.bytes(), newer.as_bytes());
    // A future format that no longer parses as ours is still reported by its version.
    std::fs::write(&bed.path, br#"{"version":3,"entirely":"different"}"#).expect("write");
    let err = bed.store().load().unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { found: 3, .. }),
        "{err:?}"
    );
}

/// Failure table: symlink / directory / FIFO / > 1 MiB at the path
#[test]
fn a_directory_a_symlink_or_a_huge_file_at_the_path_is_refused() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    std::fs::create_dir(&bed.path).expect("mkdir");
    assert!(matches!(
        bed.store().load(),
        Err(Error::NotASessionFile { .. })
    ));
    assert!(matches!(
        bed.store().delete(),
        Err(Error::NotASessionFile { .. })
    ));
    assert!(bed.path.is_dir());
    std::fs::remove_dir(&bed.path).expect("rmdir");

    let target = bed.dir.path().join("elsewhere.json");
    let session = bed
        .server
        .seed_session(crate::common::TOKEN_ENDPOINT)
        .expect("seed");
    std::fs::write(&target, session.to_json()).expect("write");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&target, &bed.path).expect("symlink");
        let err = bed.store().load().unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(matches!(
            bed.store().save(&session),
            Err(Error::NotASessionFile { .. })
        ));
        assert!(
            std::fs::symlink_metadata(&bed.path)
                .expect("meta")
                .is_symlink(),
            "not replaced"
        );
        std::fs::remove_file(&bed.path).expect("rm");
    }

    let f = std::fs::File::create(&bed.path).expect("create");
    f.set_len(50 * 1024 * 1024).expect("grow");
    let err = bed.store().access_token().unwrap_err();
    assert!(matches!(err, Error::NotASessionFile { .. }), "{err:?}");
    assert_eq!(
        std::fs::metadata(&bed.path).expect("meta").len(),
        50 * 1024 * 1024
    );
}

/// A 2xx body under the transport's 256 KiB cap is accepted and its unknown fields kept in
/// `extra`, but the session is saved pretty-printed: a vendor field holding a long list (one
/// line and one indentation per element) grows past the 1 MiB a session file may have, so
/// the save succeeds and every later read refuses the file (`NotASessionFile`): the session,
/// rotated refresh token included, can no longer be used. Failure-table row "a response whose
/// unmodelled fields would make the session file larger than 1 MiB", and invariant 8: the
/// file credlock writes must be one credlock reads.
#[test]
fn every_session_credlock_saves_is_one_it_can_read_back() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    bed.server.reshape_next_success(|mut m| {
        let ones = vec![serde_json::json!(1); 110_000];
        m.insert("groups".into(), serde_json::json!({ "ids": [ones] }));
        let body = serde_json::to_vec(&m).expect("json");
        assert!(
            body.len() < 256 * 1024,
            "within the transport's cap: {}",
            body.len()
        );
        body
    });
    bed.store().access_token().expect("refreshed and saved");
    let size = std::fs::metadata(&bed.path).expect("saved").len();
    let reread = bed.store().load();
    assert!(
        matches!(reread, Ok(Some(_))),
        "the saved file ({size} bytes) cannot be read back: {reread:?}"
    );
}

#[cfg(unix)]
#[test]
fn files_are_0600_and_a_new_directory_0700_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let nested = bed.dir.path().join("a").join("b").join("session.json");
    let session = bed
        .server
        .seed_session(crate::common::TOKEN_ENDPOINT)
        .expect("seed");
    let old = rustix::process::umask(rustix::fs::Mode::empty());
    let saved = Store::new(&nested).save(&session);
    rustix::process::umask(old);
    saved.expect("save");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&nested), 0o600);
    assert_eq!(mode(&crate::common::lock_path(&nested)), 0o600);
    assert_eq!(mode(nested.parent().expect("b")), 0o700);
    assert_eq!(mode(&bed.dir.path().join("a")), 0o700);
}

#[cfg(unix)]
#[test]
fn a_file_readable_by_others_is_tightened_on_read() {
    use std::os::unix::fs::PermissionsExt;
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed();
    std::fs::set_permissions(&bed.path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let store = bed
        .store()
        .on_event(move |e| sink.lock().expect("lock").push(e.clone()));
    store.load().expect("load").expect("session");
    assert_eq!(store.file_mode(), Some(0o600));
    assert!(events.lock().expect("lock").iter().any(|e| matches!(
        e,
        credlock::Event::PermissionsTightened {
            from_mode: 0o644,
            ..
        }
    )));
}

/// Failure table: process killed at any point
#[test]
fn a_killed_writers_temp_file_is_removed_by_the_next_write() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed();
    std::fs::write(bed.dir.path().join(".session.json.Xk3j9a.tmp"), b"{\"half").expect("leftover");
    assert_eq!(bed.stray_files().len(), 1);
    bed.seed();
    assert!(bed.stray_files().is_empty(), "{:?}", bed.stray_files());
}

/// As an unprivileged user, a write into a read-only directory fails cleanly: typed error,
/// old file byte-for-byte, no temp file. Root ignores directory permissions, so when run as
/// root the test re-runs itself as `nobody` through `setpriv`.
///
/// Failure table: save/delete: directory not writable, disk full
#[cfg(unix)]
#[test]
fn a_failed_write_leaves_the_old_file_and_no_temp_file() {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(dir) = std::env::var("CREDLOCK_TEST_READONLY_DIR") {
        let path = std::path::Path::new(&dir).join("session.json");
        let before = std::fs::read(&path).expect("read");
        let session = credlock::Session::from_json(&before, &path).expect("parse");
        let err = Store::new(&path)
            .with_lock_mode(credlock::LockMode::Off)
            .save(&session)
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(&dir), "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), before);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("ls")
            .map(|e| e.expect("e").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        return;
    }
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed();
    std::fs::remove_file(crate::common::lock_path(&bed.path)).expect("rm lock");
    std::fs::set_permissions(&bed.path, std::fs::Permissions::from_mode(0o644))
        .expect("chmod file");
    std::fs::set_permissions(bed.dir.path(), std::fs::Permissions::from_mode(0o555))
        .expect("chmod dir");
    let is_root = rustix::process::geteuid().is_root();
    let mut cmd = if is_root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(std::env::current_exe().expect("exe"));
        c
    } else {
        std::process::Command::new(std::env::current_exe().expect("exe"))
    };
    if is_root {
        // `nobody` must be able to reach the directory through the temp dir's parents.
        std::fs::set_permissions(bed.dir.path(), std::fs::Permissions::from_mode(0o555))
            .expect("chmod");
    }
    let out = cmd
        .args([
            "--exact",
            "files::a_failed_write_leaves_the_old_file_and_no_temp_file",
            "--nocapture",
        ])
        .env("CREDLOCK_TEST_READONLY_DIR", bed.dir.path())
        .output()
        .expect("run the unprivileged half");
    std::fs::set_permissions(bed.dir.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod back");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran the test: {stdout}"
    );
}

/// A session file, lock file or lease owned by another user is refused, on every path, and
/// left as it is. Root is held to the same rule (it would otherwise write the user's refreshed
/// session back owned by root). Needs root to give a file away; skipped otherwise.
///
/// Failure table: session, lock or lease file owned by another user (not root)
#[cfg(unix)]
#[test]
fn a_session_lock_or_lease_owned_by_another_user_is_refused_and_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: giving a file to another user (uid 65534) needs root");
        return;
    }
    let give_away = |p: &std::path::Path| {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).expect("chown");
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    };
    // The session file, planted 0644 by another user.
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    give_away(&bed.path);
    let before = bed.bytes();
    let refused = |r: Result<(), Error>, path: &std::path::Path, what: &str| {
        let err = r.unwrap_err();
        assert!(
            matches!(&err, Error::NotASessionFile { path: p, .. } if p == path),
            "{what}: {err:?}"
        );
        assert!(
            err.to_string().contains("owned by uid 65534"),
            "{what}: {err}"
        );
    };
    refused(bed.store().load().map(drop), &bed.path, "load");
    refused(bed.store().access_token().map(drop), &bed.path, "token");
    refused(bed.store().delete().map(drop), &bed.path, "delete");
    let login = bed
        .server
        .seed_session(crate::common::TOKEN_ENDPOINT)
        .expect("seed");
    refused(bed.store().save(&login), &bed.path, "save");
    assert_eq!(bed.bytes(), before, "untouched");
    assert_eq!(bed.server.counters().refresh_requests, 0);

    // The lock file.
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let lock = crate::common::lock_path(&bed.path);
    give_away(&lock);
    refused(bed.store().access_token().map(drop), &lock, "lock");
    assert_eq!(bed.server.counters().refresh_requests, 0);

    // The lease.
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let lease = crate::common::lease_path(&bed.path);
    std::fs::write(&lease, b"{}").expect("plant");
    give_away(&lease);
    refused(
        bed.store()
            .with_lock_mode(credlock::LockMode::Lease)
            .access_token()
            .map(drop),
        &lease,
        "lease",
    );
    assert_eq!(bed.server.counters().refresh_requests, 0);
    assert_eq!(std::fs::read(&lease).expect("left"), b"{}");
}

/// Any user may rename a file over the session in a directory that every user may write to
/// (unless the sticky bit forbids replacing others' files): refused, naming the directory.
///
/// Failure table: directory writable by every user without the sticky bit
#[cfg(unix)]
#[test]
fn a_directory_writable_by_every_user_without_the_sticky_bit_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    bed.seed_expired();
    let chmod = |mode| {
        std::fs::set_permissions(bed.dir.path(), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    };
    chmod(0o777);
    for (what, r) in [
        ("load", bed.store().load().map(drop)),
        ("token", bed.store().access_token().map(drop)),
        ("delete", bed.store().delete().map(drop)),
    ] {
        let err = r.unwrap_err();
        assert!(
            matches!(&err, Error::Io { path, source, .. }
                if path == bed.dir.path() && source.kind() == std::io::ErrorKind::PermissionDenied),
            "{what}: {err:?}"
        );
        assert!(
            err.with_causes().contains("writable by every user"),
            "{what}: {err}"
        );
    }
    assert_eq!(bed.server.counters().refresh_requests, 0);
    chmod(0o1777);
    assert!(
        bed.store().access_token().is_ok(),
        "with the sticky bit (as /tmp), nobody can replace our files"
    );
    chmod(0o700);
}
