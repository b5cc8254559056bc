//! `/proc/self/mountinfo` lines: no panic; a parsed line, written back in mountinfo form,
//! parses to the same mount point, type and lock verdict; classification never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b' ' | b'\t' | b'\n' | b'\\' => out.push_str(&format!("\\{b:03o}")),
            _ => out.push(char::from(b)),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines() {
        let Some(m) = credlock::internal::MountInfo::parse(line) else { continue };
        // The round trip writes what the kernel writes: absolute mount points (a lone "-"
        // would read as mountinfo's separator field).
        if m.fs_type.contains(' ') || m.options.contains(' ') || m.fs_type.is_empty() || !m.mount_point.is_ascii() || !m.mount_point.starts_with('/') {
            continue;
        }
        let written = format!("1 1 0:1 / {} {} - {} source {}", escape(&m.mount_point), m.options, m.fs_type, m.options);
        let again = credlock::internal::MountInfo::parse(&written).expect("a written line parses");
        assert_eq!(again.mount_point, m.mount_point);
        assert_eq!(again.fs_type, m.fs_type);
        assert_eq!(again.nfs_locks_are_local(), m.nfs_locks_are_local());
        for f_type in [0x6969u64, 0x6573_5546, 0xEF53] {
            let _ = credlock::internal::classify_f_type(f_type, Some(&m)).name();
        }
    }
    let _ = credlock::internal::mount_of(text, std::path::Path::new("/home/user/.config"));
});
