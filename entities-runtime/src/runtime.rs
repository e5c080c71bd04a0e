//! The runtime (the seed's Supervisor): the store, the registry of live entities, and the API.

use std::marker::PhantomData;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::action_path;
use crate::changes::Changes;
use crate::context::Context;
use crate::database::Database;
use crate::entity::{ActionOf, Create, Entity, EntityId, Tagged, Version};
use crate::error::{Error, panic_message, storage};
use crate::follow;
use crate::idempotency;
use crate::keyed_call::KeyedCall;
use crate::metrics::Metrics;
use crate::shared::{Config, Shared};
use crate::slot::{Command, Reply};
use crate::sql::Backend;
use crate::store::{EventRecord, Migration, Store};
use crate::worker;

/// Failed to start a runtime.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Builds a [`Runtime`]: `Runtime::builder(url).idle_timeout(...).build().await`.
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    url: String,
    config: Config,
    migrate: bool,
    migrations: Vec<Migration>,
    max_connections: u32,
    acquire_timeout: Duration,
}

impl RuntimeBuilder {
    /// How long an entity stays in memory with no call (default 60 s). It leaves between one and
    /// two timeouts after its last call, having written a snapshot if it changed.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Writes a snapshot every `events` events (default 100; 0 for only at idle), so a crash
    /// never forces a full replay of a long history.
    pub fn snapshot_every(mut self, events: u64) -> Self {
        self.config.snapshot_every = events;
        self
    }

    /// How many times an action is decided before a version conflict is given up (default 5).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts.max(1);
        self
    }

    /// Whether to apply the migrations at start (default `true`).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// The application's own migrations (its read models), applied after the runtime's.
    pub fn migrations(mut self, migrations: &[Migration]) -> Self {
        self.migrations.extend_from_slice(migrations);
        self
    }

    /// How many transactions may commit batches at once (default 2): one batch fills while
    /// another commits.
    pub fn committers(mut self, committers: usize) -> Self {
        self.config.committers = committers.max(1);
        self
    }

    /// The most actions one transaction commits together (default 64); a chain of one entity
    /// is never split.
    pub fn batch_size(mut self, actions: usize) -> Self {
        self.config.batch_size = actions.max(1);
        self
    }

    /// How long a committer keeps its pooled connection while no batch waits (default 5 ms;
    /// zero gives it back after every batch). Kept, a connection saves the next batch the
    /// round trips sqlx spends checking a connection as it hands it out and takes it back: a
    /// pause between one caller's actions is shorter than this. It is kept only while the pool
    /// has an idle connection or room for one beside it, so no other caller waits for it, and
    /// only after a batch that committed.
    pub fn commit_linger(mut self, linger: Duration) -> Self {
        self.config.commit_linger = linger;
        self
    }

    /// Postgres: whether a committer that keeps its connection (see
    /// [`commit_linger`](Self::commit_linger)) begins the next transaction as it commits the
    /// last, in one round trip (default on). Each batch then saves the round trip of its
    /// `BEGIN`: on a machine where one costs about a tenth of a millisecond, a tenth of a lone
    /// action's latency.
    ///
    /// The trade: Postgres's `now()` (and every column default that calls it) is the time the
    /// transaction began, so in a batch written in a transaction begun ahead it can precede the
    /// batch's actions by up to the linger. Where a row's time must not precede its action, use
    /// `clock_timestamp()` there, or turn this off. While it waits, the connection shows as `idle
    /// in transaction` in `pg_stat_activity`, holding no transaction id and no snapshot (neither
    /// vacuum nor the readers of the event log wait for it). A server that ends it (an
    /// `idle_in_transaction_session_timeout` shorter than the linger) costs the next batch a
    /// connection from the pool: the batch is written on that one, and its calls do not fail for
    /// it. SQLite ignores it: a transaction there takes the write lock as it begins.
    pub fn begin_ahead(mut self, begin_ahead: bool) -> Self {
        self.config.begin_ahead = begin_ahead;
        self
    }

    /// How long an idempotency key is kept (default 24 hours, as common HTTP APIs keep theirs):
    /// a call repeated with its key within it returns the first call's outcome; after it, the
    /// key is deleted (by a sweep that runs every tenth of it) and a call with it is new.
    pub fn idempotency_retention(mut self, retention: Duration) -> Self {
        self.config.idempotency_retention = retention.max(Duration::from_secs(1));
        self
    }

    /// SQLite: how often the runtime looks for other processes' writes to the entities it holds
    /// live, to catch them up (default 100 ms; zero: never). Postgres needs no polling: runtimes
    /// notify each other of their commits.
    pub fn follow_interval(mut self, interval: Duration) -> Self {
        self.config.follow_interval = interval;
        self
    }

    /// Whether live entities catch up with other runtimes' writes as they happen (default
    /// `true`; see [`EntityRef::changes`]). Off, this runtime learns of another's write to an
    /// entity it holds at its next write there (a version conflict, then a catch-up), and its
    /// subscriptions see other runtimes' events at their polls; it saves the listening
    /// connection on Postgres. Its own commits are announced to the others either way.
    pub fn follow_other_writers(mut self, follow: bool) -> Self {
        self.config.follow_other_writers = follow;
        self
    }

    /// The size of the connection pool (default 10).
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// How long a call waits for a connection of the pool (default 5 s): when the database is
    /// away, calls that need it fail after this with a [`Error::Storage`] that
    /// [`is_unavailable`](Error::is_unavailable), rather than wait for it to come back.
    /// Entities in memory go on answering `get` meanwhile.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    pub async fn build(self) -> Result<Runtime, StartError> {
        let store = Store::connect_with(&self.url, self.max_connections, self.acquire_timeout)
            .await
            .map_err(StartError::Connect)?;
        if self.migrate {
            store
                .migrate(&self.migrations)
                .await
                .map_err(StartError::Migrate)?;
        }
        // An in-memory database lives in its one connection: no other process writes to it.
        let in_memory = self.url.contains(":memory:") || self.url.contains("mode=memory");
        let (shared, notices) = Shared::start(store, in_memory, self.config);
        follow::start(&shared, notices);
        shared.tasks.spawn(sweep_idle(Arc::downgrade(&shared)));
        shared
            .tasks
            .spawn(idempotency::sweep_expired_keys(Arc::downgrade(&shared)));
        Ok(Runtime { shared })
    }
}

