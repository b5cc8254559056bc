//! Ctrl-C, SIGTERM or SIGHUP in the middle of a login: release the lease, then exit.
//!
//! A login holds the guards for as long as the user takes. Killed by a signal, the process
//! would skip its destructors, and its lease would block the other machines until its
//! time-to-live ran out (the advisory lock needs nothing: the OS releases it). So while a
//! login may run, one thread waits for these signals (signal-hook's iterator: std has no
//! signal API), releases the leases this process holds, and exits as the signal would have
//! (128 + its number).

/// From now on, SIGINT, SIGTERM and SIGHUP release this process's leases before it exits.
/// Does nothing elsewhere than Unix. The handlers are installed by the watcher thread
/// itself, so a signal that comes before it runs (or when no thread can be started) acts as
/// it always did.
pub fn release_leases_on_termination() {
    #[cfg(unix)]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(unix::watch);
    }
}

#[cfg(unix)]
mod unix {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;

    pub(super) fn watch() {
        let (ready, installed) = std::sync::mpsc::channel();
        let watcher = std::thread::Builder::new()
            .name("credlock-signals".to_owned())
            .spawn(move || {
                let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
                    let _ = ready.send(());
                    return;
                };
                let _ = ready.send(());
                if let Some(signal) = signals.forever().next() {
                    credlock::internal::release_held_leases();
                    eprintln!(
                        "credlock: interrupted; the login was abandoned and its lease released"
                    );
                    std::process::exit(128 + signal);
                }
            });
        if watcher.is_ok() {
            // The login starts once the handlers are in place (or could not be installed).
            let _ = installed.recv();
        }
    }
}
