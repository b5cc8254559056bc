//! A lock that works across machines without a lock manager: the lease file.
//!
//! On NFS without a lock manager, SMB or FUSE, `flock` does not reach other machines, but
//! atomic name operations do: creating a link that already exists fails with `EEXIST`
//! everywhere, and a rename is atomic. So a refresh first creates `<session file>.lease`,
//! holding who took it and when. Others wait by re-reading it (and the session: once the
//! holder's new session is visible they use it and stop waiting).
//!
//! A lease is stale once its time-to-live has passed, or at once when its holder is provably
//! gone: a process of this boot of this machine, in this PID namespace, that no longer
//! exists, or a lease taken before this machine last booted. "This machine" is its machine id
//! (`/etc/machine-id`), never its host name, which clones and containers share.
//!
//! The lease file appears with its content in one step: it is written to a temp file first
//! and hard-linked to the lease name (atomic, and fails with `EEXIST` if taken), so a waiter
//! never reads a half-written lease. Filesystems without hard links fall back to
//! `O_CREAT|O_EXCL` and then write.
//!
//! Removing a lease, to break a stale one or to release one's own, is serialised by a second,
//! short-lived lease, the breaker lock `<session file>.lease.break`: while it is held the lease
//! name can change only by creation (which cannot replace a lease), so what was judged under
//! it is what gets removed. The holder is fenced: right before it sends a refresh and right
//! before it saves, it checks that the lease still holds its nonce ([`Fence`]).
//!
//! A holder keeps its lease alive while its critical section runs: a heartbeat thread renews
//! the record (same nonce, new creation time) every third of the TTL, under the breaker lock
//! and only while the lease still carries its nonce ([`Heartbeat`]). A request slower than
//! the TTL therefore never outlives the lease; a holder that is paused or killed stops
//! renewing, which is what lets the others break its lease.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
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

/// The breaker lock of a lease file: `<lease>.break` (`<session file>.lease.break`).
#[must_use]
pub(crate) fn break_path_for(lease_path: &Path) -> PathBuf {
    sibling_name(lease_path, "break")
}

/// The breaker lock's time-to-live: the lease's, at most 30 s. It guards a few file operations,
/// so only a crashed breaker on another machine (a dead one on this machine is seen at once)
/// or one paused that long is broken.
fn break_ttl(lease_ttl: Duration) -> Duration {
    lease_ttl.min(Duration::from_secs(30))
}

/// What a lease file holds: who took it, and until when it protects them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The holder's host name, for people: it identifies nothing (clones share it).
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// The holder's boot id (Linux), telling a reboot from a live process with the same pid.
    #[serde(default)]
    pub boot_id: String,
    /// The holder's machine id (`/etc/machine-id`), empty where unknown. A record without it
    /// (older credlock, macOS, Windows) cannot be proved to come from this machine: only its
    /// TTL breaks it.
    #[serde(default)]
    pub machine_id: String,
    /// The holder's PID namespace (Linux: `pid:[4026531836]`, the target of
    /// `/proc/self/ns/pid`), empty where unknown. The pid is looked up only in the same one.
    #[serde(default)]
    pub pid_ns: String,
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

    /// Whether the lease no longer protects its holder at `now`, seen from `here`:
    ///
    /// - its TTL has passed, by our clock (clock skew between machines shifts this), or it is
    ///   dated more than a TTL in the future (a holder whose clock is that far ahead would
    ///   otherwise block everyone for as long as its clock is wrong);
    /// - or its holder is on this machine (same machine id), this boot (same boot id) and in
    ///   this PID namespace, and its pid no longer exists;
    /// - or it is from this machine, another boot, and older than this boot: the machine
    ///   rebooted since. (Another boot id with a lease younger than this boot is a clone of
    ///   this machine that kept its machine id: only the TTL breaks that.)
    ///
    /// Anything else (another machine, an unknown machine id, another PID namespace, a record
    /// of an older credlock without these fields) is broken by its TTL only.
    #[must_use]
    pub fn is_stale(&self, now: SystemTime, here: &Holder) -> bool {
        let now_ms = unix_ms(now);
        if now_ms > self.created_ms.saturating_add(self.ttl_ms)
            || self.created_ms > now_ms.saturating_add(self.ttl_ms)
        {
            return true;
        }
        match here.relation_to(self) {
            Relation::EarlierBoot => true,
            Relation::SameProcessTable => !process_exists(self.pid),
            Relation::Unknown => false,
        }
    }
}