/// Keeps entities live, one task each, over a Postgres or SQLite database. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

impl Runtime {
    /// A runtime with the default settings on `url` (`postgres://...` or `sqlite:...`).
    pub async fn connect(url: &str) -> Result<Self, StartError> {
        Self::builder(url).build().await
    }

    pub fn builder(url: impl Into<String>) -> RuntimeBuilder {
        RuntimeBuilder {
            url: url.into(),
            config: Config::default(),
            migrate: true,
            migrations: Vec::new(),
            max_connections: 10,
            acquire_timeout: crate::store::DEFAULT_ACQUIRE_TIMEOUT,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn backend(&self) -> Backend {
        self.shared.store.backend()
    }

    /// The runtime's database: to read the read models its projections keep.
    pub fn database(&self) -> &Database {
        &self.shared.database
    }

    /// The handle of entity `id` of type `E` (the seed's `entity_process`). Nothing is loaded
    /// until the first call through it.
    pub fn entity<E: Entity>(&self, id: EntityId) -> EntityRef<E> {
        EntityRef {
            runtime: self.clone(),
            id,
            entity: PhantomData,
        }
    }

    /// Creates an entity: the database gives its id, [`Create::create`] turns `args` into its
    /// first action, and that action commits with the entity's row, its events and projections,
    /// through the same committers as every other action. A refused create stores nothing
    /// (its id stays unused).
    pub async fn create<E: Create>(
        &self,
        ctx: &Context,
        args: E::Args,
    ) -> Result<Arc<E>, Error<E::Error>> {
        // Held for the whole call, taken before the check: `shutdown` waits for a call that
        // got in, and a call that comes after it starts is refused.
        let _running = self.shared.tasks.token();
        self.open()?;
        let ctx = ctx.for_call();
        let key = match ctx.idempotency_key() {
            Some(_) => {
                let args = serde_json::to_string(&args).map_err(|error| Error::Payload {
                    entity_type: E::TYPE,
                    id: 0,
                    type_tag: "create",
                    message: format!("its arguments do not serialize: {error}"),
                })?;
                KeyedCall::of(&ctx, &[b"create", E::TYPE.as_bytes(), args.as_bytes()])
            }
            None => None,
        };
        // One call per key at a time in this runtime; a key stored already is the answer.
        let _key_lock = match &key {
            Some(key) => Some(self.shared.key_locks.lock(&key.user_id, &key.key).await),
            None => None,
        };
        if let Some(key) = &key
            && let Some(stored) = idempotency::stored(&self.shared, key).await?
        {
            return idempotency::kept_state::<E>(&self.shared, key, stored, None).await;
        }
        let span = action_path::action_span::<E>();
        let first = first_action::<E>(&self.shared, &ctx, args)
            .instrument(span.clone())
            .await;
        let (id, action) = match first {
            Ok(first) => {
                span.record("entity_id", first.0);
                first
            }
            Err(error) => {
                span.record("outcome", error.outcome());
                return Err(error);
            }
        };
        self.dispatch(id, |reply| Command::Create {
            ctx,
            action,
            key,
            reply,
            span,
        })
        .await
    }

    /// The stored events of entity `id`, with the actions that caused them, oldest first. Empty
    /// for an unknown id. A long history is better read in pages: [`history_page`](Self::history_page).
    pub async fn history<E: Entity>(
        &self,
        id: EntityId,
    ) -> Result<Vec<EventRecord>, Error<E::Error>> {
        self.history_page::<E>(id, 0, usize::MAX).await
    }

    /// At most `limit` stored events of entity `id` after version `after`, oldest first: read
    /// page by page, passing the last version read as `after`. Empty for an unknown id.
    pub async fn history_page<E: Entity>(
        &self,
        id: EntityId,
        after: Version,
        limit: usize,
    ) -> Result<Vec<EventRecord>, Error<E::Error>> {
        self.shared
            .store
            .history(E::TYPE, id, after, limit)
            .await
            .map_err(storage)
    }

    /// The states every live entity of type `E` commits from now on (see
    /// [`EntityRef::changes`]). Only entities in memory are seen: to see every change of a
    /// type, follow the event log with a subscription.
    pub fn changes_of<E: Entity>(&self) -> Changes<E> {
        self.shared.registry.watch_type::<E>()
    }

    /// How many entities are live in memory.
    pub fn live_entities(&self) -> usize {
        self.shared.registry.len()
    }

    /// What this runtime has done since it started: commits, conflicts, loads, passivations,
    /// snapshots, and the chains waiting for a committer.
    pub fn metrics(&self) -> Metrics {
        self.shared.counters.read()
    }

    /// Stops taking calls, lets every live entity finish what it has queued, snapshot and stop,
    /// and closes the pool. Closing waits (as sqlx's `Pool::close` does) for every connection
    /// taken from it to come back: drop those taken with `database().acquire()` or `begin()`
    /// first, or it waits for them.
    pub async fn shutdown(&self) {
        self.shared.shut_down().await;
    }

    pub(crate) fn open<D>(&self) -> Result<(), Error<D>> {
        if self.shared.is_open() {
            Ok(())
        } else {
            Err(Error::ShuttingDown)
        }
    }

    async fn call<E: Entity>(
        &self,
        id: EntityId,
        command: impl FnOnce(Reply<E>) -> Command<E>,
    ) -> Result<Arc<E>, Error<E::Error>> {
        // Held for the whole call, taken before the check: `shutdown` waits for a call that
        // got in, and a call that comes after it starts is refused.
        let _running = self.shared.tasks.token();
        self.open()?;
        self.dispatch(id, command).await
    }

    /// A keyed call (see `idempotency`): one at a time per key in this runtime, and answered
    /// with what the first call returned when its key is stored already.
    async fn call_keyed<E: Entity>(
        &self,
        id: EntityId,
        key: KeyedCall,
        command: impl FnOnce(Reply<E>, KeyedCall) -> Command<E>,
    ) -> Result<Arc<E>, Error<E::Error>> {
        let _running = self.shared.tasks.token();
        self.open()?;
        let _key_lock = self.shared.key_locks.lock(&key.user_id, &key.key).await;
        if let Some(stored) = idempotency::stored(&self.shared, &key).await? {
            return idempotency::kept_state::<E>(&self.shared, &key, stored, Some(id)).await;
        }
        self.dispatch(id, |reply| command(reply, key)).await
    }

    /// Queues a command for entity `id`, starting its worker when none runs, and waits for the
    /// answer.
    async fn dispatch<E: Entity>(
        &self,
        id: EntityId,
        command: impl FnOnce(Reply<E>) -> Command<E>,
    ) -> Result<Arc<E>, Error<E::Error>> {
        let (reply, answer) = oneshot::channel();
        if let Some(idle) = self.shared.registry.dispatch(id, command(reply)) {
            worker::start(&self.shared, idle);
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::Panicked {
                entity_type: E::TYPE,
                id,
                during: "entity worker",
                message: "the entity's worker ended without answering".to_owned(),
            })
        })
    }
}

