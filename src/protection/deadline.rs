//! A keychain call with a deadline: the call runs on a helper thread and the caller waits on a
//! channel for at most the deadline. A keychain whose agent never answers (a D-Bus session bus
//! with no Secret Service behind it, a keychain waiting on an unlock prompt nobody sees) then
//! costs the caller the deadline, not forever; the helper thread is abandoned, and ends
//! whenever the call does.

use std::sync::mpsc;
use std::time::Duration;

/// Why a call did not give its result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Missed {
    /// The deadline passed first.
    TimedOut,
    /// No thread could be started, or the call panicked.
    Failed(&'static str),
}

/// Runs `call` on a helper thread and waits for its result at most `deadline`.
pub(crate) fn within<T: Send + 'static>(
    deadline: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Missed> {
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("credlock-keychain".into())
        .spawn(move || {
            // The caller may have stopped waiting: then nobody wants the result.
            let _ = tx.send(call());
        })
        .map_err(|_| Missed::Failed("no thread could be started for the keychain call"))?;
    match rx.recv_timeout(deadline) {
        Ok(value) => Ok(value),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Missed::TimedOut),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(Missed::Failed("the keychain call panicked"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_never_returns_costs_the_caller_only_the_deadline() {
        let started = std::time::Instant::now();
        let outcome = within(Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(3600));
        });
        assert_eq!(outcome, Err(Missed::TimedOut));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_call_that_answers_in_time_gives_its_result() {
        assert_eq!(within(Duration::from_secs(10), || 42), Ok(42));
    }

    #[test]
    fn a_call_that_panics_is_a_failure_not_a_hang() {
        let outcome: Result<(), Missed> = within(Duration::from_secs(10), || panic!("boom"));
        assert!(matches!(outcome, Err(Missed::Failed(_))));
    }
}
