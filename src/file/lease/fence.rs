//! The fence of a critical section run under a lease: checked right before the steps that
//! must never overlap another holder's (the refresh request, the save).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::lease_file::{Seen, inspect};
use crate::basics::clock::unix_ms;
use crate::error::Error;

#[cfg(test)]
mod tests;

/// The fence of a held lease: [`Fence::still_held`] says whether the lease is still ours,
/// right before a step that must never overlap another holder's (the refresh request, the
/// save). A value inside the held lease ([`super::HeldLease::fence`]), and so inside the
/// store's held guards: a step that must be fenced takes the guards, which is how its
/// signature says what protects it.
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    path: PathBuf,
    nonce: String,
    /// When the lease runs out by our clock: moved on by every renewal of the heartbeat.
    expires_ms: Arc<AtomicU64>,
}

impl Fence {
    /// The fence of the lease at `path` that carries `nonce` and runs out at `expires_ms`.
    pub(crate) fn new(path: &Path, nonce: &str, expires_ms: Arc<AtomicU64>) -> Fence {
        Fence {
            path: path.to_path_buf(),
            nonce: nonce.to_owned(),
            expires_ms,
        }
    }

    /// `Ok` if the lease file still holds our nonce and our lease has not run out by our own
    /// clock (others judge it by theirs; past it they may break it). Otherwise
    /// [`Error::LeaseLost`]: the caller must neither send nor save. A lease that cannot be
    /// read counts as lost.
    ///
    /// # Errors
    /// [`Error::LeaseLost`].
    pub(crate) fn still_held(&self) -> Result<(), Error> {
        let ours = unix_ms(SystemTime::now()) < self.expires_ms.load(Ordering::SeqCst)
            && matches!(inspect(&self.path), Ok(Seen::Record(r)) if r.nonce == self.nonce);
        if ours {
            Ok(())
        } else {
            Err(Error::LeaseLost {
                lease_path: self.path.clone(),
            })
        }
    }
}
