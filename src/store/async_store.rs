//! The store for async programs (feature `tokio`): nothing blocks the runtime, and the tasks
//! of one process share one refresh in flight.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::error::Error;
use crate::login::{Login, Prompt};
use crate::session::model::{Client, Session};
use crate::session::token_response::TokenResponse;
use crate::store::access_token::AccessToken;
use crate::store::{LoggedIn, LoggedOut, Revocation, Store};

/// The outcome of one refresh, shared by every task that waited for it.
type Shared = Arc<Result<AccessToken, Error>>;

/// A [`Store`] for async Rust (tokio): every call that may touch the disk, wait for a lock or
/// a lease, sleep or send a request runs on tokio's blocking pool, never on the runtime's
/// worker threads, and the tasks of one process that need a refresh at the same time share
/// one refresh in flight (single-flight) instead of queueing on the file lock one by one.
///
/// Processes still exclude each other as with [`Store`]: this handle only changes how the
/// tasks of one process wait.
///
/// # Cancellation
/// Dropping a returned future never leaves a lock held or a file half written: the blocking
/// work runs to its end on the blocking pool whether or not anybody still waits for it (its
/// guards release the lock, and the save is an atomic rename), and a refresh a dropped task
/// started is handed to the tasks still waiting. Every wait inside is bounded by the store's
/// lock timeout and the transport's timeouts.
///
/// # Examples
/// ```no_run
/// # async fn call_api() -> Result<(), credlock::Error> {
/// use credlock::{AsyncStore, Store};
/// let store = AsyncStore::new(Store::new("/home/me/.config/my-cli/session.json"));
/// let token = store.access_token().await?;
/// let header = format!("Bearer {}", token.secret());
/// # let _ = header;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub struct AsyncStore {
    store: Arc<Store>,
    in_flight: Arc<Mutex<Option<Flight>>>,
}

/// A refresh in flight: its number (so that only it clears its own slot) and where its
/// outcome will appear.
#[derive(Debug)]
struct Flight {
    number: u64,
    outcome: watch::Receiver<Option<Shared>>,
}

impl AsyncStore {
    /// Wraps `store`; configure it first (margin, lock mode, transport, observer).
    #[must_use]
    pub fn new(store: Store) -> AsyncStore {
        AsyncStore {
            store: Arc::new(store),
            in_flight: Arc::new(Mutex::new(None)),
        }
    }

    /// The wrapped store, for its settings and paths (its methods block: call them from
    /// [`tokio::task::spawn_blocking`] or outside the runtime).
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A valid access token, as [`Store::access_token`], without blocking the runtime: the
    /// stored one if it is fresh (one small read on the blocking pool), else the result of
    /// the one refresh in flight in this process, started by the first task that needed it.
    ///
    /// # Errors
    /// As [`Store::access_token`]. Every task that waited for a failed refresh gets the same
    /// error.
    pub async fn access_token(&self) -> Result<AccessToken, Error> {
        if let Some(flight) = self.current_flight() {
            return wait_for(flight).await;
        }
        let store = Arc::clone(&self.store);
        let fresh = blocking(move || {
            Ok(store
                .load()?
                .filter(|s| store.is_fresh(s))
                .map(|s| AccessToken::from_session(&s, false)))
        })
        .await?;
        if let Some(token) = fresh {
            return Ok(token);
        }
        wait_for(self.join_or_start_flight()).await
    }

    /// A valid access token with at least `min_valid` left, as
    /// [`Store::access_token_valid_for`], on the blocking pool (outside this process's
    /// single flight: the store's guards still make it one refresh across processes).
    ///
    /// # Errors
    /// As [`Store::access_token_valid_for`].
    pub async fn access_token_valid_for(
        &self,
        min_valid: std::time::Duration,
    ) -> Result<AccessToken, Error> {
        let store = Arc::clone(&self.store);
        blocking(move || store.access_token_valid_for(min_valid)).await
    }

    /// A new access token after an API rejected `rejected` (HTTP 401), as
    /// [`Store::access_token_after_rejection`], on the blocking pool. The store refreshes
    /// only if it still holds the rejected token, so any number of tasks and processes
    /// reporting one rejection cause one refresh.
    ///
    /// # Errors
    /// As [`Store::access_token_after_rejection`].
    pub async fn access_token_after_rejection(&self, rejected: &str) -> Result<AccessToken, Error> {
        let store = Arc::clone(&self.store);
        let rejected = rejected.to_owned();
        blocking(move || store.access_token_after_rejection(&rejected)).await
    }

    /// [`Store::load`] on the blocking pool.
    ///
    /// # Errors
    /// As [`Store::load`].
    pub async fn load(&self) -> Result<Option<Session>, Error> {
        let store = Arc::clone(&self.store);
        blocking(move || store.load()).await
    }

