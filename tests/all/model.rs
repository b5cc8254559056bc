//! A model-based test of the protocol (proptest-state-machine): three processes, each with its
//! own `Store` handle on one file, run random steps (get a token, alone or several at once on
//! threads; log in; log out; advance the clock; the server revokes the grant or fails; locks
//! become unreliable). The fake server keeps the truth. Invariants are checked after every
//! step; a failure shrinks to a short list of steps.

use std::sync::Arc;
use std::time::Duration;

use credlock::{Error, FsKind, LockMode, Session, Store};
use credlock_test::{Failure, FakeServer, FakeTransport, ManualClock, ReusePolicy};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

const PROCESSES: usize = 3;
const ENDPOINT: &str = "http://127.0.0.1:9/token";

#[derive(Clone, Debug)]
enum Step {
    Token(usize),
    TokensAtOnce(Vec<usize>),
    Login(usize),
    Logout(usize),
    Advance(u64),
    ServerRevokesGrant,
    ServerFailsNext(u16),
    LocksReliable(bool),
    QuietPeriod,
}

#[derive(Clone, Debug)]
struct Model {
    policy: ReusePolicy,
    locks_reliable: bool,
    /// The server revoked the grant behind the client's back (since the last login): a
    /// stored access token can then be revoked yet unexpired, and no client can know.
    revoked_since_login: bool,
}

struct Protocol;

impl ReferenceStateMachine for Protocol {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        prop_oneof![
            Just(ReusePolicy::RevokeGrant),
            Just(ReusePolicy::RejectOnly)
        ]
        .prop_map(|policy| Model {
            policy,
            locks_reliable: true,
            revoked_since_login: false,
        })
        .boxed()
    }

    fn transitions(_: &Model) -> BoxedStrategy<Step> {
        let p = 0..PROCESSES;
        prop_oneof![
            6 => p.clone().prop_map(Step::Token),
            3 => proptest::collection::vec(p.clone(), 2..=PROCESSES).prop_map(Step::TokensAtOnce),
            2 => p.clone().prop_map(Step::Login),
            1 => p.prop_map(Step::Logout),
            4 => prop_oneof![Just(0u64), 1..60u64, 3_000..4_000u64].prop_map(Step::Advance),
            1 => Just(Step::ServerRevokesGrant),
            1 => prop_oneof![Just(429u16), Just(500), Just(503)].prop_map(Step::ServerFailsNext),
            1 => any::<bool>().prop_map(Step::LocksReliable),
            1 => Just(Step::QuietPeriod),
        ]
        .boxed()
    }

    fn apply(mut state: Model, step: &Step) -> Model {
        match step {
            Step::LocksReliable(r) => state.locks_reliable = *r,
            Step::ServerRevokesGrant => state.revoked_since_login = true,
            // Without working locks, simultaneous refreshes can reuse a rotated token, and a
            // grant-revoking server then revokes the grant: possibly revoked from here on.
            Step::TokensAtOnce(_)
                if !state.locks_reliable && state.policy == ReusePolicy::RevokeGrant =>
            {
                state.revoked_since_login = true;
            }
            Step::Login(_) => state.revoked_since_login = false,
            _ => {}
        }
        state
    }
}

struct World {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: Arc<ManualClock>,
    server: Arc<FakeServer>,
    stores: Vec<Arc<Store>>,
}

impl World {
    fn stores(&self, reliable: bool) -> Vec<Arc<Store>> {
        (0..PROCESSES)
            .map(|_| {
                Arc::new(
                    Store::new(&self.path)
                        .with_clock(self.clock.clone())
                        .with_transport(Arc::new(FakeTransport::new(self.server.clone())))
                        .with_filesystem_kind(FsKind::Local)
                        .with_lock_mode(if reliable {
                            LockMode::Auto
                        } else {
                            LockMode::Off
                        }),
                )
            })
            .collect()
    }

    fn stored(&self) -> Option<Session> {
        self.stores[0]
            .load()
            .expect("invariant: the store always parses")
    }
}

/// What a token request may answer in this model; anything else is a bug.
fn acceptable(e: &Error) -> bool {
    matches!(
        e,
        Error::NoSession { .. } | Error::SessionExpired { .. } | Error::Unavailable { .. }
    )
}

struct ProtocolTest;

impl StateMachineTest for ProtocolTest {
    type SystemUnderTest = World;
    type Reference = Protocol;

