//! Lock-free readers never conclude "no session" while a compare-and-delete has the file
//! renamed aside for a moment.

use std::time::Duration;

use credlock::Store;
use credlock::testing::ReusePolicy;

use crate::common::Bed;

#[test]
fn a_reader_waits_out_a_compare_and_delete_that_puts_the_file_back() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let saved = bed.seed();
    // What `remove_if` does when a newer session turns out to be in the file: rename it
    // aside, look, and put it back. The reader runs in between.
    let aside = bed
        .dir
        .path()
        .join(format!(".session.json.aside-{}-1-0", std::process::id()));
    std::fs::rename(&bed.path, &aside).expect("rename aside");
    // The deleting process holds an flock on the aside file while it decides.
    let mut marked = fd_lock::RwLock::new(std::fs::File::open(&aside).expect("open aside"));
    let put_back = {
        let (aside, path) = (aside.clone(), bed.path.clone());
        std::thread::spawn(move || {
            let _held = marked.try_write().expect("mark the aside file");
            std::thread::sleep(Duration::from_millis(40));
            std::fs::rename(&aside, &path).expect("put back");
        })
    };
    // Give the other thread time to take its mark before the reader looks.
    std::thread::sleep(Duration::from_millis(5));
    // The system clock: the reader's pauses are real, as the other thread's are.
    let loaded = crate::common::within(Duration::from_secs(10), {
        let path = bed.path.clone();
        move || Store::new(&path).load()
    });
    put_back.join().expect("thread");
    assert_eq!(loaded.expect("load"), Some(saved), "not 'no session'");
}

#[test]
fn without_a_delete_in_progress_a_missing_file_is_no_session_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let started = std::time::Instant::now();
    assert!(Store::new(&path).load().expect("load").is_none());
    // No retries when there is nothing aside: a generous bound that the retry schedule
    // (10 + 25 + 50 + 100 ms) would exceed only together with a very slow machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_aside_file_left_by_a_killed_delete_does_not_delay_no_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    // Nobody holds its mark: the process that set it aside is gone.
    std::fs::write(dir.path().join(".session.json.aside-999-1-0"), b"{}").expect("write");
    // A reader with a long retry schedule would wait if it took the file for a delete in
    // progress.
    let store = Store::new(&path).with_torn_read_retries(vec![Duration::from_secs(5)]);
    let started = std::time::Instant::now();
    assert!(store.load().expect("load").is_none());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a leftover aside file is not waited for: {:?}",
        started.elapsed()
    );
}
