use std::time::{Duration, SystemTime};

use super::breaker::set_aside_if;
use super::lease_file::read_record;
use super::*;
use crate::basics::clock::unix_ms;
use crate::file::sidecar_names::break_path_for;

pub(super) fn here() -> Holder {
    Holder::this_process()
}

#[test]
fn a_lease_is_exclusive_and_released_on_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json.lease");
    let held = try_acquire(&path, Duration::from_secs(30), &here())
        .expect("io")
        .expect("taken");
    assert!(
        try_acquire(&path, Duration::from_secs(30), &here())
            .expect("io")
            .is_none()
    );
    let record = read_record(&path).expect("readable");
    assert_eq!(record.pid, std::process::id());
    drop(held);
    assert!(!path.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
    assert!(leftovers.is_empty(), "no staging files left");
}

#[test]
fn an_expired_lease_is_broken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json.lease");
    let old = foreign(unix_ms(SystemTime::now()) - 60_000, 30_000, "old");
    std::fs::write(&path, old.to_json()).expect("write");
    let held = try_acquire(&path, Duration::from_secs(30), &here()).expect("io");
    assert!(
        held.is_some(),
        "the expired lease was broken and a new one taken"
    );
}

#[test]
fn an_unreadable_lease_blocks_only_until_it_is_older_than_the_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json.lease");
    std::fs::write(&path, b"").expect("an empty lease, as a killed writer leaves it");
    assert!(
        try_acquire(&path, Duration::from_secs(30), &here())
            .expect("io")
            .is_none(),
        "young: wait"
    );
    std::thread::sleep(Duration::from_millis(120));
    let held = try_acquire(&path, Duration::from_millis(100), &here()).expect("io");
    assert!(held.is_some(), "older than the TTL: broken and taken");
}

#[test]
fn releasing_a_lease_that_was_broken_and_retaken_leaves_the_new_holders_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json.lease");
    let ours = try_acquire(&path, Duration::from_secs(30), &here())
        .expect("io")
        .expect("taken");
    // We were paused past the TTL: another process broke our lease and took its own.
    std::fs::remove_file(&path).expect("broken");
    let theirs = foreign(unix_ms(SystemTime::now()), 30_000, "theirs");
    std::fs::write(&path, theirs.to_json()).expect("retaken");
    drop(ours);
    assert_eq!(
        read_record(&path).map(|r| r.nonce).as_deref(),
        Some("theirs")
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(names.len(), 1, "nothing else left behind: {names:?}");
}

/// A lease of a process on another machine.
pub(super) fn foreign(created_ms: u64, ttl_ms: u64, nonce: &str) -> LeaseRecord {
    LeaseRecord {
        host: "another-host".into(),
        pid: 7,
        boot_id: String::new(),
        machine_id: String::new(),
        pid_ns: String::new(),
        created_ms,
        ttl_ms,
        nonce: nonce.into(),
    }
}

#[test]
fn a_live_lease_of_another_host_is_respected_until_its_ttl() {
    let record = foreign(unix_ms(SystemTime::now()), 30_000, "n");
    assert!(!record.is_stale(SystemTime::now(), &here()));
    assert!(record.is_stale(SystemTime::now() + Duration::from_secs(31), &here()));
    let from_the_future = foreign(unix_ms(SystemTime::now()) + 61_000, 30_000, "n");
    assert!(
        from_the_future.is_stale(SystemTime::now(), &here()),
        "a holder whose clock is more than a TTL ahead does not block until its clock's time"
    );
}

/// A holder of this machine, boot and PID namespace, as the tests' identities.
fn local() -> Holder {
    Holder {
        host: "h".into(),
        boot_id: "boot-now".into(),
        machine_id: "machine-a".into(),
        pid_ns: "pid:[4026531836]".into(),
        boot_started_ms: unix_ms(SystemTime::now()) - 3_600_000,
    }
}

#[cfg(unix)]
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead = child.id();
    child.wait().expect("reap");
    dead
}

#[cfg(unix)]
#[test]
fn a_lease_of_a_dead_process_of_this_machine_boot_and_pid_namespace_is_stale_at_once() {
    let me = local();
    let record = LeaseRecord {
        host: me.host.clone(),
        pid: dead_pid(),
        boot_id: me.boot_id.clone(),
        machine_id: me.machine_id.clone(),
        pid_ns: me.pid_ns.clone(),
        created_ms: unix_ms(SystemTime::now()),
        ttl_ms: 30_000,
        nonce: "n".into(),
    };
    assert!(record.is_stale(SystemTime::now(), &me));
    let alive = LeaseRecord {
        pid: std::process::id(),
        ..record.clone()
    };
    assert!(!alive.is_stale(SystemTime::now(), &me));
    let before_this_boot = LeaseRecord {
        boot_id: "an-earlier-boot".into(),
        created_ms: me.boot_started_ms - 10_000,
        ttl_ms: 7_200_000,
        ..alive.clone()
    };
    assert!(
        before_this_boot.is_stale(SystemTime::now(), &me),
        "this machine rebooted since"
    );
}

