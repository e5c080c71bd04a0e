//! Transactions over several entities (`Runtime::transaction`): a closure sends actions to
//! entities of any types through a [`Unit`], each decided on the entity's committed state (and
//! what the unit decided on it before); then every action's events, version checks and
//! projections commit in one database transaction, or nothing does.
//!
//! While a unit decides, it holds each entity's worker turn (`turn`), so no other action of
//! those entities interleaves; `get` still answers at once from the last committed state. Turns
//! are taken in one global order, (type, id): a unit that asks for an entity ordered before one
//! it holds gives its turns back and runs again with that entity taken first, so two units never
//! wait on each other. A version conflict (another runtime wrote) catches the entities up and
//! runs the closure again, up to `max_attempts`.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{Mutex, MutexGuard, oneshot};
use tracing::Instrument;

use crate::commit::{Outcome, Projections};
use crate::context::Context;
use crate::entity::{ActionOf, Create, Entity, EntityId};
use crate::error::{Error, failed_commit};
use crate::held::{Held, HeldEntity};
use crate::idempotency;
use crate::keyed_call::{Kept, KeyedCall};
use crate::runtime::{EntityRef, Runtime, first_action};
use crate::shared::Shared;
use crate::slot::Command;
use crate::store::KeyRow;
use crate::worker;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The global order turns are taken in: entity type, then id (the `TypeId` only tells apart
/// two entity types that share a type tag).
type Key = (&'static str, EntityId, TypeId);

fn key<E: Entity>(id: EntityId) -> Key {
    (E::TYPE, id, TypeId::of::<E>())
}

/// How to take the turn of one entity: remembered per entity, so that a new attempt takes the
/// entities an earlier one met, in order, before it runs.
type Acquire<D> =
    fn(Arc<Shared>, EntityId) -> BoxFuture<'static, Result<Box<dyn Held<D>>, Error<D>>>;

/// The handle a transaction's closure sends its actions through. Cheap to clone; good only
/// during the closure's run that was given it.
///
/// `D` is the transaction's domain error: each entity type it touches must have an error that
/// converts into it (`D: From<E::Error>`): the entities' own type when they share one, or an
/// enum of the application's.
///
/// Inside the closure, reach the unit's entities only through it: a direct
/// `EntityRef::send_action` to an entity the unit holds would wait for the unit, which waits for
/// the closure.
pub struct Unit<D> {
    state: Arc<Mutex<State<D>>>,
    attempt: u32,
}

impl<D> Clone for Unit<D> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            attempt: self.attempt,
        }
    }
}

struct State<D> {
    shared: Arc<Shared>,
    ctx: Arc<Context>,
    /// The transaction's idempotency key, stored with its commit.
    key: Option<KeyedCall>,
    /// The attempt running now; a `Unit` of another is refused.
    attempt: u32,
    /// The transaction returned: a `Unit` kept past it is refused (it would take turns that
    /// nobody gives back).
    ended: bool,
    held: BTreeMap<Key, Box<dyn Held<D>>>,
    /// Every entity an attempt asked for, to take (in order) before the next one runs.
    met: BTreeMap<Key, Acquire<D>>,
    /// The projections of the attempt's actions, in the order they were decided.
    projections: Vec<Projections>,
    /// The attempt asked for an entity ordered before one it holds: it runs again.
    out_of_order: bool,
    /// User code panicked deciding: the unit fails with this, whatever the closure returns.
    panicked: Option<Error<D>>,
    /// The entity user code panicked on: it reloads when its turn goes back.
    reload: Option<Key>,
    /// The commit is under way. It runs in a task of its own that holds the unit, so only that
    /// task's end mid-commit (the tokio runtime stopping) drops the unit with this set: the
    /// outcome is unknown, and every entity reads the database before its next action.
    committing: bool,
}

impl<D> Drop for State<D> {
    fn drop(&mut self) {
        if self.committing {
            for held in self.held.values() {
                held.mark_stale();
            }
        }
    }
}

