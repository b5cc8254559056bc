//! No secret in the CLI's output, whatever the stored session holds. (Debug, Display, error
//! and event texts are in the library's `tests/all/secrets.rs`.)

use credlock_test::ReusePolicy;

use crate::common::{Bed, session_with_password_in_endpoint};

#[test]
fn status_does_not_print_a_password_in_the_stored_endpoint() {
    let bed = Bed::new(ReusePolicy::RevokeGrant);
    let (bytes, password) = session_with_password_in_endpoint(&bed);
    std::fs::write(&bed.path, bytes).expect("write");
    for args in [&["status"][..], &["--json", "status"][..]] {
        let out = crate::common::credlock(&bed.path, args)
            .output()
            .expect("run");
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!shown.contains(password), "{args:?} shows it: {shown}");
    }
}