    fn init_test(model: &Model) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::starting_now();
        let server = FakeServer::builder()
            .policy(model.policy)
            .latency(Duration::from_millis(1))
            .clock(clock.clone())
            .build();
        let mut world = World {
            path: dir.path().join("session.json"),
            _dir: dir,
            clock,
            server,
            stores: Vec::new(),
        };
        world.stores = world.stores(true);
        let first = world.server.seed_session(ENDPOINT).expect("seed");
        world.stores[0].save(&first).expect("save");
        world
    }

    fn apply(mut world: World, model: &Model, step: Step) -> World {
        let before = world.stored();
        let counters_before = world.server.counters();
        // Every token handed out is issued by the server and unexpired when handed out. It is
        // also unrevoked unless the server revoked the grant behind the client's back, or a
        // duplicate refresh (possible only without working locks) made a grant-revoking
        // server revoke it. `model` is the state after this step: use the one before.
        let check_validity = !model.revoked_since_login
            && (model.locks_reliable || model.policy != ReusePolicy::RevokeGrant);
        match &step {
            Step::Token(p) => {
                let store = Arc::clone(&world.stores[*p]);
                check_token(
                    &world.server,
                    &world.clock,
                    store.access_token(),
                    check_validity,
                );
            }
            Step::TokensAtOnce(ps) => {
                let barrier = Arc::new(std::sync::Barrier::new(ps.len()));
                let handles: Vec<_> = ps
                    .iter()
                    .map(|p| {
                        let (store, server, barrier) = (
                            Arc::clone(&world.stores[*p]),
                            world.server.clone(),
                            Arc::clone(&barrier),
                        );
                        let clock = world.clock.clone();
                        std::thread::spawn(move || {
                            barrier.wait();
                            check_token(&server, &clock, store.access_token(), check_validity);
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().expect("a token request panicked");
                }
            }
            Step::Login(p) => {
                let s = world.server.seed_session(ENDPOINT).expect("seed");
                world.stores[*p].save(&s).expect("login saves");
            }
            Step::Logout(p) => {
                world.stores[*p].delete().expect("logout deletes");
            }
            Step::Advance(s) => world.clock.advance(Duration::from_secs(*s)),
            Step::ServerRevokesGrant => {
                if let Some(s) = &before {
                    world.server.revoke_grant_of(s.refresh_token().secret());
                }
            }
            Step::ServerFailsNext(status) => world.server.push_failure(Failure::Status {
                status: *status,
                body: String::new(),
                retry_after: None,
            }),
            Step::LocksReliable(r) => world.stores = world.stores(*r),
            Step::QuietPeriod => {
                world.clock.advance(Duration::from_secs(4_000));
                // Quiet: the server's scripted failures run out, then one request goes through.
                for _ in 0..32 {
                    if !matches!(
                        world.stores[0].access_token(),
                        Err(Error::Unavailable { .. })
                    ) {
                        break;
                    }
                }
                if let Some(s) = world.stored() {
                    assert!(
                        world.server.is_live(s.refresh_token().secret()),
                        "invariant: after a quiet period the stored refresh token is the server's live one"
                    );
                }
            }
        }
        let after = world.stored();
        let counters = world.server.counters();
        if model.locks_reliable && !matches!(step, Step::LocksReliable(_)) {
            assert_eq!(
                counters.reuse_detected, counters_before.reuse_detected,
                "invariant: with reliable locks no refresh sends a refresh token that was already rotated"
            );
        }
        if let Some(s) = &after {
            assert!(
                world.server.issued(s.refresh_token().secret()),
                "invariant: the store holds a session the server issued"
            );
        }
        if let (Some(b), None) = (&before, &after)
            && !matches!(step, Step::Logout(_))
        {
            let refused_this_step = counters.invalid_grant > counters_before.invalid_grant;
            assert!(
                world.server.refused(b.refresh_token().secret())
                    || (matches!(step, Step::TokensAtOnce(_)) && refused_this_step),
                "invariant: a session is deleted only after its own refresh token was refused, or by logout"
            );
        }
        world
    }
}

fn check_token(
    server: &FakeServer,
    clock: &ManualClock,
    result: Result<credlock::AccessToken, Error>,
    check_validity: bool,
) {
    match result {
        Ok(t) => {
            let expires = server.access_token_expires_at(t.secret());
            assert!(
                expires.is_some(),
                "invariant: every token handed out was issued by the server"
            );
            assert!(
                expires > Some(credlock::Clock::now(clock)),
                "invariant: every token handed out is unexpired"
            );
            if check_validity {
                assert!(
                    server.is_access_token_valid(t.secret()),
                    "invariant: every token handed out is valid when handed out"
                );
            }
        }
        Err(e) => assert!(acceptable(&e), "unexpected error: {e:?}"),
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn the_refresh_protocol_keeps_its_invariants_under_random_steps(sequential 1..40 => ProtocolTest);
}