impl<D: Send + 'static> Unit<D> {
    /// The state of `entity` as the unit sees it: its committed state, with what the unit
    /// decided on it so far. Takes the entity's turn.
    pub async fn get<E: Entity>(&self, entity: &EntityRef<E>) -> Result<Arc<E>, Error<D>>
    where
        D: From<E::Error>,
    {
        let mut state = self.lock().await?;
        Ok(state.hold::<E>(entity.id()).await?.state())
    }

    /// Decides `action` on `entity`'s state as the unit left it, and returns the state it leads
    /// to (committed only when the whole unit is). A refusal records nothing: the closure may
    /// go on, or return the error to give up the unit.
    pub fn send_action<'a, E: Entity>(
        &'a self,
        entity: &EntityRef<E>,
        action: impl ActionOf<E>,
    ) -> BoxFuture<'a, Result<Arc<E>, Error<D>>>
    where
        D: From<E::Error>,
    {
        let action: E::Action = action.into();
        let id = entity.id();
        Box::pin(async move {
            let mut state = self.lock().await?;
            state.decide::<E>(id, &action).await
        })
    }

    /// Creates an entity as part of the unit: the database gives its id now, [`Create::create`]
    /// makes its first action, and its row commits with the unit. Reach it afterwards through
    /// `runtime.entity::<E>(state.id)`, in the unit too.
    pub async fn create<E: Create>(&self, args: E::Args) -> Result<Arc<E>, Error<D>>
    where
        D: From<E::Error>,
    {
        let mut state = self.lock().await?;
        state.create::<E>(args).await
    }

    /// The unit's state, for the attempt this handle was given to.
    async fn lock(&self) -> Result<MutexGuard<'_, State<D>>, Error<D>> {
        let state = self.state.lock().await;
        if state.attempt == self.attempt && !state.ended {
            Ok(state)
        } else {
            Err(Error::UnitEnded)
        }
    }
}

impl<D: Send + 'static> State<D> {
    /// The entity `id` of type `E`, its turn taken when the unit does not hold it yet.
    async fn hold<E: Entity>(&mut self, id: EntityId) -> Result<&mut HeldEntity<E>, Error<D>>
    where
        D: From<E::Error>,
    {
        let key = key::<E>(id);
        if !self.held.contains_key(&key) {
            self.met.insert(key, acquire::<E, D>);
            // Only turns count: an entity the unit creates has none to wait for.
            let last_turn = self
                .held
                .iter()
                .filter(|(_, held)| !held.is_created())
                .map(|(key, _)| key)
                .next_back();
            if last_turn.is_some_and(|last| *last > key) {
                // Waiting for it now, holding an entity ordered after it, could wait for ever on
                // a unit that holds it and waits for ours. Run again, taking it in order.
                self.out_of_order = true;
                return Err(Error::Conflict {
                    entity_type: E::TYPE,
                    id,
                    attempts: 0,
                });
            }
            let held = acquire::<E, D>(self.shared.clone(), id).await?;
            self.held.insert(key, held);
        }
        let held = self
            .held
            .get_mut(&key)
            .unwrap_or_else(|| unreachable!("inserted above"));
        Ok(held
            .as_any()
            .downcast_mut::<HeldEntity<E>>()
            .unwrap_or_else(|| unreachable!("unit keys carry the TypeId of their entity")))
    }

    async fn decide<E: Entity>(
        &mut self,
        id: EntityId,
        action: &E::Action,
    ) -> Result<Arc<E>, Error<D>>
    where
        D: From<E::Error>,
    {
        let ctx = self.ctx.clone();
        let held = self.hold::<E>(id).await?;
        match held.decide(&ctx, action) {
            Ok((state, projections)) => {
                self.projections.extend(projections);
                Ok(state)
            }
            Err(error) => {
                if let Error::Panicked {
                    entity_type,
                    id,
                    during,
                    message,
                } = &error
                    && self.panicked.is_none()
                {
                    self.panicked = Some(Error::Panicked {
                        entity_type,
                        id: *id,
                        during,
                        message: message.clone(),
                    });
                    self.reload = Some(key::<E>(*id));
                }
                Err(error.map_rejection(D::from))
            }
        }
    }

    async fn create<E: Create>(&mut self, args: E::Args) -> Result<Arc<E>, Error<D>>
    where
        D: From<E::Error>,
    {
        let (id, action) = first_action::<E>(&self.shared, &self.ctx, args)
            .await
            .map_err(|error| error.map_rejection(D::from))?;
        // A new id orders after nothing the unit must wait for: nobody else can hold it.
        self.held
            .insert(key::<E>(id), Box::new(HeldEntity::<E>::created(id)));
        let created = self.decide::<E>(id, &action).await;
        if created.is_err() {
            // Refused: no entity, no row (the closure may go on without it).
            self.held.remove(&key::<E>(id));
        }
        created
    }

    /// Ends an attempt that will not commit: forgets what it decided, and what it created.
    fn discard_attempt(&mut self) {
        self.projections.clear();
        self.held.retain(|_, held| !held.is_created());
        for held in self.held.values_mut() {
            held.reset();
        }
        self.out_of_order = false;
    }

    /// Gives every turn back (reloading the entity user code panicked on).
    fn give_back_all(&mut self) {
        for (key, held) in std::mem::take(&mut self.held) {
            held.give_back(Some(key) == self.reload);
        }
    }

    /// Takes, in order, the turns of the entities earlier attempts met. One ordered before a
    /// turn held already (an entity the last attempt could not take) means giving them all
    /// back first: waiting for it while holding a later one could wait for ever.
    async fn take_met(&mut self) -> Result<(), Error<D>> {
        let to_take = |state: &Self| -> Vec<(Key, Acquire<D>)> {
            state
                .met
                .iter()
                .filter(|(key, _)| !state.held.contains_key(*key))
                .map(|(key, acquire)| (*key, *acquire))
                .collect()
        };
        let mut met = to_take(self);
        let last_turn = self
            .held
            .iter()
            .filter(|(_, held)| !held.is_created())
            .map(|(key, _)| *key)
            .next_back();
        if let (Some(first), Some(last)) = (met.first(), last_turn)
            && first.0 < last
        {
            self.give_back_all();
            met = to_take(self);
        }
        for (key, acquire) in met {
            match acquire(self.shared.clone(), key.1).await {
                Ok(held) => {
                    self.held.insert(key, held);
                }
                // Gone or failing now: the closure meets it again, and its error then.
                Err(_) => {
                    self.met.remove(&key);
                }
            }
        }
        Ok(())
    }
}

