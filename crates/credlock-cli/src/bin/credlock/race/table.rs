//! The race's report as a table for people.

use credlock::LockMode;
use credlock_test::ReusePolicy;

use super::{RaceArgs, Report};
use crate::Failure;

pub(super) fn print_table(args: &RaceArgs, reports: &[Report]) -> Result<(), Failure> {
    outln!(
        "credlock race: {} processes, server policy {}, latency {} ms, {} round(s); one expired session",
        args.processes,
        args.server.name(),
        args.latency_ms,
        args.rounds
    )?;
    outln!()?;
    outln!(
        "{:<6} {:>9} {:>13} {:>9} {:>7} {:>8} {:>6} {:>9} {:>8} {:>8}",
        "lock",
        "refreshes",
        "invalid_grant",
        "ok/fail",
        "tokens",
        "session",
        "store",
        "wall ms",
        "p50 ms",
        "p99 ms"
    )?;
    for r in reports {
        outln!(
            "{:<6} {:>9} {:>13} {:>9} {:>7} {:>8} {:>6} {:>9.1} {:>8.1} {:>8.1}",
            r.lock_mode.name(),
            r.refresh_requests,
            r.invalid_grant_responses,
            format!("{}/{}", r.processes_ok, r.processes_failed),
            r.distinct_access_tokens,
            if r.session_alive { "alive" } else { "DEAD" },
            if r.store_parses { "ok" } else { "BAD" },
            r.wall_ms,
            r.p50_ms,
            r.p99_ms
        )?;
    }
    outln!()?;
    for r in reports {
        let name = r.lock_mode.name();
        if r.lock_mode != LockMode::Off {
            if r.meets_the_lock_guarantee() {
                outln!(
                    "{name}: {} refresh request(s) for {} round(s), no invalid_grant, every process got the same token per round, the session is alive.",
                    r.refresh_requests,
                    r.rounds
                )?;
            } else {
                outln!(
                    "{name}: UNEXPECTED: the lock guarantee (one refresh per round, no invalid_grant, every process served, session alive) does not hold{}.",
                    r.first_error
                        .as_deref()
                        .map(|e| format!("; first error: {e}"))
                        .unwrap_or_default()
                )?;
            }
        } else if !r.session_alive {
            outln!(
                "{name}: without the lock the processes refreshed at once, the server saw a reused refresh token and {}: {} of {} processes ended without a usable token, and the session is dead. This is why the lock exists.",
                if args.server == ReusePolicy::RevokeGrant {
                    "revoked the whole grant"
                } else {
                    "refused it"
                },
                r.processes_failed,
                r.processes * r.rounds
            )?;
        } else if r.processes_failed == 0 && r.invalid_grant_responses == 0 {
            outln!(
                "{name}: without the lock, {} refresh requests instead of {}; the server's reuse grace period absorbed the duplicates (a server without one would have {}).",
                r.refresh_requests,
                r.rounds,
                if args.server == ReusePolicy::RejectOnly {
                    "refused them"
                } else {
                    "revoked the grant"
                }
            )?;
        } else if r.processes_failed == 0 {
            outln!(
                "{name}: without the lock, {} refresh requests met {} invalid_grant answers; the invalid_grant fallback kept every process working and deleted nothing.",
                r.refresh_requests,
                r.invalid_grant_responses
            )?;
        } else {
            outln!(
                "{name}: without the lock, {} of {} processes ended without a usable token{}.",
                r.processes_failed,
                r.processes * r.rounds,
                r.first_error
                    .as_deref()
                    .map(|e| format!(" (first error: {e})"))
                    .unwrap_or_default()
            )?;
        }
    }
    Ok(())
}
