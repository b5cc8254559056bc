//! Ctrl-C, SIGTERM or SIGHUP in the middle of a login: release the lease, then exit.
//!
//! A login holds the guards for as long as the user takes. Killed by a signal, the process
//! would skip its destructors, and its lease would block the other machines until its
//! time-to-live ran out (the advisory lock needs nothing: the OS releases it). So while a
//! login may run, these signals are blocked in every thread and one thread waits for them
//! with `sigwait`, releases the leases this process holds, and exits as the signal would
//! have (128 + its number). std has no signal API, hence libc and the only `unsafe` of the
//! binary: three calls with initialised arguments and nothing shared.
#![allow(
    unsafe_code,
    reason = "std has no way to wait for a signal; see the module doc"
)]

/// From now on, SIGINT, SIGTERM and SIGHUP release this process's leases before it exits.
/// Call it before any other thread is started (threads inherit the signal mask; one started
/// earlier would still take the default action). Does nothing elsewhere than Unix, or if
/// the watcher cannot be started.
pub fn release_leases_on_termination() {
    #[cfg(unix)]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(unix::watch);
    }
}

#[cfg(unix)]
mod unix {
    use std::mem::MaybeUninit;

    fn termination_signals() -> libc::sigset_t {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `sigemptyset` initialises the set it is given; `sigaddset` adds valid
        // signal numbers to that initialised set.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            let mut set = set.assume_init();
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, signal);
            }
            set
        }
    }

    fn mask(how: libc::c_int, set: &libc::sigset_t) -> bool {
        // SAFETY: `set` is initialised; the old mask is not asked for.
        unsafe { libc::pthread_sigmask(how, set, std::ptr::null_mut()) == 0 }
    }

    pub(super) fn watch() {
        let set = termination_signals();
        if !mask(libc::SIG_BLOCK, &set) {
            return;
        }
        let watcher = std::thread::Builder::new()
            .name("credlock-signals".to_owned())
            .spawn(move || {
                let mut signal: libc::c_int = 0;
                // SAFETY: `set` is initialised and blocked in this thread; `signal` is a
                // valid place for the answer.
                if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                    return;
                }
                credlock::unversioned::release_held_leases();
                eprintln!("credlock: interrupted; the login was abandoned and its lease released");
                std::process::exit(128 + signal);
            });
        if watcher.is_err() {
            // Nobody would take them: let the signals act as before.
            mask(libc::SIG_UNBLOCK, &set);
        }
    }
}
