//! A clock that moves only when told.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use credlock::Clock;

type SleepHook = Box<dyn FnMut(Duration) + Send>;

/// Time that advances only through [`ManualClock::advance`] or a [`Clock::sleep`], which
/// returns at once after advancing by the requested duration.
///
/// A hook can run on every sleep: tests use it to make "another process" act at an exact
/// point of the `invalid_grant` fallback's polling.
pub struct ManualClock {
    now: Mutex<SystemTime>,
    on_sleep: Mutex<Option<SleepHook>>,
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish_non_exhaustive()
    }
}

impl ManualClock {
    /// A clock at `start`.
    #[must_use]
    pub fn at(start: SystemTime) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: Mutex::new(start),
            on_sleep: Mutex::new(None),
        })
    }

    /// A clock at the current system time.
    #[must_use]
    pub fn starting_now() -> Arc<ManualClock> {
        ManualClock::at(SystemTime::now())
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += by;
    }

    /// Runs `hook` with the duration of every subsequent sleep, after time has advanced.
    pub fn on_sleep(&self, hook: impl FnMut(Duration) + Send + 'static) {
        *self
            .on_sleep
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Box::new(hook));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sleep(&self, duration: Duration) {
        self.advance(duration);
        let mut hook = self
            .on_sleep
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(h) = hook.as_mut() {
            h(duration);
        }
    }
}
