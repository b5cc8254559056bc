//! The time seam: what "now" is, and how to wait.

use std::time::{Duration, SystemTime};

/// The source of wall-clock time for expiry decisions, and the way the polling fallback waits.
///
/// The default, [`SystemClock`], reads the system clock and sleeps the thread. Tests replace
/// it (see `ManualClock` in the `credlock-test` crate) so that expiry can be
/// decided without sleeping. Lock waiting always uses real time: another process holds the
/// lock for real.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// Waits `duration` before the fallback re-reads the store.
    fn sleep(&self, duration: Duration) {
        if !duration.is_zero() {
            std::thread::sleep(duration);
        }
    }
}

/// The system clock and real sleeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Milliseconds since the Unix epoch, saturating at 0 for times before it.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The time `ms` milliseconds after the Unix epoch.
/// Saturates where the platform's `SystemTime` ends (Windows panics on overflow otherwise): a
/// hostile `expires_in` must not be a panic.
pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    let mut ms = ms;
    loop {
        if let Some(t) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms)) {
            return t;
        }
        ms /= 2;
    }
}

/// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-27T13:14:15.123Z`.
///
/// Hand-written (civil-from-days, Howard Hinnant's algorithm) so the crate needs no date library.
#[must_use]
pub fn rfc3339(t: SystemTime) -> String {
    let ms = unix_ms(t);
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(from_unix_ms(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(from_unix_ms(1_795_784_055_123)),
            "2026-11-27T12:54:15.123Z"
        );
    }
}