/// Takes the turn of entity `id` of type `E` from its worker, loading it if needed.
fn acquire<E: Entity, D: From<E::Error> + Send + 'static>(
    shared: Arc<Shared>,
    id: EntityId,
) -> BoxFuture<'static, Result<Box<dyn Held<D>>, Error<D>>> {
    Box::pin(async move {
        let (grant, granted) = oneshot::channel();
        if let Some(idle) = shared.registry.dispatch::<E>(id, Command::Hold(grant)) {
            worker::start(&shared, idle);
        }
        let turn = granted
            .await
            .unwrap_or_else(|_| {
                Err(Error::Panicked {
                    entity_type: E::TYPE,
                    id,
                    during: "entity worker",
                    message: "the entity's worker ended without lending its turn".to_owned(),
                })
            })
            .map_err(|error| error.map_rejection(D::from))?;
        Ok(Box::new(HeldEntity::lent(turn)) as Box<dyn Held<D>>)
    })
}

/// Ends a unit whose caller stopped waiting for it (its future dropped mid-run). The unit is
/// free then, unless a commit task holds it: that task ends it when it drops the unit.
struct EndOnDrop<D: Send + 'static>(Arc<Mutex<State<D>>>);

impl<D: Send + 'static> Drop for EndOnDrop<D> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.try_lock() {
            state.ended = true;
            state.give_back_all();
        }
    }
}

/// The most runs a transaction makes to take its entities in order (see the module's doc).
const MAX_REORDERS: u32 = 64;

/// How an attempt's commit went.
enum Committed<D> {
    Yes,
    /// Another writer moved an entity on: catch up and run again.
    Conflict,
    /// Another runtime committed the unit's idempotency key first.
    Duplicate,
    No(Error<D>),
}

