//! What a lease file holds, and who we are: the holder's identity by machine id, boot and PID
//! namespace, never by host name (clones and containers share it).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::basics::clock::unix_ms;
use crate::file::sidecar_names::unique_token;

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
        serde_json::from_slice(bytes).map_err(|e| crate::basics::encoding::describe_json_error(&e))
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
    pub(crate) fn record(&self, ttl: Duration) -> LeaseRecord {
        LeaseRecord {
            host: self.host.clone(),
            pid: std::process::id(),
            boot_id: self.boot_id.clone(),
            machine_id: self.machine_id.clone(),
            pid_ns: self.pid_ns.clone(),
            created_ms: unix_ms(SystemTime::now()),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            nonce: unique_token(),
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