/// A handle on one entity (the seed's pid). Calls through it reach the live entity, loading it
/// when it is not in memory; it never goes stale.
pub struct EntityRef<E> {
    runtime: Runtime,
    id: EntityId,
    entity: PhantomData<fn() -> E>,
}

impl<E> Clone for EntityRef<E> {
    fn clone(&self) -> Self {
        Self {
            runtime: self.runtime.clone(),
            id: self.id,
            entity: PhantomData,
        }
    }
}

impl<E: Entity> EntityRef<E> {
    pub fn id(&self) -> EntityId {
        self.id
    }

    /// The last committed state, from memory: never queued behind writes. Loads the entity
    /// when it is not live.
    pub async fn get(&self) -> Result<Arc<E>, Error<E::Error>> {
        if let Some(state) = self.runtime.shared.registry.published::<E>(self.id) {
            return Ok(state);
        }
        self.runtime.call(self.id, Command::Get).await
    }

    /// The states the entity commits from now on, each once, in version order: this runtime's
    /// writes as they commit, and other runtimes' as this one catches up with them (within
    /// milliseconds on Postgres; see [`RuntimeBuilder::follow_interval`] on SQLite). Loads the
    /// entity, and keeps it in memory while watched. See [`Changes`] for a watcher that falls
    /// behind.
    pub async fn changes(&self) -> Result<Changes<E>, Error<E::Error>> {
        loop {
            self.get().await?;
            // `None`: it left memory between the two; load it again.
            if let Some(changes) = self.runtime.shared.registry.watch::<E>(self.id) {
                return Ok(changes);
            }
        }
    }

