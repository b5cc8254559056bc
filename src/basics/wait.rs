//! Waiting: the one loop that tries something until it is done, its deadline passes or the
//! caller stops it ([`until`]), how a wait for a guard ends ([`Acquired`]), and the pauses
//! between attempts ([`Backoff`]). The advisory lock, the lease, its release, and the Windows
//! retries of a busy file all wait through it, each with its own timings.

use std::time::{Duration, Instant};

/// How waiting for a guard (the advisory lock, the lease) ended.
#[derive(Debug)]
pub(crate) enum Acquired<G, R> {
    /// The guard was taken: it is held until dropped.
    Held(G),
    /// While waiting, the caller's check found what it was waiting for (another process's
    /// fresh session) and waiting stopped without taking the guard.
    Resolved(R),
}

/// What one attempt of a wait through [`until`] gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Attempt<T, P = ()> {
    /// Final: the wait ends with this (what was waited for, or a failure not worth waiting
    /// out).
    Done(T),
    /// Not yet: try again after a pause. `P` is what the attempt left (the busy error a
    /// retry returns if it gives up).
    Pending(P),
}

/// How a wait through [`until`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waited<T, R, P = ()> {
    /// An attempt was final: what it gave.
    Done(T),
    /// The caller's `while_waiting` ended the wait with `R`; `P` is what the last attempt
    /// left.
    Stopped(R, P),
    /// The deadline passed with every attempt pending: how long was waited, and what the
    /// last attempt left.
    TimedOut(Duration, P),
}

/// Tries `try_once` until it is final ([`Attempt::Done`]), `while_waiting` ends the wait, or
/// `timeout` has passed; between attempts, sleeps the next of `pauses` (never past the
/// deadline). After each pending attempt, `while_waiting` is told how long the wait has lasted
/// and may end it (with what the caller was waiting for, or because waiting is no longer
/// worth it); then the deadline is checked. The first attempt is made at once, and one is
/// always made, whatever the timeout.
pub(crate) fn until<T, R, P>(
    timeout: Duration,
    mut pauses: impl Iterator<Item = Duration>,
    mut try_once: impl FnMut() -> Attempt<T, P>,
    mut while_waiting: impl FnMut(Duration) -> Option<R>,
) -> Waited<T, R, P> {
    let start = Instant::now();
    loop {
        let left = match try_once() {
            Attempt::Done(done) => return Waited::Done(done),
            Attempt::Pending(left) => left,
        };
        if let Some(stopped) = while_waiting(start.elapsed()) {
            return Waited::Stopped(stopped, left);
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Waited::TimedOut(waited, left);
        }
        if let Some(pause) = pauses.next() {
            std::thread::sleep(pause.min(timeout - waited));
        }
    }
}

/// Exponential backoff, an iterator of pauses (so it can be tested without sleeping): `d`
/// grows by a factor per step up to `max`; jittered, each pause is drawn from [d/2, d].
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
    factor: f64,
    jitter: bool,
    rng: u64,
}

impl Backoff {
    /// For waiters that contend with each other (for the lock, the lease): growing 1.5× per
    /// step, jittered, so that they spread apart.
    pub(crate) fn new(first: Duration, max: Duration) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        Backoff {
            next: first,
            max,
            factor: 1.5,
            jitter: true,
            rng: seed | 1,
        }
    }

    /// For a retry that waits out a handle held for microseconds (a busy file on Windows):
    /// doubling, without jitter.
    pub(crate) fn doubling(first: Duration, max: Duration) -> Backoff {
        Backoff {
            factor: 2.0,
            jitter: false,
            ..Backoff::new(first, max)
        }
    }

    fn random_unit(&mut self) -> f64 {
        // xorshift64*: plenty for spreading waiters apart, and no dependency.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = self.next.mul_f64(self.factor).min(self.max);
        if !self.jitter {
            return Some(d);
        }
        Some(d.mul_f64(0.5 + 0.5 * self.random_unit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_stays_jittered_within_bounds() {
        let max = Duration::from_millis(20);
        let pauses: Vec<_> = Backoff::new(Duration::from_millis(1), max)
            .take(50)
            .collect();
        assert!(
            pauses
                .iter()
                .all(|p| *p <= max && *p >= Duration::from_micros(500))
        );
        assert!(pauses[40..].iter().all(|p| *p >= max / 2));
        assert!(pauses[0] <= Duration::from_millis(1));
    }

    #[test]
    fn a_doubling_backoff_doubles_to_its_cap_without_jitter() {
        let pauses: Vec<_> =
            Backoff::doubling(Duration::from_micros(500), Duration::from_millis(10))
                .take(8)
                .map(|d| d.as_micros())
                .collect();
        assert_eq!(
            pauses,
            [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
    }

    #[test]
    fn a_final_attempt_ends_the_wait_with_what_it_gave() {
        let mut tries = 0;
        let w = until(
            Duration::from_secs(10),
            std::iter::repeat(Duration::ZERO),
            || {
                tries += 1;
                if tries == 3 {
                    Attempt::Done(tries)
                } else {
                    Attempt::Pending(())
                }
            },
            |_| None::<()>,
        );
        assert_eq!(w, Waited::Done(3));
    }

    #[test]
    fn while_waiting_is_asked_after_each_pending_attempt_and_can_stop_the_wait() {
        let mut asked = vec![];
        let w = until(
            Duration::from_secs(10),
            std::iter::repeat(Duration::ZERO),
            || Attempt::<(), ()>::Pending(()),
            |waited| {
                asked.push(waited);
                (asked.len() == 2).then_some("found")
            },
        );
        assert_eq!(w, Waited::Stopped("found", ()));
        assert!(asked[0] <= asked[1], "{asked:?}");
    }

    #[test]
    fn a_wait_times_out_after_its_deadline_having_tried_at_least_once() {
        let mut tries = 0;
        let timeout = Duration::from_millis(30);
        let w = until(
            timeout,
            Backoff::new(Duration::from_millis(1), Duration::from_millis(20)),
            || {
                tries += 1;
                Attempt::<(), ()>::Pending(())
            },
            |_| None::<()>,
        );
        assert!(
            matches!(w, Waited::TimedOut(waited, ()) if waited >= timeout),
            "{w:?}"
        );
        assert!(tries >= 2, "{tries}");
        let mut once = 0;
        let w = until(
            Duration::ZERO,
            std::iter::repeat(Duration::from_secs(1)),
            || {
                once += 1;
                Attempt::<(), ()>::Pending(())
            },
            |_| None::<()>,
        );
        assert!(matches!(w, Waited::TimedOut(_, ())));
        assert_eq!(once, 1, "one attempt, no pause");
    }
}
