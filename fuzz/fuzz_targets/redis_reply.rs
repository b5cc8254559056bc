//! A Redis server's reply (RESP2), as the store's connection reads it: no panic, no stack
//! overflow, no allocation the reply did not pay for; a reply that parses, written back in
//! RESP, parses to the same value.
#![no_main]

use credlock::internal::{Reply, read_reply};
use libfuzzer_sys::fuzz_target;

fn write(value: &Reply, out: &mut Vec<u8>) {
    match value {
        Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
        Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
        Reply::Bytes(b) => {
            out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Array(items) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for item in items {
                write(item, out);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Ok(value)) = read_reply(data) {
        let mut again = Vec::new();
        write(&value, &mut again);
        match read_reply(&again) {
            Ok(Ok(back)) => assert_eq!(back, value),
            _ => panic!("a reply written back does not parse"),
        }
    }
});
