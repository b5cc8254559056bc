//! `redis://` and `rediss://` store URLs: no panic, and the password never shows in what
//! messages and events print (`Debug`, the location), whatever the URL around it.
#![no_main]

use credlock::internal::RedisUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(url) = RedisUrl::parse(text) else { return };
    let shown = [format!("{url:?}"), url.location(None), url.location(Some("k"))];
    let Some(password) = url.password() else { return };
    // Only a password that no other part of the URL can spell: long enough, written once,
    // letters and digits only (so that no user name, host or key spells it across a `@`, `:`
    // or `/`), and no percent-escape anywhere that could spell it again once decoded.
    if password.len() < 8
        || !password.bytes().all(|b| b.is_ascii_alphanumeric())
        || text.contains('%')
        || text.matches(password).count() != 1
    {
        return;
    }
    for s in &shown {
        assert!(!s.contains(password), "the password shows in {s:?}");
    }
});
