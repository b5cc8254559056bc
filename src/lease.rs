//! A lock that works across machines without a lock manager: the lease file.
//!
//! On NFS without a lock manager, SMB or FUSE, `flock` does not reach other machines, but
//! atomic name operations do: creating a link that already exists fails with `EEXIST`
//! everywhere, and a rename is atomic. So a refresh first creates `<session file>.lease`,
//! holding who took it and when. Others wait by re-reading it (and the session: once the
//! holder's new session is visible they use it and stop waiting). A lease is stale once its
//! time-to-live has passed, or at once when its holder is a dead process on this machine.
//!
//! The lease file appears with its content in one step: it is written to a temp file first
//! and hard-linked to the lease name (atomic, and fails with `EEXIST` if taken), so a waiter
//! never reads a half-written lease. Filesystems without hard links fall back to
//! `O_CREAT|O_EXCL` and then write.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::clock::unix_ms;
use crate::error::Error;
use crate::lock::{Backoff, Locked};

/// The lease file of a session file: `<path>.lease`.
#[must_use]
pub fn lease_path_for(path: &Path) -> PathBuf {
    let mut os = path.as_os_str().to_owned();
    os.push(".lease");
    PathBuf::from(os)
}

/// What a lease file holds: who took it, and until when it protects them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The holder's host name.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// The holder's boot id (Linux), telling a reboot from a live process with the same pid.
    #[serde(default)]
    pub boot_id: String,
    /// When the lease was taken, in milliseconds since the Unix epoch (the holder's clock).
    pub created_ms: u64,
    /// How long it protects its holder, in milliseconds.
    pub ttl_ms: u64,
    /// A random value that identifies this lease among all others.
    pub nonce: String,
}

impl LeaseRecord {
    /// Parses a lease file.
    ///
    /// # Errors
    /// A description (never the content) if it is not a lease record.
    pub fn from_json(bytes: &[u8]) -> Result<LeaseRecord, String> {
        serde_json::from_slice(bytes).map_err(|e| crate::oauth::describe_json_error(&e))
    }

    /// The record as bytes.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a lease record always serialises")
    }

    /// Whether the lease no longer protects its holder at `now`, seen from `here`: its TTL
    /// has passed (by our clock: clock skew between machines shifts this), or its holder is
    /// a process of this boot of this host that no longer exists, or this host rebooted since.
    #[must_use]
    pub fn is_stale(&self, now: SystemTime, here: &Holder) -> bool {
        if unix_ms(now) > self.created_ms.saturating_add(self.ttl_ms) {
            return true;
        }
        if self.host == here.host && !here.host.is_empty() {
            if !self.boot_id.is_empty() && !here.boot_id.is_empty() && self.boot_id != here.boot_id
            {
                return true;
            }
            return !process_exists(self.pid);
        }
        false
    }
}

/// Who we are, for lease records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Host name.
    pub host: String,
    /// Boot id, or empty where unknown.
    pub boot_id: String,
}

