//! Compare-and-delete: remove the session only if, at the moment of removal, it is still the
//! one judged deletable; and how readers tell a delete in progress.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::put_back::{PutBackMethod, put_back_with, same_file};
use super::{MAX_FILE_BYTES, rename, temp_prefix};
use crate::error::Error;
use crate::file::checked_open::{check_regular_and_owned, open_no_follow, split, sync_dir};
use crate::file::sidecar_names::unique_token;

/// Removes `path` only if its content still satisfies `still_the_one` when removed: the file
/// is renamed aside first (one atomic step that no writer can interleave with), checked, and
/// deleted, or put back (see [`put_back`]) without ever replacing a newer file saved
/// meanwhile. Returns whether it was removed.
///
/// A file that did not match is never unlinked: if it cannot be put back (a newer file took
/// the name, or the filesystem refuses every way of putting it back), it is left at its aside
/// name and the error names that path, so that the user can recover it.
///
/// The aside name is `.<name>.aside-<pid>-<nanos>-<n>` in the same directory ([`ASIDE_INFIX`]),
/// which the temp-file sweep never removes; while the compare-and-delete runs, its process
/// holds an `flock` on it, taken on the file before the rename ([`set_aside_files`] tells
/// in-progress from left-over ones). Between the rename and the put-back, a reader finds no
/// file at the path, and a marked aside file; that happens only when a writer raced the delete.
pub(crate) fn remove_if(path: &Path, still_the_one: impl Fn(&[u8]) -> bool) -> Result<bool, Error> {
    remove_if_with(path, still_the_one, &PutBackMethod::ALL)
}

pub(crate) fn remove_if_with(
    path: &Path,
    still_the_one: impl Fn(&[u8]) -> bool,
    methods: &[PutBackMethod],
) -> Result<bool, Error> {
    let (dir, name) = split(path)?;
    if !super::regular_file_exists(path)? {
        return Ok(false);
    }
    let aside = dir.join(aside_name(&name));
    // Marked in progress (an flock, held until the descriptor closes at the end) before the
    // rename: the flock is on the inode, which the rename carries to the aside name, so a
    // reader that finds no file at the path finds the aside file already marked.
    let marked = open_no_follow(path, false).ok();
    if let Some(f) = &marked {
        let _ = crate::file::lock::hold_until_closed(f);
    }
    match crate::file::busy::retry_while_busy(|| rename(path, &aside)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("delete the session file", path)(e)),
    }
    let held = match marked {
        Some(f) if same_file(&f, &aside) => Some(f),
        // A writer replaced the file between our open and the rename: what was set aside is
        // its file, marked only now (for that rare case, a reader can miss the mark).
        _ => {
            let f = open_no_follow(&aside, false).ok();
            if let Some(f) = &f {
                let _ = crate::file::lock::hold_until_closed(f);
            }
            f
        }
    };
    let matches = held.as_ref().is_some_and(|f| {
        f.metadata()
            .is_ok_and(|m| check_regular_and_owned(&m, &aside).is_ok() && m.len() <= MAX_FILE_BYTES)
            && {
                let mut bytes = Vec::new();
                f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).is_ok() && still_the_one(&bytes)
            }
    });
    if matches {
        std::fs::remove_file(&aside).map_err(Error::io("delete the session file", &aside))?;
        sync_dir(&dir)?;
        return Ok(true);
    }
    // A writer got in first: put its session back, unless an even newer one is there.
    match put_back_with(&aside, path, methods) {
        Ok(()) => {
            sync_dir(&dir)?;
            Ok(false)
        }
        Err(e) => Err(left_aside(&aside, path, e)),
    }
}

/// The error for a file left at its aside name: it names the aside path.
pub(crate) fn left_aside(aside: &Path, path: &Path, e: std::io::Error) -> Error {
    let why = if e.kind() == std::io::ErrorKind::AlreadyExists {
        format!(
            "{} was taken by a newer file meanwhile; the set-aside file was kept: if the one at {} is missing or older, move it back by hand",
            path.display(),
            path.display()
        )
    } else {
        format!(
            "{e}; the set-aside file was kept: move it back to {} by hand",
            path.display()
        )
    };
    Error::Io {
        action: "put back the file set aside at",
        path: aside.to_path_buf(),
        source: std::io::Error::new(e.kind(), why),
    }
}

/// What every aside name of a session file contains after `.<name>.`.
pub(crate) const ASIDE_INFIX: &str = "aside-";

fn aside_name(name: &str) -> String {
    format!("{}{ASIDE_INFIX}{}", temp_prefix(name), unique_token())
}

/// The files that a compare-and-delete of `path` has set aside, each with whether its
/// compare-and-delete is still in progress (its process holds an `flock` on it). One in
/// progress means the session may reappear at `path` in a moment; one that is not was left by
/// a process that died between the rename and the put-back, or could not be put back (see
/// [`remove_if`]): it holds a session that was never judged deletable. Where `flock` does not
/// reach other machines, another machine's compare-and-delete looks "not in progress".
pub(crate) fn set_aside_files(path: &Path) -> Vec<(PathBuf, bool)> {
    let Ok((dir, name)) = split(path) else {
        return Vec::new();
    };
    let prefix = format!("{}{ASIDE_INFIX}", temp_prefix(&name));
    super::files_named(&dir, &prefix, "")
        .into_iter()
        .map(|p| {
            let in_progress =
                open_no_follow(&p, false).is_ok_and(|f| crate::file::lock::is_held_elsewhere(&f));
            (p, in_progress)
        })
        .collect()
}

/// Whether a compare-and-delete ([`remove_if`]) of `path` is under way: a set-aside file
/// whose process still holds its `flock` (one left by a killed process is not, and must not
/// slow every "no session" answer). A reader that finds no file then must not conclude "no
/// session" yet: the file may be put back in a moment.
pub(crate) fn delete_in_progress(path: &Path) -> bool {
    set_aside_files(path)
        .iter()
        .any(|(_, in_progress)| *in_progress)
}
