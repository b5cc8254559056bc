//! The session file: no panic; what parses re-serialises and parses to the same value; an
//! error's text is one of a few fixed sentences with numbers, never a piece of the input.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

const PATH: &str = "/fuzz/session.json";

fuzz_target!(|data: &[u8]| {
    let path = Path::new(PATH);
    match credlock::Session::from_json(data, path) {
        Ok(session) => {
            let bytes = session.to_json();
            let again = credlock::Session::from_json(&bytes, path).expect("a serialised session parses");
            assert_eq!(again, session);
        }
        Err(e) => {
            let text = e.to_string();
            let shape: String = text.chars().filter(|c| !c.is_ascii_digit()).collect();
            let mut allowed = vec![
                format!("the session file {PATH} is corrupt (not valid JSON at line  column ); it was left untouched: inspect or delete it, then log in again"),
                format!("the session file {PATH} is corrupt (valid JSON of the wrong shape at line  column ); it was left untouched: inspect or delete it, then log in again"),
                format!("the session file {PATH} is corrupt (truncated JSON at line  column ); it was left untouched: inspect or delete it, then log in again"),
                format!("the session file {PATH} is corrupt (format version  does not exist); it was left untouched: inspect or delete it, then log in again"),
                format!("the session file {PATH} has format version ; this credlock understands up to , so it left the file untouched"),
            ];
            // A missing or mistyped field is named (names are not secrets; values may be).
            let fields = [
                "version", "client", "access_token", "token_type", "refresh_token", "obtained_at_ms",
                "expires_at_ms", "scope", "extra", "client.token_endpoint", "client.client_id",
                "client.auth", "client.revocation_endpoint", "client.auth.method", "client.auth.secret",
            ];
            let whats = ["is missing", "is not a string", "is not an unsigned integer", "is not an object"];
            let mut reasons: Vec<String> = fields
                .iter()
                .flat_map(|f| whats.iter().map(move |w| format!("field `{f}` {w}")))
                .collect();
            reasons.push("field `client.auth.method` is not one of basic, post, none".into());
            reasons.push("field `version` is out of range".into());
            reasons.push("the file is not a JSON object".into());
            allowed.extend(reasons.into_iter().map(|r| {
                format!("the session file {PATH} is corrupt ({r}); it was left untouched: inspect or delete it, then log in again")
            }));
            assert!(allowed.contains(&shape), "unexpected error text: {text}");
        }
    }
});
