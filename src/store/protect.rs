//! Protection at rest on the store: how its file is read and written (sealed or not), and
//! the conversion of a stored session from one protection to the other.

use super::Store;
use crate::error::Error;
use crate::file::atomic;
use crate::protection::{self, FileProtection, Protection, Sealing};
use crate::session::model::Session;

/// What [`Store::protect`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum Protected {
    /// The file already had the protection asked for (and, sealed, its key was readable):
    /// nothing was written.
    Unchanged(FileProtection),
    /// The file was rewritten, atomically and under the guards, with the same session.
    Changed {
        /// The protection before.
        from: FileProtection,
        /// The protection now.
        to: FileProtection,
    },
}

impl Store {
    /// The session in a session file's bytes, as the file's header says to read them.
    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<Session, Error> {
        protection::decode(bytes, &self.path, self.options.keychain_timeout)
    }

    /// The bytes of a session written anew (a save, an import, a login), under the guards:
    /// protected as [`Store::with_protection`] says, or else as the file it replaces is. A
    /// sealed file's key is reused; a new key is made only for a file not yet sealed.
    pub(crate) fn encode_new(&self, session: &Session) -> Result<Vec<u8>, Error> {
        let current = self.current_bytes()?;
        let sealing = match (self.options.protection, current) {
            (Some(Protection::None), _) | (None, None) => Sealing::Plain,
            (Some(Protection::Keyring), Some(bytes)) if protection::envelope::is_sealed(&bytes) => {
                match self.sealing_of(&bytes) {
                    // A sealed file with a damaged header: a new key for the new session.
                    Err(Error::Corrupt { .. }) => self.new_sealing()?,
                    other => other?,
                }
            }
            (Some(Protection::Keyring), _) => self.new_sealing()?,
            (None, Some(bytes)) => match self.sealing_of(&bytes) {
                // A corrupt file says nothing about how it was meant to be kept: the session
                // replacing it is written as the store is set (plain, here).
                Err(Error::Corrupt { .. }) => Sealing::Plain,
                other => other?,
            },
        };
        protection::encode(session, &sealing, &self.path)
    }

    /// The bytes of the session a refresh returned, under the guards: sealed as the file it
    /// replaces, with the same key (read from the keychain at most once per process, and
    /// never written); a keychain that does not give it fails the save, and nothing is
    /// written in the clear.
    pub(crate) fn encode_successor(&self, session: &Session) -> Result<Vec<u8>, Error> {
        match self.current_bytes()? {
            Some(bytes) => {
                let sealing = self.sealing_of(&bytes)?;
                protection::encode(session, &sealing, &self.path)
            }
            None => self.encode_new(session),
        }
    }

    fn sealing_of(&self, bytes: &[u8]) -> Result<Sealing, Error> {
        protection::sealing_of(bytes, &self.path, self.options.keychain_timeout)
    }

    /// A new key in the keychain, unless the file may be shared by other machines.
    fn new_sealing(&self) -> Result<Sealing, Error> {
        self.refuse_keyring_if_shared()?;
        protection::new_sealing(&self.path, self.options.keychain_timeout)
    }

    /// A key in this machine's keychain cannot be read by another machine: refused where the
    /// file may be shared by several (a network or FUSE filesystem, or a lease in force).
    fn refuse_keyring_if_shared(&self) -> Result<(), Error> {
        if self.on_server() {
            return Err(Error::ProtectionRefused {
                path: self.path.clone(),
                reason: "the session is kept on a server that other machines share, and a key in this machine's keychain cannot be read on another machine; protect the server instead (ACL users, TLS, no persistence files readable by others)".to_owned(),
            });
        }
        let plan = self.lock_plan();
        let kind = &plan.filesystem.kind;
        if !kind.is_networked() && !plan.guards.lease() {
            return Ok(());
        }
        let place = if kind.is_networked() {
            format!(
                "on a {} filesystem, which other machines may share",
                kind.name()
            )
        } else {
            "guarded by a lease, which is for a file that other machines share".to_owned()
        };
        Err(Error::ProtectionRefused {
            path: self.path.clone(),
            reason: format!(
                "the file is {place}, and a key in this machine's keychain cannot be read on another machine (its credlock would refuse the file); if only this machine ever uses the file, say so (CREDLOCK_FS_KIND=local, or Store::with_filesystem_kind) and run it again"
            ),
        })
    }

