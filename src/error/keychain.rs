//! What went wrong with the OS keychain of a protected store (see `crate::protection`).

/// What went wrong with the OS keychain (see [`super::Error::Keychain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeychainProblem {
    /// No keychain answered: none is running or reachable (on Linux, no Secret Service on the
    /// session D-Bus, or no session bus at all: a headless SSH login, a container, WSL).
    Unreachable,
    /// The keychain is locked, or refused this program access.
    Locked,
    /// The keychain did not answer within the deadline (an unlock prompt nobody sees, a hung
    /// agent).
    TimedOut,
    /// The key is not in the keychain (deleted, or this is another machine or user).
    KeyMissing,
    /// The keychain failed otherwise, or its entry is not a credlock key.
    Failed,
    /// This credlock was built without keychain support (the `keyring` feature).
    NotBuiltIn,
}

impl KeychainProblem {
    /// A stable snake-case name, for JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            KeychainProblem::Unreachable => "unreachable",
            KeychainProblem::Locked => "locked",
            KeychainProblem::TimedOut => "timed_out",
            KeychainProblem::KeyMissing => "key_missing",
            KeychainProblem::Failed => "failed",
            KeychainProblem::NotBuiltIn => "not_built_in",
        }
    }

    /// What happened, in words.
    #[must_use]
    pub fn what(self) -> &'static str {
        match self {
            KeychainProblem::Unreachable => "no OS keychain is reachable",
            KeychainProblem::Locked => "the OS keychain is locked or refused access",
            KeychainProblem::TimedOut => "the OS keychain did not answer in time",
            KeychainProblem::KeyMissing => "the key is gone from the OS keychain",
            KeychainProblem::Failed => "the OS keychain failed",
            KeychainProblem::NotBuiltIn => "this credlock has no keychain support",
        }
    }

    /// What the user can do about it.
    #[must_use]
    pub fn advice(self) -> &'static str {
        match self {
            KeychainProblem::Unreachable
            | KeychainProblem::Locked
            | KeychainProblem::TimedOut
            | KeychainProblem::Failed => {
                "start or unlock the keychain in this session (on Linux a Secret Service such as gnome-keyring, reached through DBUS_SESSION_BUS_ADDRESS) and try again, or run `credlock protect none` on a machine whose keychain has the key; logging in again is not needed"
            }
            KeychainProblem::KeyMissing => {
                "without the key the file cannot be decrypted: restore the keychain entry (service `credlock`, the key id as user name) from a backup, or remove the file and log in again"
            }
            KeychainProblem::NotBuiltIn => {
                "use a credlock built with the `keyring` feature (the CLI is), or run `credlock protect none` with one"
            }
        }
    }
}

impl std::fmt::Display for KeychainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what())
    }
}
