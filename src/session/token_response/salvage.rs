//! The top-level fields of a 2xx token response that serde_json refuses as a whole.
//!
//! A server that answered 2xx has already rotated the refresh token, so a body it sent must
//! not be thrown away because of a field credlock does not even read: a number out of `f64`
//! range (`"ext_expires_in": 1e400`), a Latin-1 byte in a vendor field, a claim nested deeper
//! than serde_json's recursion limit. This scanner walks the top-level object without
//! recursion (nesting is only counted), and hands back the raw text of each top-level value,
//! which the caller parses field by field. It reads no more than the body it is given.

/// The top-level members of the JSON object in `text`, as (key, raw value text), or `None`
/// if `text` is not shaped like an object at the top level.
pub(crate) fn top_level_members(text: &str) -> Option<Vec<(String, &str)>> {
    let bytes = text.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    let mut members = Vec::new();
    loop {
        at = skip_space(bytes, at);
        match bytes.get(at)? {
            b'}' => return Some(members),
            b',' => {
                at += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = string_end(bytes, at)?;
        let key: String = serde_json::from_str(&text[at..key_end]).ok()?;
        at = skip_space(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        at = skip_space(bytes, at + 1);
        let value_end = value_end(bytes, at)?;
        members.push((key, text[at..value_end].trim_end()));
        at = value_end;
    }
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The index just past the string that starts (with its quote) at `at`.
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The index just past the value that starts at `at`: a string, a nested object or array
/// (brackets counted, strings skipped), or a scalar up to the next `,` or `}`.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match bytes.get(i)? {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let len = bytes[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}'))
                .unwrap_or(bytes.len() - at);
            Some(at + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::top_level_members;

    #[test]
    fn members_are_found_past_values_serde_json_refuses() {
        let nested = format!(
            r#"{{"a":{}1{},"refresh_token":"rt-1"}}"#,
            "[".repeat(300),
            "]".repeat(300)
        );
        let m = top_level_members(&nested).expect("an object");
        assert_eq!(
            m.last().map(|(k, v)| (k.as_str(), *v)),
            Some(("refresh_token", "\"rt-1\""))
        );
        let m =
            top_level_members(r#"{"x": 1e400 , "s":"a\"}b", "o":{"k":"}"}}"#).expect("an object");
        let keys: Vec<_> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            keys,
            [("x", "1e400"), ("s", r#""a\"}b""#), ("o", r#"{"k":"}"}"#)]
        );
    }

    #[test]
    fn what_is_not_an_object_gives_nothing() {
        for text in [
            "",
            "[]",
            "\"x\"",
            "{\"a\":",
            "{\"a\" 1}",
            "{\"a\":\"unterminated}",
        ] {
            assert_eq!(top_level_members(text), None, "{text:?}");
        }
    }
}
