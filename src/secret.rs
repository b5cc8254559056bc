//! A string that must never be printed: tokens and client secrets.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string: an access token, a refresh token or a client secret.
///
/// Its `Debug` prints `Secret([redacted])` and it has no `Display`, so a secret cannot reach a
/// log line, an error message or a panic by accident. Read the value with [`Secret::secret`]
/// where it is really needed (an `Authorization` header, a request body).
///
/// Equality compares the values; it is what the refresh protocol uses to tell a rotated refresh
/// token from the one that failed.
///
/// `Secret` implements `Serialize` (the session file needs the value): a struct of yours that
/// holds one and is serialised, to a log for instance, carries the value. The memory is not
/// zeroed on drop.
///
/// # Examples
/// ```
/// let token = credlock::Secret::new("s3cr3t");
/// assert_eq!(format!("{token:?}"), "Secret([redacted])");
/// assert_eq!(token.secret(), "s3cr3t");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value. Every call site is a place where the secret leaves its wrapper.
    #[must_use]
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s:#?}").contains("hunter2"));
    }
}
