use super::put_back::{PutBackMethod, put_back_with};
use super::remove_if::set_aside_files;
use super::*;
use crate::file::checked_open::open_no_follow;

#[test]
fn write_if_replaces_only_what_the_check_accepts_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let is = |want: &'static [u8]| move |b: Option<&[u8]>| b == Some(want);
    assert!(
        !write_if(&path, b"new", is(b"sent")).expect("io"),
        "no file: a logout"
    );
    assert!(!path.exists());
    write(&path, b"newer").expect("write");
    assert!(!write_if(&path, b"new", is(b"sent")).expect("io"));
    assert_eq!(std::fs::read(&path).expect("read"), b"newer");
    write(&path, b"sent").expect("write");
    assert!(write_if(&path, b"new", is(b"sent")).expect("io"));
    assert_eq!(std::fs::read(&path).expect("read"), b"new");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn a_leftover_temp_file_is_removed_by_the_next_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let leftover = dir.path().join(".session.json.abc123.tmp");
    std::fs::write(&leftover, b"half").expect("write");
    write(&path, b"{}").expect("write");
    assert!(!leftover.exists());
    assert_eq!(std::fs::read(&path).expect("read"), b"{}");
}

#[test]
fn a_locked_temp_file_of_a_live_writer_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let live = dir.path().join(".session.json.live00.tmp");
    std::fs::write(&live, b"in progress").expect("write");
    let held = open_no_follow(&live, true).expect("open");
    assert!(crate::file::lock::hold_until_closed(&held), "locked");
    write(&path, b"{}").expect("write");
    assert!(live.exists());
}

#[test]
fn remove_if_deletes_only_what_still_matches_and_puts_the_rest_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    std::fs::write(&path, b"newer").expect("write");
    assert!(!remove_if(&path, |b| b == b"failed").expect("io"));
    assert_eq!(std::fs::read(&path).expect("kept"), b"newer");
    assert!(remove_if(&path, |b| b == b"newer").expect("io"));
    assert!(!path.exists());
    assert!(
        !remove_if(&path, |_| true).expect("io"),
        "nothing to remove"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("ls").count(),
        0,
        "nothing left aside"
    );
}

/// Where `link` fails (vfat, exfat, rclone, s3fs, davfs; here ext4 refusing a 65001st link
/// with `EMLINK`), the file that did not match must still be put back, never unlinked.
#[cfg(target_os = "linux")]
#[test]
fn a_file_that_did_not_match_is_put_back_even_where_link_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    std::fs::write(&path, b"newer").expect("write");
    let links = dir.path().join("links");
    std::fs::create_dir(&links).expect("mkdir");
    let link_failed = std::sync::atomic::AtomicBool::new(false);
    let removed = remove_if(&path, |bytes| {
        // Between the rename and the put-back: make `link` of the set-aside file fail.
        let aside = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("e").path())
            .find(|p| p.is_file() && p != &path)
            .expect("the set-aside file");
        for i in 0..70_000 {
            match std::fs::hard_link(&aside, links.join(i.to_string())) {
                Ok(()) => {}
                Err(e) => {
                    link_failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    eprintln!("link fails after {i} links: {e}");
                    break;
                }
            }
        }
        bytes == b"failed"
    })
    .expect("io");
    if !link_failed.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!("skipped the link failure: this filesystem has no link limit");
    }
    assert!(!removed);
    assert_eq!(std::fs::read(&path).expect("kept"), b"newer", "put back");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("e").file_name())
        .filter(|n| n != "links" && n != "session.json")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn without_rename_or_link_a_file_is_put_back_by_exclusive_copy_and_never_over_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (aside, path) = (dir.path().join("aside"), dir.path().join("session.json"));
    std::fs::write(&aside, b"winner").expect("write");
    put_back_with(&aside, &path, &[PutBackMethod::ExclusiveCopy]).expect("copied");
    assert_eq!(std::fs::read(&path).expect("read"), b"winner");
    assert!(!aside.exists());
    std::fs::write(&aside, b"older").expect("write");
    for methods in [
        &PutBackMethod::ALL[..],
        &[PutBackMethod::Link],
        &[PutBackMethod::ExclusiveCopy],
    ] {
        let e = put_back_with(&aside, &path, methods).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{methods:?}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"winner",
            "{methods:?}"
        );
        assert_eq!(
            std::fs::read(&aside).expect("kept"),
            b"older",
            "{methods:?}"
        );
    }
    assert!(put_back_with(&aside, &path, &[]).is_err(), "no way at all");
    assert!(aside.exists());
}

/// Failure table: compare-and-delete: the set-aside file did not match and cannot be put back
#[test]
fn a_file_that_cannot_be_put_back_is_left_aside_and_the_error_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    std::fs::write(&path, b"newer").expect("write");
    let seen_in_progress = std::sync::Mutex::new(Vec::new());
    let err = remove_if(&path, |_| {
        *seen_in_progress.lock().expect("lock") = set_aside_files(&path);
        // A writer saves the newest session while the newer one is set aside.
        std::fs::write(&path, b"newest").expect("write");
        false
    })
    .unwrap_err();
    let in_progress = seen_in_progress.into_inner().expect("lock");
    assert_eq!(in_progress.len(), 1, "{in_progress:?}");
    assert!(in_progress[0].1, "marked in progress while it runs");
    let aside = &in_progress[0].0;
    let name = aside.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(name.starts_with(".session.json.aside-"), "{name}");
    assert!(
        matches!(&err, Error::Io { path: p, .. } if p == aside),
        "{err:?}"
    );
    assert!(err.with_causes().contains("move it back"), "{err}");
    assert_eq!(std::fs::read(aside).expect("kept"), b"newer");
    assert_eq!(std::fs::read(&path).expect("read"), b"newest");
    assert_eq!(
        set_aside_files(&path),
        vec![(aside.clone(), false)],
        "left over"
    );
    // The temp-file sweep of the next write leaves it alone.
    write(&path, b"after").expect("write");
    assert!(aside.exists());
}

#[test]
fn files_of_other_names_are_not_swept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = dir.path().join(".other.json.abc.tmp");
    std::fs::write(&other, b"x").expect("write");
    write(&dir.path().join("session.json"), b"{}").expect("write");
    assert!(other.exists());
}

#[test]
fn a_write_is_in_progress_only_while_a_live_writer_marks_its_temp_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    assert!(!write_in_progress(&path), "no temp file");
    let leftover = dir.path().join(".session.json.dead00.tmp");
    std::fs::write(&leftover, b"half").expect("write");
    assert!(
        !write_in_progress(&path),
        "a killed writer's file is not a write"
    );
    let live = dir.path().join(".session.json.live00.tmp");
    std::fs::write(&live, b"in progress").expect("write");
    let held = open_no_follow(&live, true).expect("open");
    assert!(crate::file::lock::hold_until_closed(&held), "locked");
    assert!(write_in_progress(&path), "a live writer's marked file");
    let other = dir.path().join("other.json");
    assert!(!write_in_progress(&other), "another file's writer");
    drop(held);
    assert!(!write_in_progress(&path), "the mark goes with the writer");
}
