//! The lease file: no panic; what parses re-serialises and parses to the same value; errors
//! never quote the content; staleness is decidable for any record.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match credlock::internal::LeaseRecord::from_json(data) {
        Ok(r) => {
            let again = credlock::internal::LeaseRecord::from_json(&r.to_json()).expect("a serialised lease parses");
            assert_eq!(again, r);
            let here = credlock::internal::Holder {
                host: "fuzz-host".into(),
                boot_id: "fuzz-boot".into(),
                machine_id: "fuzz-machine".into(),
                pid_ns: "pid:[1]".into(),
                boot_started_ms: 1,
            };
            let _ = r.is_stale(std::time::SystemTime::now(), &here);
        }
        Err(e) => {
            let shape: String = e.chars().filter(|c| !c.is_ascii_digit()).collect();
            assert!(
                ["not valid JSON at line  column ", "valid JSON of the wrong shape at line  column ", "truncated JSON at line  column "]
                    .contains(&shape.as_str()),
                "unexpected error text: {e}"
            );
        }
    }
});
