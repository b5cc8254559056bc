//! The fence of a critical section run under a lease: checked right before the steps that
//! must never overlap another holder's (the refresh request, the save).

use std::cell::RefCell;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::file::{Seen, inspect};
use crate::clock::unix_ms;
use crate::error::Error;

#[cfg(test)]
mod tests;

#[derive(Debug, Clone)]
struct FenceState {
    path: PathBuf,
    nonce: String,
    /// When the lease runs out by our clock: moved on by every renewal of the heartbeat.
    expires_ms: Arc<AtomicU64>,
}

impl PartialEq for FenceState {
    fn eq(&self, other: &FenceState) -> bool {
        self.path == other.path && self.nonce == other.nonce
    }
}

impl Eq for FenceState {}

thread_local! {
    /// The leases this thread holds while their critical sections run, innermost last.
    static FENCES: RefCell<Vec<FenceState>> = const { RefCell::new(Vec::new()) };
}

/// The fence of a critical section run under a lease: [`Fence::still_held`] says whether the
/// lease is still ours, right before a step that must never overlap another holder's (the
/// refresh request, the save). Outside a lease (advisory lock only, or no lock) it always
/// passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fence {
    held: Option<FenceState>,
}

impl Fence {
    /// The fence of the lease at `lease_path` if this thread is in its critical section.
    pub(crate) fn current(lease_path: &Path) -> Fence {
        Fence {
            held: FENCES.with(|f| {
                f.borrow()
                    .iter()
                    .rev()
                    .find(|s| s.path == lease_path)
                    .cloned()
            }),
        }
    }

    /// `Ok` if no lease is in use, or if the lease file still holds our nonce and our lease
    /// has not run out by our own clock (others judge it by theirs; past it they may break
    /// it). Otherwise [`Error::LeaseLost`]: the caller must neither send nor save. A lease
    /// that cannot be read counts as lost.
    ///
    /// # Errors
    /// [`Error::LeaseLost`].
    pub(crate) fn still_held(&self) -> Result<(), Error> {
        let Some(f) = &self.held else {
            return Ok(());
        };
        let ours = unix_ms(SystemTime::now()) < f.expires_ms.load(Ordering::SeqCst)
            && matches!(inspect(&f.path), Ok(Seen::Record(r)) if r.nonce == f.nonce);
        if ours {
            Ok(())
        } else {
            Err(Error::LeaseLost {
                lease_path: f.path.clone(),
            })
        }
    }
}

/// A lease's fence, installed on this thread for as long as it lives (removed on every path,
/// panics included). Not `Send`: the fence is thread-local.
#[derive(Debug)]
pub(crate) struct FenceInstalled {
    nonce: String,
    _this_thread: PhantomData<*const ()>,
}

impl FenceInstalled {
    pub(crate) fn new(path: &Path, nonce: &str, expires_ms: Arc<AtomicU64>) -> FenceInstalled {
        FENCES.with(|f| {
            f.borrow_mut().push(FenceState {
                path: path.to_path_buf(),
                nonce: nonce.to_owned(),
                expires_ms,
            });
        });
        FenceInstalled {
            nonce: nonce.to_owned(),
            _this_thread: PhantomData,
        }
    }
}

impl Drop for FenceInstalled {
    fn drop(&mut self) {
        FENCES.with(|f| {
            let mut fences = f.borrow_mut();
            if let Some(i) = fences.iter().rposition(|s| s.nonce == self.nonce) {
                fences.remove(i);
            }
        });
    }
}