    /// Runs `action`: handler, events, version check, projections, one transaction; returns the
    /// new state once committed. On failure nothing changed, in the database or in memory.
    ///
    /// A boxed future rather than an `async fn`: the future's type then does not name the
    /// action's, so an action `E` does not list is one error, on the argument, instead of one
    /// more at the call and at its `.await`.
    pub fn send_action(
        &self,
        ctx: &Context,
        action: impl ActionOf<E>,
    ) -> BoxFuture<'_, Result<Arc<E>, Error<E::Error>>> {
        let action: E::Action = action.into();
        let ctx = ctx.for_call();
        let key = ctx.idempotency_key().and_then(|_| {
            let payload = fingerprinted(&action);
            KeyedCall::of(
                &ctx,
                &[
                    b"action",
                    E::TYPE.as_bytes(),
                    &self.id.to_le_bytes(),
                    payload.as_bytes(),
                ],
            )
        });
        match key {
            None => {
                Box::pin(
                    self.runtime
                        .call(self.id, |reply| Command::Act { ctx, action, reply }),
                )
            }
            // Stored with its key, as a unit of one action.
            Some(key) => {
                Box::pin(
                    self.runtime
                        .call_keyed(self.id, key, |reply, key| Command::Batch {
                            ctx,
                            actions: vec![action],
                            key: Some(key),
                            one: true,
                            reply,
                        }),
                )
            }
        }
    }

    /// Runs `actions` as one batch (the seed's `send_actions`): each decided on the state the one
    /// before it left, all stored in one transaction with one version check, or none. Returns the
    /// state after the last. A refusal names the action ([`Error::InBatch`] with its index) and
    /// leaves the database and memory unchanged. Mixed action types go in as the entity's
    /// action enum (`ShoppingListAction::from(AddItem { .. })`).
    pub fn send_actions<A: ActionOf<E>>(
        &self,
        ctx: &Context,
        actions: impl IntoIterator<Item = A>,
    ) -> BoxFuture<'_, Result<Arc<E>, Error<E::Error>>> {
        let actions: Vec<E::Action> = actions.into_iter().map(Into::into).collect();
        let ctx = ctx.for_call();
        let key = ctx.idempotency_key().and_then(|_| {
            let payloads: Vec<String> = actions.iter().map(fingerprinted).collect();
            let mut parts: Vec<&[u8]> = vec![b"actions", E::TYPE.as_bytes()];
            let id = self.id.to_le_bytes();
            parts.push(&id);
            parts.extend(payloads.iter().map(|payload| payload.as_bytes()));
            KeyedCall::of(&ctx, &parts)
        });
        match key {
            None => Box::pin(self.runtime.call(self.id, |reply| Command::Batch {
                ctx,
                actions,
                key: None,
                one: false,
                reply,
            })),
            Some(key) => {
                Box::pin(
                    self.runtime
                        .call_keyed(self.id, key, |reply, key| Command::Batch {
                            ctx,
                            actions,
                            key: Some(key),
                            one: false,
                            reply,
                        }),
                )
            }
        }
    }
}

