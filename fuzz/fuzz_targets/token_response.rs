//! Token endpoint bodies, success and error: no panic; a parsed token response re-serialises
//! and parses to the same value; error text never quotes the body; an echoed secret never
//! reaches an error description.
#![no_main]

use libfuzzer_sys::fuzz_target;

const MARKER: &str = "SECRET-MARKER";

fuzz_target!(|data: &[u8]| {
    match credlock::TokenResponse::from_json(data) {
        Ok(r) => {
            let again = credlock::TokenResponse::from_json(&r.to_json()).expect("a serialised response parses");
            assert_eq!(again, r);
        }
        Err(e) => {
            let text = e.to_string();
            let shape: String = text.chars().filter(|c| !c.is_ascii_digit()).collect();
            let fixed = [
                "the body is JSON but not an object",
                "the body is not JSON (not valid JSON at line  column )",
                "the body is not JSON (valid JSON of the wrong shape at line  column )",
                "the body is not JSON (truncated JSON at line  column )",
                "no access_token",
                "no token_type",
                "access_token is empty",
                "access_token is not a string",
                "token_type is not a string",
                "refresh_token is not a string",
                "scope is not a string",
                "expires_in is negative",
                "expires_in is a string but not a number",
                "expires_in is not a number",
            ];
            assert!(fixed.contains(&shape.as_str()), "unexpected error text: {text}");
        }
    }
    if let Some(err) = credlock::OAuthError::from_json(data, &[MARKER]) {
        if let Some(d) = &err.description {
            assert!(!d.contains(MARKER));
            assert!(d.chars().count() <= 200 && !d.chars().any(char::is_control));
        }
        // Re-serialise and parse again: the same code and description.
        let body = serde_json::json!({"error": err.code.as_str(), "error_description": err.description});
        let again = credlock::OAuthError::from_json(body.to_string().as_bytes(), &[MARKER]).expect("parses");
        assert_eq!(again.code.as_str(), err.code.as_str());
        assert_eq!(again.description, err.description);
    }
});