/// What a lease's holder is to us, as far as its liveness can be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// This machine, an earlier boot: the holder is gone.
    EarlierBoot,
    /// This machine, this boot, this PID namespace: its pid can be looked up.
    SameProcessTable,
    /// Another machine, or not provably this one.
    Unknown,
}

/// Who we are, for lease records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Host name (for people; it identifies nothing).
    pub host: String,
    /// Boot id, or empty where unknown.
    pub boot_id: String,
    /// Machine id, or empty where unknown (then no lease is ever judged by its pid or boot).
    pub machine_id: String,
    /// PID namespace, or empty where unknown.
    pub pid_ns: String,
    /// When this boot began, in milliseconds since the Unix epoch; 0 where unknown.
    pub boot_started_ms: u64,
}

impl Holder {
    /// This process's machine, boot and PID namespace (read once per process).
    ///
    /// Linux: `/etc/machine-id` (or `/var/lib/dbus/machine-id`), the boot id from
    /// `/proc/sys/kernel/random/boot_id`, the PID namespace from `/proc/self/ns/pid`, the boot
    /// time from `/proc/stat`. Elsewhere these are empty (macOS has no machine id readable
    /// without a subprocess; Windows none without the registry): only TTLs break leases there.
    #[must_use]
    pub fn this_process() -> Holder {
        static HERE: OnceLock<Holder> = OnceLock::new();
        HERE.get_or_init(|| Holder {
            host: host_name(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            machine_id: machine_id(),
            pid_ns: pid_namespace(),
            boot_started_ms: boot_started_ms(),
        })
        .clone()
    }

    fn relation_to(&self, r: &LeaseRecord) -> Relation {
        if self.machine_id.is_empty() || r.machine_id != self.machine_id {
            return Relation::Unknown;
        }
        if self.boot_id.is_empty() || r.boot_id.is_empty() {
            return Relation::Unknown;
        }
        if r.boot_id != self.boot_id {
            return if self.boot_started_ms != 0 && r.created_ms < self.boot_started_ms {
                Relation::EarlierBoot
            } else {
                Relation::Unknown
            };
        }
        if self.pid_ns.is_empty() || r.pid_ns != self.pid_ns {
            return Relation::Unknown;
        }
        Relation::SameProcessTable
    }

    /// A new lease record of this process, taken now for `ttl`.
    fn record(&self, ttl: Duration) -> LeaseRecord {
        LeaseRecord {
            host: self.host.clone(),
            pid: std::process::id(),
            boot_id: self.boot_id.clone(),
            machine_id: self.machine_id.clone(),
            pid_ns: self.pid_ns.clone(),
            created_ms: unix_ms(SystemTime::now()),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            nonce: nonce(),
        }
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn machine_id() -> String {
    ["/etc/machine-id", "/var/lib/dbus/machine-id", "/etc/hostid"]
        .iter()
        .map(|p| read_trimmed(p))
        .find(|id| !id.is_empty() && id != "uninitialized")
        .unwrap_or_default()
}

fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
        .unwrap_or_default()
}

fn boot_started_ms() -> u64 {
    read_trimmed("/proc/stat")
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(0, |secs| secs.saturating_mul(1000))
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
/// including a panic in `critical`). `while_waiting` as in [`crate::lock`]. While `critical`
/// runs, [`Fence::current`] on this thread returns the fence of this lease.
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
                let out = {
                    // Dropped in reverse: the fence is uninstalled, then the heartbeat is
                    // stopped and joined, then (below, or by unwinding) the lease released.
                    let _beating = lease.keep_alive();
                    let _fenced = FenceInstalled::new(&lease);
                    critical()
                };
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

#[derive(Debug, Clone)]
struct FenceState {
    path: PathBuf,
    nonce: String,
    /// When the lease runs out by our clock: moved on by every renewal of the heartbeat.
    expires_ms: Arc<AtomicU64>,
}

impl PartialEq for FenceState {
    fn eq(&self, other: &FenceState) -> bool {
        self.path == other.path && self.nonce == other.nonce
    }
}

impl Eq for FenceState {}

thread_local! {
    /// The leases this thread holds while their critical sections run, innermost last.
    static FENCES: RefCell<Vec<FenceState>> = const { RefCell::new(Vec::new()) };
}

/// Installs a lease's fence on this thread for as long as it lives (popped on every path,
/// panics included).
struct FenceInstalled;

impl FenceInstalled {
    fn new(lease: &HeldLease) -> FenceInstalled {
        FENCES.with(|f| {
            f.borrow_mut().push(FenceState {
                path: lease.path.clone(),
                nonce: lease.nonce.clone(),
                expires_ms: Arc::clone(&lease.expires_ms),
            });
        });
        FenceInstalled
    }
}

impl Drop for FenceInstalled {
    fn drop(&mut self) {
        FENCES.with(|f| {
            f.borrow_mut().pop();
        });
    }
}

/// The fence of a critical section run under a lease: [`Fence::still_held`] says whether the
/// lease is still ours, right before a step that must never overlap another holder's (the
/// refresh request, the save). Outside a lease (advisory lock only, or no lock) it always
/// passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fence {
    held: Option<FenceState>,
}

impl Fence {
    /// The fence of the lease at `lease_path` if this thread is in its critical section.
    pub(crate) fn current(lease_path: &Path) -> Fence {
        Fence {
            held: FENCES.with(|f| {
                f.borrow()
                    .iter()
                    .rev()
                    .find(|s| s.path == lease_path)
                    .cloned()
            }),
        }
    }

    /// `Ok` if no lease is in use, or if the lease file still holds our nonce and our lease
    /// has not run out by our own clock (others judge it by theirs; past it they may break
    /// it). Otherwise [`Error::LeaseLost`]: the caller must neither send nor save. A lease
    /// that cannot be read counts as lost.
    ///
    /// # Errors
    /// [`Error::LeaseLost`].
    pub(crate) fn still_held(&self) -> Result<(), Error> {
        let Some(f) = &self.held else {
            return Ok(());
        };
        let ours = unix_ms(SystemTime::now()) < f.expires_ms.load(Ordering::SeqCst)
            && matches!(inspect(&f.path), Ok(Seen::Record(r)) if r.nonce == f.nonce);
        if ours {
            Ok(())
        } else {
            Err(Error::LeaseLost {
                lease_path: f.path.clone(),
            })
        }
    }
}

/// A lease this process holds. Dropping it removes the lease file if it is still ours.
#[must_use = "the lease is released when this is dropped"]
#[derive(Debug)]
pub(crate) struct HeldLease {
    path: PathBuf,
    nonce: String,
    /// When the lease runs out by our clock; the heartbeat moves it on at each renewal.
    expires_ms: Arc<AtomicU64>,
    ttl: Duration,
}

impl HeldLease {
    pub(crate) fn release(self) {
        drop(self);
    }

    /// Starts renewing the lease every third of its TTL until the returned guard drops.
    fn keep_alive(&self) -> Heartbeat {
        Heartbeat::start(self)
    }
}

/// Renews a held lease from its own thread while the critical section runs, so that a
/// request slower than the TTL never outlives the lease. Each renewal rewrites the record
/// with the same nonce and a new creation time, under the breaker lock and only if the lease
/// still carries our nonce: a lease another process broke is never written back. A renewal
/// that finds the lease gone stops the heartbeat. Dropping the guard stops and joins it.
///
/// A paused or killed process stops renewing, which is what lets the others break its lease
/// once the TTL has passed; the fence then stops it, if it resumes, from sending or saving.
#[must_use = "the lease is renewed only while the heartbeat lives"]
struct Heartbeat {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(lease: &HeldLease) -> Heartbeat {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (path, nonce, ttl, expires_ms, stopped) = (
            lease.path.clone(),
            lease.nonce.clone(),
            lease.ttl,
            Arc::clone(&lease.expires_ms),
            Arc::clone(&stop),
        );
        let period = (ttl / 3).max(Duration::from_millis(1));
        let spawned = std::thread::Builder::new()
            .name("credlock-lease-heartbeat".into())
            .spawn(move || {
                let here = Holder::this_process();
                let mut pause = period;
                loop {
                    {
                        let (flag, wake) = &*stopped;
                        let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
                        let (guard, _) = wake
                            .wait_timeout_while(guard, pause, |stop| !*stop)
                            .unwrap_or_else(|e| e.into_inner());
                        if *guard {
                            return;
                        }
                    }
                    pause = match renew(&path, &nonce, ttl, &here) {
                        Renewal::Renewed { created_ms } => {
                            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                            expires_ms.store(created_ms.saturating_add(ttl_ms), Ordering::SeqCst);
                            period
                        }
                        // Another process broke it: nothing left to keep alive.
                        Renewal::Lost => return,
                        // The breaker lock is busy for a few milliseconds, or an I/O error:
                        // try again soon, well before the lease runs out.
                        Renewal::NotNow => (period / 8).max(Duration::from_millis(1)),
                    };
                }
            });
        Heartbeat {
            stop,
            // Without a thread (the system refused one) the lease is merely not renewed: it
            // protects us for its TTL, as before, and the fence still applies.
            thread: spawned.ok(),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one renewal attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Renewal {
    /// The record now carries this creation time (ms since the epoch, our clock).
    Renewed { created_ms: u64 },
    /// The lease no longer carries our nonce.
    Lost,
    /// Not now: the breaker lock is held by another process, or an I/O error.
    NotNow,
}

/// Renews our lease at `lease_path` once: under the breaker lock (so that no breaker judges
/// or renames it meanwhile), if it still carries `nonce`, replace it by rename with the same
/// record dated now. The rename is atomic: waiters read the old record or the new one.
fn renew(lease_path: &Path, nonce: &str, ttl: Duration, here: &Holder) -> Renewal {
    let Ok(Some(_breaking)) = BreakLock::take(lease_path, break_ttl(ttl), here) else {
        return Renewal::NotNow;
    };
    let mut record = match inspect(lease_path) {
        Ok(Seen::Record(r)) if r.nonce == nonce => r,
        Ok(_) => return Renewal::Lost,
        Err(_) => return Renewal::NotNow,
    };
    record.created_ms = unix_ms(SystemTime::now());
    match replace_record(lease_path, &record) {
        Ok(()) => Renewal::Renewed {
            created_ms: record.created_ms,
        },
        Err(_) => Renewal::NotNow,
    }
}

/// Writes `record` to a staging file next to `lease_path`, synced, and renames it over the
/// lease. Only for a lease we hold, under the breaker lock.
fn replace_record(lease_path: &Path, record: &LeaseRecord) -> std::io::Result<()> {
    let staging = sibling_name(lease_path, &format!("{}.renew", record.nonce));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts.open(&staging).and_then(|mut f| {
        f.write_all(&record.to_json())?;
        crate::durable::sync_durably(&f)
    });
    let renamed = written
        .and_then(|()| crate::busy::retry_while_busy(|| std::fs::rename(&staging, lease_path)));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    renamed
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        // Only our own lease: if we were paused past the TTL, another process may have
        // broken it and taken a new one, which must stay. Under the breaker lock nobody else
        // removes the lease, so what we read is what we remove.
        let here = Holder::this_process();
        let ttl = break_ttl(self.ttl);
        let deadline = Instant::now() + ttl + Duration::from_secs(1);
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(20));
        loop {
            match BreakLock::take(&self.path, ttl, &here) {
                Ok(Some(_breaking)) => {
                    let nonce = &self.nonce;
                    let ours = |seen: &Seen| matches!(seen, Seen::Record(r) if r.nonce == *nonce);
                    if inspect(&self.path).is_ok_and(|seen| ours(&seen)) {
                        let _ = set_aside_if(&self.path, ours);
                    }
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(backoff.next().unwrap_or(Duration::from_millis(20)));
                }
                // An I/O error, or a breaker holding on past its TTL: leave the lease, which
                // its TTL ends (or, on this machine, our exit).
                _ => return,
            }
        }
    }
}

/// The breaker lock, held: dropping it removes it if it is still ours.
#[derive(Debug)]
struct BreakLock {
    path: PathBuf,
    nonce: String,
}

impl BreakLock {
    /// One attempt at the breaker lock of `lease_path`: `None` if another process holds it
    /// (a stale one is broken first, and the attempt repeated once).
    fn take(lease_path: &Path, ttl: Duration, here: &Holder) -> Result<Option<BreakLock>, Error> {
        let path = break_path_for(lease_path);
        Ok(take_file(&path, ttl, here)?.map(|nonce| BreakLock { path, nonce }))
    }
}

impl Drop for BreakLock {
    fn drop(&mut self) {
        let nonce = &self.nonce;
        let _ = set_aside_if(
            &self.path,
            |seen| matches!(seen, Seen::Record(r) if r.nonce == *nonce),
        );
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
        let record = here.record(ttl);
        if create_exclusive(lease_path, &record)? {
            return Ok(Some(held(lease_path, &record, ttl)));
        }
        match inspect(lease_path)? {
            // Just released: try again.
            Seen::Absent => {}
            // An NFS retransmission can report EEXIST for a link that went through.
            Seen::Record(existing) if existing.nonce == record.nonce => {
                return Ok(Some(held(lease_path, &record, ttl)));
            }
            seen if is_breakable(&seen, ttl, here) => break_stale(lease_path, ttl, here)?,
            _ => return Ok(None),
        }
    }
    Ok(None)
}

fn held(lease_path: &Path, record: &LeaseRecord, ttl: Duration) -> HeldLease {
    HeldLease {
        path: lease_path.to_path_buf(),
        nonce: record.nonce.clone(),
        expires_ms: Arc::new(AtomicU64::new(
            record
                .created_ms
                .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        )),
        ttl,
    }
}

/// Whether what a lease file holds no longer protects anyone: a stale record, or an
/// unreadable file (left empty or torn by a writer that died) older than the TTL. Its content
/// cannot date it, so its modification time does, by our clock; a lease being written this
/// instant is far younger than any TTL.
fn is_breakable(seen: &Seen, ttl: Duration, here: &Holder) -> bool {
    match seen {
        Seen::Absent => false,
        Seen::Record(r) => r.is_stale(SystemTime::now(), here),
        Seen::Unreadable { modified_ms } => modified_ms.is_none_or(|m| {
            let (now, ttl) = (
                unix_ms(SystemTime::now()),
                u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            );
            now > m.saturating_add(ttl) || m > now.saturating_add(ttl)
        }),
    }
}

/// Breaks the stale lease at `lease_path`, if it is still there and still stale once we hold
/// the breaker lock. Returns without breaking anything if another process holds that lock.
fn break_stale(lease_path: &Path, ttl: Duration, here: &Holder) -> Result<(), Error> {
    let Some(_breaking) = BreakLock::take(lease_path, break_ttl(ttl), here)? else {
        return Ok(());
    };
    // Judged again under the breaker lock: another breaker may have broken it and a new
    // holder taken the name since we looked. From here until the rename, nobody else can
    // remove what is there, and nothing can replace it.
    let judged = inspect(lease_path)?;
    if !is_breakable(&judged, ttl, here) {
        return Ok(());
    }
    set_aside_if(lease_path, |seen| same_lease(seen, &judged))?;
    Ok(())
}

fn same_lease(a: &Seen, b: &Seen) -> bool {
    match (a, b) {
        (Seen::Record(x), Seen::Record(y)) => x.nonce == y.nonce,
        (Seen::Unreadable { .. }, Seen::Unreadable { .. }) => true,
        _ => false,
    }
}

/// Takes the lease-like file at `path` (a lease or a breaker lock) once: `Some(nonce)` if we
/// now hold it; a stale one is set aside first and the attempt repeated once.
fn take_file(path: &Path, ttl: Duration, here: &Holder) -> Result<Option<String>, Error> {
    for _ in 0..2 {
        let record = here.record(ttl);
        if create_exclusive(path, &record)? {
            return Ok(Some(record.nonce));
        }
        match inspect(path)? {
            Seen::Absent => {}
            Seen::Record(existing) if existing.nonce == record.nonce => {
                return Ok(Some(record.nonce));
            }
            seen if is_breakable(&seen, ttl, here) => {
                set_aside_if(path, |now| same_lease(now, &seen))?;
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Removes the file at `path` if what a rename moves aside is what `judged` accepts: rename
/// it to a unique name (only one rename of the name can succeed), check, then delete it or
/// put it back with a no-replace rename (never over a newer file; see
/// [`crate::atomic::put_back`]). A file that did not match and cannot be put back is left at
/// its aside name (`<path>.broken.<nonce>`), and the error names it. Returns whether it
/// removed the file.
fn set_aside_if(path: &Path, judged: impl Fn(&Seen) -> bool) -> Result<bool, Error> {
    let aside = sibling_name(path, &format!("broken.{}", nonce()));
    match crate::busy::retry_while_busy(|| std::fs::rename(path, &aside)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("set aside", path)(e)),
    }
    if inspect(&aside).is_ok_and(|seen| judged(&seen)) {
        std::fs::remove_file(&aside).map_err(Error::io("remove", &aside))?;
        return Ok(true);
    }
    crate::atomic::put_back(&aside, path)
        .map_err(|e| crate::atomic::left_aside(&aside, path, e))?;
    Ok(false)
}

/// Creates the lease file with its full content, failing (`Ok(false)`) if it exists.
fn create_exclusive(lease_path: &Path, record: &LeaseRecord) -> Result<bool, Error> {
    let dir = match lease_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    crate::atomic::ensure_dir(&dir)?;
    crate::atomic::check_dir_of(lease_path)?;
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
        crate::durable::sync_durably(&f)
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
        Ok(mut f) => match f
            .write_all(bytes)
            .and_then(|()| crate::durable::sync_durably(&f))
        {
            Ok(()) => Ok(true),
            Err(e) => {
                // Never leave an empty lease behind (ours: nobody breaks a lease this young).
                let _ = std::fs::remove_file(lease_path);
                Err(Error::io("write the lease file", lease_path)(e))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("create the lease file", lease_path)(e)),
    }
}

/// What a lease file (or a breaker lock) holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// No file.
    Absent,
    /// A lease record.
    Record(LeaseRecord),
    /// A regular file that is not a lease record, with its modification time (ms since the
    /// epoch, `None` if the filesystem has none).
    Unreadable { modified_ms: Option<u64> },
}

/// Reads a lease by opening it (close-to-open consistency on NFS), never by `stat`; opened
/// like the session file (no symlink followed, no blocking on a FIFO, a regular file owned by
/// us or root, checked on the descriptor), so anything else at the name is an error at once.
pub(crate) fn inspect(path: &Path) -> Result<Seen, Error> {
    let Some((file, meta)) = crate::atomic::open_checked(path)? else {
        return Ok(Seen::Absent);
    };
    let mut bytes = Vec::new();
    file.take(64 * 1024)
        .read_to_end(&mut bytes)
        .map_err(Error::io("read the lease file", path))?;
    Ok(match LeaseRecord::from_json(&bytes) {
        Ok(r) => Seen::Record(r),
        Err(_) => Seen::Unreadable {
            modified_ms: meta.modified().ok().map(unix_ms),
        },
    })
}

/// The record at `path`, if it holds one.
#[cfg(test)]
pub(crate) fn read_record(path: &Path) -> Option<LeaseRecord> {
    match inspect(path) {
        Ok(Seen::Record(r)) => Some(r),
        _ => None,
    }
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
    fn the_fence_holds_while_the_lease_is_ours_and_fails_once_it_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json.lease");
        assert_eq!(
            Fence::current(&path).still_held().ok(),
            Some(()),
            "no lease in use"
        );
        let r = with_lease(
            &path,
            Duration::from_secs(30),
            Duration::from_secs(1),
            &|| None::<()>,
            || {
                let fence = Fence::current(&path);
                let before = fence.still_held();
                std::fs::remove_file(&path).expect("broken");
                std::fs::write(
                    &path,
                    foreign(unix_ms(SystemTime::now()), 30_000, "thief").to_json(),
                )
                .expect("retaken");
                (before, fence.still_held())
            },
        );
        let Ok(Locked::Ran((before, after))) = r else {
            panic!("ran");
        };
        assert!(before.is_ok());
        assert!(matches!(after, Err(Error::LeaseLost { .. })), "{after:?}");
        assert_eq!(
            read_record(&path).map(|r| r.nonce).as_deref(),
            Some("thief")
        );
        assert_eq!(Fence::current(&path), Fence::default(), "uninstalled");
        // A lease past its own TTL is lost by our clock, whatever the file says. A running
        // holder's heartbeat would renew it: this one is paused (its fence installed, no
        // heartbeat), as a stopped process's is.
        let b = path.with_extension("b");
        let paused = try_acquire(&b, Duration::from_millis(30), &here())
            .expect("io")
            .expect("taken");
        let lost = {
            let _fenced = FenceInstalled::new(&paused);
            std::thread::sleep(Duration::from_millis(40));
            Fence::current(&b).still_held()
        };
        assert!(matches!(lost, Err(Error::LeaseLost { .. })), "{lost:?}");
        assert_eq!(
            read_record(&b).map(|r| r.nonce),
            Some(paused.nonce.clone()),
            "the file still says ours: only the clock says lost"
        );
    }

    #[test]
    fn a_lease_is_kept_alive_while_its_critical_section_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json.lease");
        // Renewals every 100 ms: room for a loaded machine's scheduling delays.
        let ttl = Duration::from_millis(300);
        let r = with_lease(&path, ttl, Duration::from_secs(1), &|| None::<()>, || {
            let fence = Fence::current(&path);
            // A critical section four TTLs long: a slow token endpoint, say.
            for _ in 0..12 {
                std::thread::sleep(Duration::from_millis(100));
                let other = std::thread::scope(|s| {
                    s.spawn(|| try_acquire(&path, ttl, &here()).expect("io").is_some())
                        .join()
                        .expect("join")
                });
                assert!(
                    !other,
                    "another waiter broke a lease whose holder is running"
                );
                fence.still_held()?;
            }
            Ok::<(), Error>(())
        });
        assert!(matches!(r, Ok(Locked::Ran(Ok(())))), "{r:?}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert!(left.is_empty(), "released, nothing left behind: {left:?}");
    }

    #[test]
    fn a_holder_whose_heartbeat_stops_loses_its_lease_after_the_ttl() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json.lease");
        let ttl = Duration::from_millis(300);
        let ours = try_acquire(&path, ttl, &here())
            .expect("io")
            .expect("taken");
        let beating = ours.keep_alive();
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            try_acquire(&path, ttl, &here()).expect("io").is_none(),
            "renewed past its first TTL"
        );
        // Paused, or killed: no more renewals.
        drop(beating);
        std::thread::sleep(Duration::from_millis(400));
        let theirs = try_acquire(&path, ttl, &here()).expect("io");
        assert!(theirs.is_some(), "broken once a TTL passed without renewal");
        drop(ours);
        assert_eq!(
            read_record(&path).map(|r| r.nonce),
            theirs.as_ref().map(|t| t.nonce.clone()),
            "the old holder's release left the new lease alone"
        );
    }

    #[test]
    fn the_heartbeat_never_writes_back_a_lease_another_process_broke() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json.lease");
        let ttl = Duration::from_millis(60);
        let ours = try_acquire(&path, ttl, &here())
            .expect("io")
            .expect("taken");
        let beating = ours.keep_alive();
        {
            // Another process breaks it and takes its own, as breakers do: under the
            // breaker lock.
            let _breaking = loop {
                if let Some(b) = BreakLock::take(&path, ttl, &here()).expect("io") {
                    break b;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            std::fs::remove_file(&path).expect("broken");
            let theirs = foreign(unix_ms(SystemTime::now()), 60_000, "theirs");
            std::fs::write(&path, theirs.to_json()).expect("retaken");
        }
        // The heartbeat (every 20 ms) meets the lease gone and stops; waited for with room.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !beating.thread.as_ref().is_some_and(|t| t.is_finished()) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            read_record(&path).map(|r| r.nonce).as_deref(),
            Some("theirs")
        );
        let heartbeat_ended = beating.thread.as_ref().is_some_and(|t| t.is_finished());
        assert!(
            heartbeat_ended,
            "a heartbeat that finds its lease gone stops"
        );
        drop(beating);
        drop(ours);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("e").file_name())
            .collect();
        assert_eq!(names.len(), 1, "no staging file left behind: {names:?}");
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