impl Holder {
    /// This process's host and boot.
    #[must_use]
    pub fn this_process() -> Holder {
        Holder {
            host: host_name(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        }
    }
}

fn host_name() -> String {
    #[cfg(unix)]
    {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_default()
    }
}

fn process_exists(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Some(pid) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return false;
        };
        match rustix::process::test_kill_process(pid) {
            Ok(()) => true,
            Err(e) => e == rustix::io::Errno::PERM,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Why a lease was not taken.
#[derive(Debug)]
pub(crate) enum LeaseFailure {
    Timeout(Duration),
    Io(Error),
}

/// Takes the lease at `lease_path`, runs `critical`, removes the lease (on every path,
/// including a panic in `critical`). `while_waiting` as in [`crate::lock`].
pub(crate) fn with_lease<T, R>(
    lease_path: &Path,
    ttl: Duration,
    timeout: Duration,
    while_waiting: &dyn Fn() -> Option<R>,
    critical: impl FnOnce() -> T,
) -> Result<Locked<T, R>, LeaseFailure> {
    let here = Holder::this_process();
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(2), Duration::from_millis(50));
    loop {
        match try_acquire(lease_path, ttl, &here) {
            Ok(Some(lease)) => {
                let out = critical();
                lease.release();
                return Ok(Locked::Ran(out));
            }
            Ok(None) => {}
            Err(e) => return Err(LeaseFailure::Io(e)),
        }
        if let Some(resolved) = while_waiting() {
            return Ok(Locked::Resolved(resolved));
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(LeaseFailure::Timeout(waited));
        }
        std::thread::sleep(
            backoff
                .next()
                .unwrap_or(Duration::from_millis(50))
                .min(timeout - waited),
        );
    }
}

/// A lease this process holds. Dropping it removes the lease file if it is still ours.
#[must_use = "the lease is released when this is dropped"]
#[derive(Debug)]
pub(crate) struct HeldLease {
    path: PathBuf,
    nonce: String,
}

impl HeldLease {
    pub(crate) fn release(self) {
        drop(self);
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        // Only our own lease: if we were paused past the TTL, another process may have
        // broken it and taken a new one, which must stay. Renaming first makes the check and
        // the removal one step as far as other processes can see.
        let nonce = self.nonce.clone();
        break_aside(&self.path, move |aside| {
            read_record(aside).is_some_and(|r| r.nonce == nonce)
        });
    }
}

/// One attempt: `Some` if we now hold the lease; `None` if a live lease is in the way (a
/// stale one is broken first, and the attempt repeated once).
pub(crate) fn try_acquire(
    lease_path: &Path,
    ttl: Duration,
    here: &Holder,
) -> Result<Option<HeldLease>, Error> {
    for _ in 0..2 {
        let record = LeaseRecord {
            host: here.host.clone(),
            pid: std::process::id(),
            boot_id: here.boot_id.clone(),
            created_ms: unix_ms(SystemTime::now()),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            nonce: nonce(),
        };
        if create_exclusive(lease_path, &record)? {
            return Ok(Some(HeldLease {
                path: lease_path.to_path_buf(),
                nonce: record.nonce,
            }));
        }
        match read_record(lease_path) {
            // An NFS retransmission can report EEXIST for a link that went through.
            Some(existing) if existing.nonce == record.nonce => {
                return Ok(Some(HeldLease {
                    path: lease_path.to_path_buf(),
                    nonce: record.nonce,
                }));
            }
            Some(existing) if existing.is_stale(SystemTime::now(), here) => {
                break_aside(lease_path, |aside| {
                    read_record(aside).is_some_and(|r| r.nonce == existing.nonce)
                });
            }
            Some(_) => return Ok(None),
            // Unreadable: just removed (try again), or left empty or torn by a writer that
            // died. The content cannot date it, so its modification time does, by our clock;
            // a lease being written this instant is seconds younger than any TTL.
            None => {
                let abandoned = std::fs::symlink_metadata(lease_path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > ttl);
                if !abandoned {
                    return Ok(None);
                }
                break_aside(lease_path, |aside| read_record(aside).is_none());
            }
        }
    }
    Ok(None)
}

/// Breaks a stale lease safely when several waiters try at once: rename it to a unique name
/// (only one rename of the name can succeed), then check that what was renamed is what was
/// judged stale. If a new live lease was renamed instead, put it back with `link`, which
/// fails rather than replace an even newer one (then the renamed one is simply dropped).
fn break_aside(lease_path: &Path, is_what_we_judged: impl Fn(&Path) -> bool) {
    let aside = sibling_name(lease_path, &format!("broken.{}", nonce()));
    if std::fs::rename(lease_path, &aside).is_err() {
        return; // someone else broke it first
    }
    if !is_what_we_judged(&aside) {
        let _ = std::fs::hard_link(&aside, lease_path);
    }
    let _ = std::fs::remove_file(&aside);
}

/// Creates the lease file with its full content, failing (`Ok(false)`) if it exists.
fn create_exclusive(lease_path: &Path, record: &LeaseRecord) -> Result<bool, Error> {
    let dir = match lease_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    crate::atomic::ensure_dir(&dir)?;
    let bytes = record.to_json();
    let staging = sibling_name(lease_path, &format!("{}.new", record.nonce));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    // Synced before the link makes it visible: NFS may report a full disk or quota only at
    // close, which Rust does not check, and an empty lease must not be published.
    let written = opts.open(&staging).and_then(|mut f| {
        f.write_all(&bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(Error::io("write the lease file next to", lease_path)(e));
    }
    let linked = std::fs::hard_link(&staging, lease_path);
    let _ = std::fs::remove_file(&staging);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) => create_new_then_write(lease_path, &bytes),
    }
}

/// For filesystems without hard links: `O_CREAT|O_EXCL`, then write.
fn create_new_then_write(lease_path: &Path, bytes: &[u8]) -> Result<bool, Error> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(lease_path) {
        Ok(mut f) => match f.write_all(bytes).and_then(|()| f.sync_all()) {
            Ok(()) => Ok(true),
            Err(e) => {
                // Never leave an empty lease behind.
                let _ = std::fs::remove_file(lease_path);
                Err(Error::io("write the lease file", lease_path)(e))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("create the lease file", lease_path)(e)),
    }
}

/// Reads a lease by opening it (close-to-open consistency on NFS), never by `stat`.
pub(crate) fn read_record(path: &Path) -> Option<LeaseRecord> {
    let mut bytes = Vec::new();
    File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut bytes)
        .ok()?;
    LeaseRecord::from_json(&bytes).ok()
}

fn sibling_name(path: &Path, suffix: &str) -> PathBuf {
    let mut os = path.as_os_str().to_owned();
    os.push(".");
    os.push(suffix);
    PathBuf::from(os)
}

fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{:x}-{c:x}", std::process::id(), t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here() -> Holder {
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
    fn foreign(created_ms: u64, ttl_ms: u64, nonce: &str) -> LeaseRecord {
        LeaseRecord {
            host: "another-host".into(),
            pid: 7,
            boot_id: String::new(),
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
    }

    #[test]
    fn a_lease_of_a_dead_local_process_or_an_earlier_boot_is_stale_at_once() {
        let me = here();
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("reap");
        let record = LeaseRecord {
            host: me.host.clone(),
            pid: dead,
            boot_id: me.boot_id.clone(),
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
        let other_boot = LeaseRecord {
            boot_id: "an-earlier-boot".into(),
            ..alive
        };
        assert_eq!(
            other_boot.is_stale(SystemTime::now(), &me),
            !me.boot_id.is_empty()
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
}