#[cfg(unix)]
#[test]
fn only_the_ttl_breaks_a_lease_not_proved_to_be_of_this_machine_boot_and_pid_namespace() {
    let me = local();
    let dead = LeaseRecord {
        host: me.host.clone(),
        pid: dead_pid(),
        boot_id: me.boot_id.clone(),
        machine_id: me.machine_id.clone(),
        pid_ns: me.pid_ns.clone(),
        created_ms: unix_ms(SystemTime::now()),
        ttl_ms: 30_000,
        nonce: "n".into(),
    };
    let cases = [
        // A machine that shares our host name (a clone, a container on another node).
        (
            "another machine id",
            LeaseRecord {
                machine_id: "machine-b".into(),
                ..dead.clone()
            },
        ),
        // An older credlock: only the host name and the boot id.
        (
            "no machine id",
            LeaseRecord {
                machine_id: String::new(),
                pid_ns: String::new(),
                ..dead.clone()
            },
        ),
        // A container on this host: same machine id and boot, its own process table.
        (
            "another PID namespace",
            LeaseRecord {
                pid_ns: "pid:[4026532999]".into(),
                ..dead.clone()
            },
        ),
        (
            "no PID namespace",
            LeaseRecord {
                pid_ns: String::new(),
                ..dead.clone()
            },
        ),
        (
            "no boot id",
            LeaseRecord {
                boot_id: String::new(),
                ..dead.clone()
            },
        ),
        // A clone that kept our machine id, booted after us: its lease is younger than our boot.
        (
            "another boot, younger than ours",
            LeaseRecord {
                boot_id: "another-boot".into(),
                ..dead.clone()
            },
        ),
    ];
    for (what, record) in cases {
        assert!(
            !record.is_stale(SystemTime::now(), &me),
            "{what}: live until its TTL"
        );
        assert!(
            record.is_stale(SystemTime::now() + Duration::from_secs(31), &me),
            "{what}: stale after its TTL"
        );
    }
    let unknown_here = Holder {
        machine_id: String::new(),
        ..me
    };
    assert!(
        !dead.is_stale(SystemTime::now(), &unknown_here),
        "we do not know our machine"
    );
}

#[test]
fn this_process_knows_its_machine_boot_and_pid_namespace_on_linux() {
    let me = Holder::this_process();
    if cfg!(target_os = "linux") {
        assert!(me.pid_ns.starts_with("pid:["), "{me:?}");
        assert!(!me.boot_id.is_empty() && me.boot_started_ms > 0, "{me:?}");
        if std::path::Path::new("/etc/machine-id").exists() {
            assert!(!me.machine_id.is_empty(), "{me:?}");
        }
    }
    let record = me.record(Duration::from_secs(30));
    assert_eq!(
        (record.machine_id.as_str(), record.pid_ns.as_str()),
        (me.machine_id.as_str(), me.pid_ns.as_str())
    );
    assert_eq!(LeaseRecord::from_json(&record.to_json()), Ok(record));
}

#[test]
fn a_record_of_an_older_credlock_still_parses() {
    let old = br#"{"host":"h","pid":1,"boot_id":"b","created_ms":1,"ttl_ms":2,"nonce":"n"}"#;
    let r = LeaseRecord::from_json(old).expect("parses");
    assert!(r.machine_id.is_empty() && r.pid_ns.is_empty());
}

#[test]
fn a_lease_renamed_by_mistake_is_put_back_or_left_aside_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json.lease");
    let live = foreign(unix_ms(SystemTime::now()), 30_000, "live");
    std::fs::write(&path, live.to_json()).expect("write");
    assert!(!set_aside_if(&path, |_| false).expect("put back"));
    assert_eq!(read_record(&path), Some(live.clone()));
    // Put back impossible: a third process took the name in between.
    let err = set_aside_if(&path, |_| {
        let third = foreign(unix_ms(SystemTime::now()), 30_000, "third");
        std::fs::write(&path, third.to_json()).expect("write");
        false
    })
    .unwrap_err();
    let Error::Io { path: aside, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        aside.to_string_lossy().contains("s.json.lease.broken."),
        "{err}"
    );
    assert_eq!(read_record(aside), Some(live), "never unlinked");
    assert_eq!(
        read_record(&path).map(|r| r.nonce).as_deref(),
        Some("third")
    );
}

#[test]
fn a_stale_lease_is_broken_only_by_the_holder_of_the_breaker_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json.lease");
    std::fs::write(&path, foreign(0, 1, "stale").to_json()).expect("write");
    // Another machine is breaking it right now.
    let breaking = foreign(unix_ms(SystemTime::now()), 200, "breaker");
    std::fs::write(break_path_for(&path), breaking.to_json()).expect("write");
    assert!(
        try_acquire(&path, Duration::from_secs(30), &here())
            .expect("io")
            .is_none(),
        "not broken while another holds the breaker lock"
    );
    assert_eq!(
        read_record(&path).map(|r| r.nonce).as_deref(),
        Some("stale")
    );
    std::thread::sleep(Duration::from_millis(250));
    let held = try_acquire(&path, Duration::from_secs(30), &here()).expect("io");
    assert!(held.is_some(), "the breaker lock expired: broken and taken");
    drop(held);
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
    assert!(
        left.is_empty(),
        "no lease, breaker lock or aside file left: {left:?}"
    );
}

#[test]
fn two_waiters_breaking_one_stale_lease_at_once_leave_exactly_one_holder() {
    for _ in 0..50 {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json.lease");
        let old = foreign(0, 1, "old");
        std::fs::write(&path, old.to_json()).expect("write");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (path, barrier) = (path.clone(), std::sync::Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    try_acquire(&path, Duration::from_secs(30), &here()).expect("io")
                })
            })
            .collect();
        let held: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect();
        let winners = held.iter().filter(|h| h.is_some()).count();
        assert_eq!(winners, 1, "exactly one waiter holds the lease");
        let on_disk = read_record(&path).expect("a lease");
        let winner = held.iter().flatten().next().expect("winner");
        assert_eq!(
            on_disk.nonce, winner.nonce,
            "the lease on disk is the winner's"
        );
    }
}
