//! Waiting for a lock or a lease: how a wait ends, and the pauses between attempts.

use std::time::Duration;

/// How waiting for a guard (the advisory lock, the lease) ended.
#[derive(Debug)]
pub(crate) enum Acquired<G, R> {
    /// The guard was taken: it is held until dropped.
    Held(G),
    /// While waiting, the caller's check found what it was waiting for (another process's
    /// fresh session) and waiting stopped without taking the guard.
    Resolved(R),
}

/// Jittered exponential backoff: each pause is drawn from [d/2, d], d growing 1.5× per step
/// up to `max`. An iterator, so it can be tested without sleeping.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        Backoff {
            next: first,
            max,
            rng: seed | 1,
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
        self.next = self.next.mul_f64(1.5).min(self.max);
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
}
