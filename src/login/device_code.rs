//! What a device login shows the user (RFC 8628 §3.2): in a file of its own, so that the
//! login's face (`Prompt`) and the grant (`device.rs`) both use it without importing each other.

use std::time::Duration;

/// What the user must see to approve a device login: where to go and the code to enter.
///
/// Not secret (the user types the code on another device), but short-lived.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceCode {
    /// The code the user enters at `verification_uri`.
    pub user_code: String,
    /// The page where the user enters the code.
    pub verification_uri: String,
    /// The page with the code already filled in, if the server offers one (for a QR code or
    /// a click).
    pub verification_uri_complete: Option<String>,
    /// How long the code is valid.
    pub expires_in: Duration,
}
