//! Windows refuses some file operations while another handle has the file open or locked,
//! where Unix lets them through: a rename over a file a reader has open (without POSIX rename
//! semantics: older Windows, FAT, many SMB shares, Wine) fails with "Access denied" or a
//! sharing violation, and a read of a file whose writer still holds a byte-range lock fails
//! with a lock violation. Those handles are held for microseconds, so the operation is tried
//! again for a short while before its error is believed.

use std::time::Duration;

use crate::basics::wait::{self, Attempt, Backoff, Waited};

/// How long a file may stay busy before the error is reported.
pub(crate) const PATIENCE: Duration = Duration::from_secs(2);

/// Runs `op` until it succeeds, fails for a reason other than another handle, or
/// [`PATIENCE`] has passed. On Unix, once.
pub(crate) fn retry_while_busy<T>(op: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    retry_while(op, || true)
}

/// As [`retry_while_busy`], asking `worth_waiting` after each busy answer whether the thing is
/// one that can be busy at all (a directory answers "Access denied" for ever).
pub(crate) fn retry_while<T>(
    mut op: impl FnMut() -> std::io::Result<T>,
    worth_waiting: impl Fn() -> bool,
) -> std::io::Result<T> {
    let attempt = || match op() {
        Err(e) if is_busy(&e) => Attempt::Pending(e),
        done => Attempt::Done(done),
    };
    let pauses = Backoff::doubling(Duration::from_micros(500), Duration::from_millis(50));
    match wait::until(PATIENCE, pauses, attempt, |_| {
        (!worth_waiting()).then_some(())
    }) {
        Waited::Done(done) => done,
        Waited::Stopped((), busy) | Waited::TimedOut(_, busy) => Err(busy),
    }
}

/// Whether `e` means another handle is in the way (Windows), not a real refusal.
pub(crate) fn is_busy(e: &std::io::Error) -> bool {
    // ERROR_ACCESS_DENIED (a rename over an open file), ERROR_SHARING_VIOLATION,
    // ERROR_LOCK_VIOLATION.
    cfg!(windows) && matches!(e.raw_os_error(), Some(5 | 32 | 33))
}