    /// Whether a session this store writes anew could be protected as
    /// [`Store::with_protection`] asks, checked before a login that would otherwise be lost
    /// at its save: with [`Protection::Keyring`], refuses a file other machines may share and
    /// asks the keychain whether it answers (within the keychain timeout). Nothing is written
    /// or created.
    ///
    /// # Errors
    /// [`Error::ProtectionRefused`], [`Error::Keychain`].
    pub fn check_protection(&self) -> Result<(), Error> {
        if self.options.protection != Some(Protection::Keyring) {
            return Ok(());
        }
        self.refuse_keyring_if_shared()?;
        protection::probe_keychain(&self.path, self.options.keychain_timeout)
    }

    /// The stored session file's protection, from its header (no keychain is asked); `None`
    /// if there is no file.
    ///
    /// # Errors
    /// The read errors of [`Store::load`] other than the keychain's: [`Error::Corrupt`] for a
    /// damaged header, [`Error::UnsupportedProtection`], [`Error::Io`].
    pub fn file_protection(&self) -> Result<Option<FileProtection>, Error> {
        match self.current_bytes()? {
            None => Ok(None),
            Some(bytes) => protection::protection_of(&bytes, &self.path).map(Some),
        }
    }

    /// Converts the stored session to `to`, under the guards, atomically: with
    /// [`Protection::Keyring`] a new random key is stored in the OS keychain and the file is
    /// replaced by the session sealed under it; with [`Protection::None`] the file is replaced
    /// by the session in plain JSON (mode 0600), which needs the key, so run it on a machine
    /// whose keychain has it. The key stays in the keychain (service `credlock`, the key id
    /// as user name) until removed there.
    ///
    /// # Errors
    /// - [`Error::ProtectionRefused`]: [`Protection::Keyring`] for a file on a network or FUSE
    ///   filesystem, or under a lease (other machines could not read the key); any
    ///   protection for a session kept on a server;
    /// - [`Error::NoSession`]: nothing to convert;
    /// - [`Error::Keychain`]: the keychain did not take or give the key;
    /// - the read errors of [`Store::load`], [`Error::LockTimeout`], [`Error::Io`].
    ///
    /// On any error the file is exactly as it was.
    ///
    /// # Examples
    /// ```no_run
    /// use credlock::{Protected, Protection, Store};
    /// let store = Store::new("/home/me/.config/my-cli/session.json");
    /// if let Protected::Changed { to, .. } = store.protect(Protection::Keyring)? {
    ///     println!("protection: {to}");
    /// }
    /// # Ok::<(), credlock::Error>(())
    /// ```
    pub fn protect(&self, to: Protection) -> Result<Protected, Error> {
        // A session on a server is kept as the server keeps it (plain, and never sealed with
        // one machine's key): there is nothing to convert, and no file to convert.
        if self.on_server() {
            return Err(Error::ProtectionRefused {
                path: self.path.clone(),
                reason: "the session is kept on a server, which protects it (ACL users, TLS, persistence files readable by no one else): there is no file to convert".to_owned(),
            });
        }
        if to == Protection::Keyring {
            self.refuse_keyring_if_shared()?;
        }
        let _held = self.hold()?;
        let Some(content) = atomic::read(&self.path)? else {
            return Err(self.no_session());
        };
        let from = protection::protection_of(&content.bytes, &self.path)?;
        // Also for "unchanged": a sealed file is only reported protected if its key opens it.
        let session = self.decode(&content.bytes)?;
        let sealing = match (to, &from) {
            (Protection::None, FileProtection::None)
            | (Protection::Keyring, FileProtection::Keyring { .. }) => {
                return Ok(Protected::Unchanged(from));
            }
            (Protection::None, _) => Sealing::Plain,
            (Protection::Keyring, _) => {
                protection::new_sealing(&self.path, self.options.keychain_timeout)?
            }
        };
        let bytes = protection::encode(&session, &sealing, &self.path)?;
        // Under the guards nothing else writes; a writer that takes no lock is not overwritten.
        let unchanged = |now: Option<&[u8]>| now == Some(content.bytes.as_slice());
        if !atomic::write_if(&self.path, &bytes, unchanged)? {
            return Err(Error::Io {
                action: "convert",
                path: self.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "another process replaced the session during the conversion, which was not made: run it again",
                ),
            });
        }
        Ok(Protected::Changed {
            from,
            to: protection::protection_of(&bytes, &self.path)?,
        })
    }
}
