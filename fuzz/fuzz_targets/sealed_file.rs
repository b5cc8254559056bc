//! The sealed session file's header and body: no panic on any input; nothing opens without
//! the key; what is sealed opens to the same bytes, and any changed byte is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;

use credlock::internal::{open_with_key, seal_with_key};

const KEY: [u8; 32] = [42; 32];

fuzz_target!(|data: &[u8]| {
    // Any input, as a file: read with a key, and as a session file (the header decides).
    if let Ok(plaintext) = open_with_key(&KEY, data) {
        // Only an input sealed under KEY opens: then sealing it again must open again.
        let again = seal_with_key(&KEY, "fuzz", &plaintext).expect("seals");
        assert_eq!(open_with_key(&KEY, &again).expect("opens"), plaintext);
    }
    if let Err(e) = credlock::Session::from_json(data, std::path::Path::new("/fuzz/s.json")) {
        let text = e.to_string();
        assert!(!text.is_empty());
    }
    // The input as a plaintext: sealed, it opens to itself, and no single flipped bit opens.
    let sealed = seal_with_key(&KEY, "fuzz-key-1", data).expect("seals");
    assert_eq!(open_with_key(&KEY, &sealed).expect("opens"), data);
    let i = data.first().map_or(0, |b| usize::from(*b)) % sealed.len();
    let mut flipped = sealed.clone();
    flipped[i] ^= 1 << (data.len() % 8);
    assert!(
        open_with_key(&KEY, &flipped).is_err(),
        "a flipped bit at {i} opened"
    );
    assert!(
        open_with_key(&[7; 32], &sealed).is_err(),
        "another key opened"
    );
});