impl Runtime {
    /// Runs `work` as one transaction over any entities: every action it sends through its
    /// [`Unit`] commits, with its events, version checks and projections, in ONE database
    /// transaction, or none does; memory changes only after the commit. Returns what `work`
    /// returned.
    ///
    /// `work` may run more than once: again after a version conflict (another runtime wrote
    /// one of its entities; up to `max_attempts`, then [`Error::Conflict`]), and again when it
    /// asks for an entity ordered before one it holds (a `Conflict` with 0 attempts, which
    /// `work` should pass on with `?`). So it should do nothing but decide: no side effects.
    ///
    /// ```
    /// # use entities_runtime::*;
    /// # #[entity(type = "account", actions(Deposit), events(Deposited), error = Rejected)]
    /// # #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
    /// # struct Account { id: EntityId, version: Version, balance: i64 }
    /// # #[derive(Debug, Clone, Action, serde::Serialize, serde::Deserialize)] struct Deposit { amount: i64 }
    /// # #[derive(Debug, Clone, Event, serde::Serialize, serde::Deserialize)] struct Deposited { amount: i64 }
    /// # impl Handle<Deposit> for Account {
    /// #     fn handle(&self, _: &Context, d: &Deposit) -> Events<Self> {
    /// #         if self.balance + d.amount < 0 { return Err(Rejected::new("insufficient funds")); }
    /// #         Ok(vec![Deposited { amount: d.amount }.into()])
    /// #     }
    /// # }
    /// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.balance += e.amount } }
    /// # async fn transfer(runtime: &Runtime, from: EntityId, to: EntityId) -> Result<(), Error<Rejected>> {
    /// let (from, to) = (runtime.entity::<Account>(from), runtime.entity::<Account>(to));
    /// let (from, to) = (&from, &to);
    /// let (after_from, after_to) = runtime
    ///     .transaction(&Context::new("teller"), |tx| async move {
    ///         let after_from = tx.send_action(from, Deposit { amount: -50 }).await?;
    ///         let after_to = tx.send_action(to, Deposit { amount: 50 }).await?;
    ///         Ok((after_from, after_to))
    ///     })
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn transaction<D, T, Work, Fut>(
        &self,
        ctx: &Context,
        mut work: Work,
    ) -> Result<T, Error<D>>
    where
        D: Send + 'static,
        T: Serialize + DeserializeOwned,
        Work: FnMut(Unit<D>) -> Fut,
        Fut: Future<Output = Result<T, Error<D>>>,
    {
        let shared = self.shared().clone();
        // Held for the whole call, taken before the check: `shutdown` waits for it.
        let _running = shared.tasks.token();
        self.open()?;
        let ctx = ctx.for_call();
        // The runtime knows the closure only by its type: the request's fingerprint, when the
        // caller gives one, tells two requests through the same code apart.
        let key = KeyedCall::of(
            &ctx,
            &[b"transaction", std::any::type_name::<Work>().as_bytes()],
        );
        let _key_lock = match &key {
            Some(key) => Some(shared.key_locks.lock(&key.user_id, &key.key).await),
            None => None,
        };
        if let Some(key) = &key
            && let Some(stored) = idempotency::stored(&shared, key).await?
        {
            return key.kept_value(stored);
        }
        let started = std::time::Instant::now();
        let span = tracing::info_span!(
            "transaction",
            entities = tracing::field::Empty,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let state = Arc::new(Mutex::new(State {
            shared: shared.clone(),
            ctx,
            key,
            attempt: 0,
            ended: false,
            held: BTreeMap::new(),
            met: BTreeMap::new(),
            projections: Vec::new(),
            out_of_order: false,
            panicked: None,
            reload: None,
            committing: false,
        }));
        // Should the caller stop waiting, the unit ends all the same: its turns go back, and a
        // `Unit` kept past it is refused.
        let _end = EndOnDrop(state.clone());
        let result = run(&shared, &state, &mut work)
            .instrument(span.clone())
            .await;
        let mut state = state.lock().await;
        span.record("entities", state.met.len());
        span.record("attempts", state.attempt + 1);
        let outcome = Error::outcome_of(&result);
        span.record("outcome", outcome);
        crate::telemetry::transaction_answered(outcome, started);
        state.ended = true;
        state.give_back_all();
        result
    }
}

async fn run<D, T, Work, Fut>(
    shared: &Arc<Shared>,
    unit: &Arc<Mutex<State<D>>>,
    work: &mut Work,
) -> Result<T, Error<D>>
where
    D: Send + 'static,
    T: Serialize + DeserializeOwned,
    Work: FnMut(Unit<D>) -> Fut,
    Fut: Future<Output = Result<T, Error<D>>>,
{
    let mut conflicts = 0;
    let mut reorders = 0;
    loop {
        let attempt = {
            let mut state = unit.lock().await;
            state.take_met().await?;
            state.attempt
        };
        let returned = work(Unit {
            state: unit.clone(),
            attempt,
        })
        .await;
        let mut state = unit.clone().lock_owned().await;
        if let Some(panicked) = state.panicked.take() {
            return Err(panicked);
        }
        if state.out_of_order {
            // Each such run meets one entity more, so a closure over a fixed set of entities
            // runs out of them; one that meets new ones every time is stopped.
            reorders += 1;
            if reorders > MAX_REORDERS {
                let (entity_type, id) = state
                    .held
                    .values()
                    .next()
                    .map_or(("transaction", 0), |held| held.entity());
                return Err(Error::Conflict {
                    entity_type,
                    id,
                    attempts: conflicts,
                });
            }
            // All given back, to be taken again in order.
            state.give_back_all();
            state.discard_attempt();
            state.attempt += 1;
            continue;
        }
        let value = returned?;
        let key_row = match &state.key {
            Some(key) => Some(key.row(&Kept::Value(serde_json::to_value(&value).map_err(
                |error| Error::Payload {
                    entity_type: "transaction",
                    id: 0,
                    type_tag: std::any::type_name::<T>(),
                    message: format!("its value, kept with its idempotency key: {error}"),
                },
            )?))),
            None => None,
        };
        // The commit runs in a task of its own, which holds the unit meanwhile: should the
        // caller stop waiting (its future dropped), the commit still ends, publishes what it
        // committed, and only then gives the turns back (when the unit drops). Cut short, it
        // would give them back with the outcome unknown, and the entities would decide their
        // next actions on a state the commit may be replacing.
        let (back, committed) = shared
            .tasks
            .spawn(async move {
                let committed = commit(&mut state, key_row).await;
                (state, committed)
            })
            .await
            .map_err(|join| Error::Panicked {
                entity_type: "transaction",
                id: 0,
                during: "commit",
                message: join.to_string(),
            })?;
        state = back;
        match committed {
            Committed::Yes => return Ok(value),
            Committed::Duplicate => {
                let key = state
                    .key
                    .as_ref()
                    .unwrap_or_else(|| unreachable!("only a keyed unit is a duplicate"));
                if let Some(stored) = idempotency::stored(shared, key).await? {
                    return key.kept_value(stored);
                }
                // Its key expired meanwhile: run again.
                state.discard_attempt();
                state.attempt += 1;
            }
            Committed::No(error) => return Err(error),
            Committed::Conflict => {
                // The newer version may be this very unit, committed by another runtime since
                // its key was looked up: then it is not run again.
                if let Some(key) = &state.key
                    && let Some(stored) = idempotency::stored(shared, key).await?
                {
                    return key.kept_value(stored);
                }
                conflicts += 1;
                let mut moved = None;
                for held in state.held.values_mut() {
                    if held.catch_up(&shared.store).await? && moved.is_none() {
                        moved = Some(held.entity());
                    }
                }
                shared.counters.catch_ups.incr();
                if conflicts >= shared.config.max_attempts {
                    let (entity_type, id) = moved
                        .or_else(|| state.held.values().next().map(|held| held.entity()))
                        .unwrap_or(("transaction", 0));
                    return Err(Error::Conflict {
                        entity_type,
                        id,
                        attempts: conflicts,
                    });
                }
                state.discard_attempt();
                state.attempt += 1;
            }
        }
    }
}

/// Commits what the attempt decided, as one unit; publishes it if it committed.
async fn commit<D: Send + 'static>(state: &mut State<D>, key: Option<KeyRow>) -> Committed<D> {
    let writes: Vec<_> = state
        .held
        .values_mut()
        .filter_map(|held| held.write())
        .collect();
    // A keyed unit that decided nothing still stores its key and value.
    if writes.is_empty() && key.is_none() {
        return Committed::Yes;
    }
    let projections = std::mem::take(&mut state.projections);
    state.committing = true;
    let outcome = state
        .shared
        .committer
        .commit_unit(writes, projections, key)
        .instrument(tracing::debug_span!("commit"))
        .await;
    state.committing = false;
    match outcome {
        Outcome::Committed => {
            for held in state.held.values_mut() {
                held.publish();
            }
            Committed::Yes
        }
        Outcome::Conflict | Outcome::Taken | Outcome::Retry => Committed::Conflict,
        Outcome::Duplicate => Committed::Duplicate,
        Outcome::Refused => Committed::No(
            state
                .held
                .values()
                .find_map(|held| held.refusal())
                .unwrap_or_else(|| unreachable!("a refused unit keeps why it was refused")),
        ),
        Outcome::Storage {
            error,
            maybe_committed,
        } => {
            if maybe_committed {
                for held in state.held.values() {
                    held.mark_stale();
                }
            }
            Committed::No(failed_commit(error, maybe_committed))
        }
        Outcome::Unanswered => {
            for held in state.held.values() {
                held.mark_stale();
            }
            let (entity_type, id) = state
                .held
                .values()
                .next()
                .map_or(("transaction", 0), |held| held.entity());
            Committed::No(Error::Unanswered { entity_type, id })
        }
    }
}