    /// [`Store::save`] on the blocking pool.
    ///
    /// # Errors
    /// As [`Store::save`].
    pub async fn save(&self, session: Session) -> Result<(), Error> {
        let store = Arc::clone(&self.store);
        blocking(move || store.save(&session)).await
    }

    /// [`Store::login_with`] on the blocking pool: `login` (such as a [`Login`] flow) runs
    /// there under the store's guards, and its session is saved, or another process's is
    /// adopted.
    ///
    /// # Errors
    /// As [`Store::login_with`].
    pub async fn login_with(
        &self,
        deadline: std::time::Duration,
        login: impl FnOnce() -> Result<Session, Error> + Send + 'static,
    ) -> Result<LoggedIn, Error> {
        let store = Arc::clone(&self.store);
        blocking(move || store.login_with(deadline, login)).await
    }

    /// A valid access token, logging in first when that is what it takes: the token of
    /// [`AsyncStore::access_token`] (one refresh in flight per process), or, when a login is
    /// needed ([`Error::needs_login`]), [`Store::access_token_or_login`]'s login on the
    /// blocking pool, `show` receiving the device code or URL there.
    ///
    /// # Errors
    /// As [`Store::access_token_or_login`].
    pub async fn access_token_or_login(
        &self,
        login: Login,
        mut show: impl FnMut(Prompt<'_>) + Send + 'static,
    ) -> Result<AccessToken, Error> {
        match self.access_token().await {
            Err(e) if e.needs_login() => {}
            other => return other,
        }
        let store = Arc::clone(&self.store);
        blocking(move || store.access_token_or_login(&login, &mut show)).await
    }

    /// [`Store::import_token_response`] on the blocking pool.
    ///
    /// # Errors
    /// As [`Store::import_token_response`].
    pub async fn import_token_response(
        &self,
        client: Client,
        response: TokenResponse,
    ) -> Result<Session, Error> {
        let store = Arc::clone(&self.store);
        blocking(move || store.import_token_response(client, response)).await
    }

    /// [`Store::import_json`] on the blocking pool.
    ///
    /// # Errors
    /// As [`Store::import_json`].
    pub async fn import_json(&self, client: Client, body: Vec<u8>) -> Result<Session, Error> {
        let store = Arc::clone(&self.store);
        blocking(move || store.import_json(client, &body)).await
    }

    /// [`Store::logout`] on the blocking pool.
    ///
    /// # Errors
    /// As [`Store::logout`].
    pub async fn logout(&self, revocation: Revocation) -> Result<LoggedOut, Error> {
        let store = Arc::clone(&self.store);
        blocking(move || store.logout(revocation)).await
    }

    fn current_flight(&self) -> Option<watch::Receiver<Option<Shared>>> {
        self.slot().as_ref().map(|f| f.outcome.clone())
    }

    /// The refresh in flight, or a new one started on the blocking pool. The blocking task
    /// publishes its outcome and clears the slot itself, so it completes for the waiters even
    /// if the task that started it is dropped.
    fn join_or_start_flight(&self) -> watch::Receiver<Option<Shared>> {
        let mut slot = self.slot();
        if let Some(flight) = slot.as_ref() {
            return flight.outcome.clone();
        }
        let number = NEXT_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (publish, outcome) = watch::channel(None);
        *slot = Some(Flight {
            number,
            outcome: outcome.clone(),
        });
        drop(slot);
        let store = Arc::clone(&self.store);
        let in_flight = Arc::clone(&self.in_flight);
        let context = crate::trace::Context::current();
        tokio::task::spawn_blocking(move || {
            // A panic in the store must not leave the waiters waiting forever.
            let refresh = || context.run(|| store.access_token());
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(refresh))
                .unwrap_or_else(|_| Err(panicked()));
            let mut slot = in_flight.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.as_ref().is_some_and(|f| f.number == number) {
                *slot = None;
            }
            drop(slot);
            // No receiver left is fine: nobody waits any more.
            let _ = publish.send(Some(Arc::new(result)));
        });
        outcome
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Flight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

static NEXT_FLIGHT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Waits for a flight's outcome without blocking the runtime.
async fn wait_for(mut outcome: watch::Receiver<Option<Shared>>) -> Result<AccessToken, Error> {
    let shared = match outcome.wait_for(Option::is_some).await {
        Ok(value) => value.clone(),
        // The sender is gone without an outcome: only if the blocking pool shut down.
        Err(_) => return Err(panicked()),
    };
    match shared.as_deref() {
        Some(Ok(token)) => Ok(token.clone()),
        Some(Err(e)) => Err(e.clone()),
        None => Err(panicked()),
    }
}

/// Runs `f` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let context = crate::trace::Context::current();
    tokio::task::spawn_blocking(move || context.run(f))
        .await
        .unwrap_or_else(|_| Err(panicked()))
}

fn panicked() -> Error {
    Error::Io {
        action: "finish the blocking credlock task for",
        path: std::path::PathBuf::from("<runtime>"),
        source: std::io::Error::other("the task panicked or the runtime shut down"),
    }
}
