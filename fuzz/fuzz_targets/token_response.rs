//! Token endpoint bodies, success and error: no panic; a parsed token response re-serialises
//! and parses to the same value; error text never quotes the body; no run of eight characters
//! of a secret sent (raw, form-encoded, or inside the Basic header) reaches the `Display` or
//! `Debug` of an error, whatever encoding the server echoes it in.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The refresh token sent (the seeds of older corpora quote it).
const MARKER: &str = "SECRET-MARKER";
/// A client secret with characters every encoding changes.
const CLIENT_SECRET: &str = "cs+/0==Zq;x y@K9~ab";
const RUN: usize = 8;

fn runs(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.to_lowercase().chars().collect();
    if chars.len() < RUN {
        return vec![chars.into_iter().collect()];
    }
    chars.windows(RUN).map(|w| w.iter().collect()).collect()
}

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
                "the body is empty",
                "the body is not JSON (not valid JSON at line  column )",
                "the body is not JSON (valid JSON of the wrong shape at line  column )",
                "the body is not JSON (truncated JSON at line  column )",
                "the body is not JSON (read error at line  column )",
                "no access_token",
                "access_token is empty",
                "access_token is not a string",
            ];
            assert!(fixed.contains(&shape.as_str()), "unexpected error text: {text}");
        }
    }

    let basic = credlock::internal::base64(format!("cli:{}", credlock::internal::form_urlencode(CLIENT_SECRET)).as_bytes());
    let sent = [MARKER, CLIENT_SECRET, basic.as_str()];
    if let Some(err) = credlock::OAuthError::from_json(data, &sent) {
        let watched = [MARKER.to_owned(), CLIENT_SECRET.to_owned(), credlock::internal::form_urlencode(CLIENT_SECRET), basic.clone()];
        // Each text on its own: joined, the end of one and the start of the other could
        // complete a run neither holds.
        for text in [err.to_string().to_lowercase(), format!("{err:?}").to_lowercase()] {
            for secret in &watched {
                for run in runs(secret) {
                    assert!(!text.contains(&run), "{run:?} of a secret leaked: {text}");
                }
            }
        }
        if let Some(d) = &err.description {
            assert!(d.chars().count() <= 200 && !d.chars().any(char::is_control));
        }
        // Re-serialise and parse again: the same code and description.
        let body = serde_json::json!({"error": err.code.as_str(), "error_description": err.description});
        let again = credlock::OAuthError::from_json(body.to_string().as_bytes(), &sent).expect("parses");
        assert_eq!(again.code.as_str(), err.code.as_str());
        assert_eq!(again.description, err.description);
    }
});