/// A new entity's id, reserved, and the first action `E::create` makes of `args` (a refusal or
/// a panic of `E::create` is its error): a create's start, through the runtime or in a unit.
pub(crate) async fn first_action<E: Create>(
    shared: &Shared,
    ctx: &Context,
    args: E::Args,
) -> Result<(EntityId, E::Action), Error<E::Error>> {
    let id = shared.ids.next(&shared.store).await.map_err(storage)?;
    let action =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| E::create(ctx, id, args)))
            .map_err(|payload| Error::Panicked {
                entity_type: E::TYPE,
                id,
                during: "create",
                message: panic_message(payload.as_ref()),
            })?
            .map_err(Error::Rejected)?;
    Ok((id, action))
}

/// What a keyed call's fingerprint takes of an action: its type tag, payload version and
/// payload (two actions of one payload, unit structs say, are still two calls). A payload that
/// does not encode fails the call later, in its worker.
fn fingerprinted(action: &impl Tagged) -> String {
    format!(
        "{}\0{}\0{}",
        action.type_tag(),
        action.payload_version(),
        action.encode().unwrap_or_default()
    )
}

/// Every `idle_timeout`, asks the entities nothing touched since the last round to leave; at
/// shutdown, asks them all. Holds the runtime weakly, so a runtime dropped without `shutdown`
/// is not kept alive by it.
async fn sweep_idle(shared: Weak<Shared>) {
    let Some((idle_timeout, shutdown)) = shared
        .upgrade()
        .map(|shared| (shared.config.idle_timeout, shared.shutdown.clone()))
    else {
        return;
    };
    loop {
        let shutting_down = tokio::select! {
            () = tokio::time::sleep(idle_timeout) => false,
            () = shutdown.cancelled() => true,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shutting_down {
            shared.registry.ask_to_leave(&shared, |_| true);
            return;
        }
        shared.registry.ask_to_leave(&shared, |live| live.sweep());
        shared.counters.idle_sweeps.incr();
    }
}
