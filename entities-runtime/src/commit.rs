//! Group commit: what entity workers decided at the same moment is written in one
//! transaction, with multi-row statements, and each unit of work stays isolated.
//!
//! Entity workers hand their decided actions to the committers: a chain per entity (each action
//! a unit of its own), or a unit that is all or nothing (a batch on one entity, a transaction
//! over several). A committer takes everything waiting, up to a batch's size, and in one
//! transaction appends every write with one statement (per-entity version checks included), runs
//! the actions' projections, and commits once. A chain whose version check fails is written not
//! at all and decided again by its worker; a unit with one such entity has the rows of its other
//! entities taken back. Every caller is answered only after the commit that holds its action.
//!
//! Projections run optimistically: the projections of every unit at once, each run of
//! neighbouring events of one type in one `Project::project_all` call (one multi-row statement,
//! where the projection writes it so), with no savepoint before them on Postgres. Should that
//! fail, the transaction is rolled back and begun again (one round trip), the batch appended
//! again, and its units run one at a time, each in a savepoint of its own, until the failing
//! one is found: it is rolled back and its rows taken back, its neighbours commit in the same
//! transaction all the same, and the units after it run together again (after one savepoint).
//! A savepoint per unit would cost a round trip per unit every time, and one per batch a round
//! trip per batch; this costs nothing until a projection fails. (On SQLite, where a savepoint
//! costs no round trip and a rollback would give up the write lock, a batch takes one before
//! its projections and goes back to it.)
//!
//! A committer keeps its connection between batches while they keep coming (see
//! [`Held`]): never while another caller would wait for it, and never past a batch that did
//! not commit (sqlx sends the `ROLLBACK` it owes only with its next statement). On Postgres it
//! keeps it inside the next transaction, begun with the last one's `COMMIT` in one round trip
//! (see [`Settings::begin_ahead`]).

use std::any::{Any, TypeId};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::announce::Announcer;
use crate::entity::Version;
use crate::metrics::Counters;
use crate::projection::Tx;
use crate::store::{EntityWrite, Held, KeyRow, Store, StoreTx};

/// An action's projections, as a committer runs them in its batch's transaction: more than
/// once when a neighbour's failure rolls them back. One batch holds entities of every type, so
/// a refusal stays with the action, in its entity's own error type; the committer only learns
/// that it refused.
pub(crate) trait ActionProjections: Send + Sync {
    /// Runs this action's projections alone; a refusal is kept with the action.
    fn project<'a, 'c>(&'a self, tx: &'a mut Tx<'c>) -> BoxFuture<'a, Result<(), Refused>>;
    /// The entity's type: neighbouring actions of one type are projected together.
    fn entity_type(&self) -> TypeId;
    fn as_any(&self) -> &dyn Any;
    /// Runs the projections of `run` (actions of this one's entity type, this one among them)
    /// together, each run of one event type in one `Project::project_all`. A refusal is not
    /// kept: which action refused is learnt by running each alone.
    fn project_together<'a, 'c>(
        &'a self,
        run: &'a [&'a Projections],
        tx: &'a mut Tx<'c>,
    ) -> BoxFuture<'a, Result<(), Refused>>;
}

/// A refusal by an action's projections; the refusal itself is kept by the action.
#[derive(Debug)]
pub(crate) struct Refused;

pub(crate) type Projections = Arc<dyn ActionProjections>;

/// What workers hand the committers: decided actions waiting for a commit.
pub(crate) enum Pending {
    /// One entity's chain: each action commits or fails on its own, and an action that fails
    /// takes the ones decided after it with it.
    Chain {
        write: EntityWrite,
        /// Per outcome of the write (see [`EntityWrite::outcomes`]), its action's projections;
        /// `None` when none of its events is projected.
        projections: Vec<Option<Projections>>,
        reply: oneshot::Sender<Vec<Outcome>>,
    },
    /// All or nothing: every action of every write commits, or none does (a batch on one
    /// entity, a transaction over several).
    Unit {
        writes: Vec<EntityWrite>,
        /// The projections of its actions, in the order they were decided.
        projections: Vec<Projections>,
        /// Its idempotency key, stored with it.
        key: Option<KeyRow>,
        reply: oneshot::Sender<Outcome>,
    },
}

impl Pending {
    fn writes(&self) -> &[EntityWrite] {
        match self {
            Pending::Chain { write, .. } => std::slice::from_ref(write),
            Pending::Unit { writes, .. } => writes,
        }
    }

    /// How many actions it holds, as a batch's size counts them.
    fn actions(&self) -> usize {
        self.writes().iter().map(EntityWrite::outcomes).sum()
    }
}

/// What became of one action of a chain.
#[derive(Debug)]
pub(crate) enum Outcome {
    Committed,
    /// The stored version had moved on: nothing of the chain was written. Catch up, decide again.
    Conflict,
    /// A create whose id another row holds already (only rows inserted by hand can take a
    /// reserved id): nothing was written, and deciding again cannot help.
    Taken,
    /// An earlier action of the chain failed, so this one, decided after it, was not written.
    Retry,
    /// Its projections refused it (the action holds why); it was rolled back.
    Refused,
    /// A unit whose idempotency key another call stored first (in another runtime): nothing
    /// was written; that call's outcome is the answer.
    Duplicate,
    /// The database failed. When it failed at the commit, the action may have been committed.
    Storage {
        error: Arc<sqlx::Error>,
        maybe_committed: bool,
    },
    /// The committer ended (it panicked, or the runtime was dropped) before it answered: the
    /// action may have been committed.
    Unanswered,
}

/// Where workers send their chains. Cloned into the runtime; the committer tasks end on `stop`.
pub(crate) struct Committer {
    sender: mpsc::UnboundedSender<Pending>,
    counters: Arc<Counters>,
}

/// How the committers write (set through [`RuntimeBuilder`](crate::RuntimeBuilder)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// How many committer tasks run.
    pub tasks: usize,
    /// The most actions one batch holds.
    pub max_batch: usize,
    /// How long a committer keeps its connection while no batch waits.
    pub linger: Duration,
    /// Postgres: whether a committer that keeps its connection begins the next transaction with
    /// the last one's `COMMIT`, saving each batch the round trip of its `BEGIN`. (On SQLite a
    /// transaction takes the write lock as it begins: one begun ahead would hold it while it
    /// waits, so a connection kept there holds no transaction.)
    pub begin_ahead: bool,
}

impl Committer {
    /// Starts the committers over `store`.
    pub fn start(
        store: Store,
        settings: Settings,
        counters: Arc<Counters>,
        announcer: Arc<Announcer>,
        stop: CancellationToken,
    ) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..settings.tasks.max(1) {
            tokio::spawn(run(
                Batcher {
                    store: store.clone(),
                    counters: counters.clone(),
                    announcer: announcer.clone(),
                    linger: settings.linger,
                    begin_ahead: settings.begin_ahead,
                },
                receiver.clone(),
                settings.max_batch.max(1),
                stop.clone(),
            ));
        }
        Self { sender, counters }
    }

    /// Hands a chain to the committers and waits for its outcomes (see [`EntityWrite::outcomes`]).
    pub async fn commit(
        &self,
        write: EntityWrite,
        projections: Vec<Option<Projections>>,
    ) -> Vec<Outcome> {
        let actions = write.outcomes();
        let (reply, outcome) = oneshot::channel();
        // Whether the batch committed is unknown, so the worker catches up before its next action.
        let lost = || (0..actions).map(|_| Outcome::Unanswered).collect();
        if !self.send(Pending::Chain {
            write,
            projections,
            reply,
        }) {
            return lost();
        }
        outcome.await.unwrap_or_else(|_| lost())
    }

    /// Hands a unit to the committers and waits for its one outcome: every write of it
    /// committed, or none.
    pub async fn commit_unit(
        &self,
        writes: Vec<EntityWrite>,
        projections: Vec<Projections>,
        key: Option<KeyRow>,
    ) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        if !self.send(Pending::Unit {
            writes,
            projections,
            key,
            reply,
        }) {
            return Outcome::Unanswered;
        }
        outcome.await.unwrap_or(Outcome::Unanswered)
    }

    /// `false` when the committers have ended.
    fn send(&self, pending: Pending) -> bool {
        self.counters.chains_waiting.incr();
        let sent = self.sender.send(pending).is_ok();
        if !sent {
            self.counters.chains_waiting.decr();
        }
        sent
    }
}

/// What one committer task writes with.
struct Batcher {
    store: Store,
    counters: Arc<Counters>,
    announcer: Arc<Announcer>,
    /// How long it keeps its connection while no batch waits.
    linger: Duration,
    /// See [`Settings::begin_ahead`].
    begin_ahead: bool,
}

async fn run(
    batcher: Batcher,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>,
    max_batch: usize,
    stop: CancellationToken,
) {
    // The connection of the last batch, kept for the next while batches keep coming.
    let mut held: Option<Held> = None;
    loop {
        // The linger runs while this committer waits for its turn at the queue too (another
        // committer may wait there for as long as nothing comes).
        let give_back_at = tokio::time::Instant::now() + batcher.linger;
        let batch = {
            let mut receiver = tokio::select! {
                receiver = receiver.lock() => receiver,
                () = until_given_back(held.is_some(), give_back_at) => {
                    held = None;
                    continue;
                }
            };
            let mut batch = Vec::new();
            tokio::select! {
                pending = receiver.recv() => match pending {
                    Some(pending) => batch.push(pending),
                    None => return,
                },
                () = stop.cancelled() => return,
                () = until_given_back(held.is_some(), give_back_at) => {
                    held = None;
                    continue;
                }
            }
            // Whatever else is ready now joins this batch, up to `max_batch` actions (each may
            // hold a savepoint: Postgres slows every session's snapshots past 64 of them in one
            // transaction); nothing waits for more to come.
            let mut actions = batch[0].actions();
            while actions < max_batch {
                match receiver.try_recv() {
                    Ok(pending) => {
                        actions += pending.actions();
                        batch.push(pending);
                    }
                    Err(_) => break,
                }
            }
            batcher.counters.chains_waiting.sub(batch.len() as u64);
            batch
        };
        let Batch {
            writes,
            groups,
            steps,
            keys,
            replies,
        } = Batch::of(batch);
        // Projections catch their own panics; one here is a runtime bug. The replies are kept
        // out of the unwinding future, so their workers are told rather than left waiting.
        let started = std::time::Instant::now();
        let batch = BatchRef {
            writes: &writes,
            groups: &groups,
            keys: &keys,
            steps: &steps,
        };
        let write = batcher.write(&mut held, &batch);
        match std::panic::AssertUnwindSafe(write).catch_unwind().await {
            Ok(outcomes) => {
                crate::telemetry::batch_written(outcomes.len(), started);
                answer(replies, &groups, outcomes)
            }
            Err(panic) => {
                tracing::error!(
                    message = crate::error::panic_message(panic.as_ref()),
                    "committer panicked"
                );
                drop(replies);
            }
        }
    }
}

/// Ends at `deadline` when `holding`; never otherwise.
async fn until_given_back(holding: bool, deadline: tokio::time::Instant) {
    if holding {
        tokio::time::sleep_until(deadline).await;
    } else {
        std::future::pending().await
    }
}

/// How a batch's transaction ended: each step's outcome, and whether it committed.
struct Ended {
    outcomes: Vec<Outcome>,
    committed: bool,
}

impl Ended {
    /// Not committed: rolled back, or left for sqlx to roll back.
    fn rolled_back(outcomes: Vec<Outcome>) -> Self {
        Self {
            outcomes,
            committed: false,
        }
    }
}

/// Where the outcomes of one pending go.
enum Reply {
    Chain(oneshot::Sender<Vec<Outcome>>),
    Unit(oneshot::Sender<Outcome>),
}

/// One pending of a batch: its writes (a range of the batch's) and its steps (a range of the
/// batch's).
struct Group {
    writes: Range<usize>,
    steps: Range<usize>,
    /// All or nothing: one step over all its writes.
    unit: bool,
    /// Its idempotency key's index in the batch's keys.
    key: Option<usize>,
}

/// One unit of a batch, in the batch's order: an action of a chain, or a whole unit.
struct Step {
    /// Its pending's index in the batch.
    group: usize,
    /// What taking it back removes: per write it touches, the version to return to and
    /// whether that undoes the write's create.
    targets: Vec<Target>,
    /// The projections of its actions, in order.
    projects: Vec<Projections>,
    /// How many actions it commits.
    actions: usize,
}

struct Target {
    write: usize,
    version_before: Version,
    uncreate: bool,
}

/// A batch taken apart: the writes to append, and what each pending is made of.
struct Batch {
    writes: Vec<EntityWrite>,
    groups: Vec<Group>,
    steps: Vec<Step>,
    keys: Vec<KeyRow>,
    replies: Vec<Reply>,
}

impl Batch {
    fn of(pendings: Vec<Pending>) -> Self {
        let mut batch = Batch {
            writes: Vec::new(),
            groups: Vec::with_capacity(pendings.len()),
            steps: Vec::new(),
            keys: Vec::new(),
            replies: Vec::with_capacity(pendings.len()),
        };
        for (group, pending) in pendings.into_iter().enumerate() {
            let first_write = batch.writes.len();
            let first_step = batch.steps.len();
            let unit = matches!(pending, Pending::Unit { .. });
            let mut key_index = None;
            match pending {
                Pending::Chain {
                    write,
                    projections,
                    reply,
                } => {
                    let versions_before = std::iter::once(write.expected_version)
                        .chain(write.versions_after())
                        .collect::<Vec<_>>();
                    for (project, version_before) in projections.into_iter().zip(versions_before) {
                        batch.steps.push(Step {
                            group,
                            targets: vec![Target {
                                write: first_write,
                                version_before,
                                uncreate: write.creates && version_before == 0,
                            }],
                            projects: project.into_iter().collect(),
                            actions: 1,
                        });
                    }
                    batch.writes.push(write);
                    batch.replies.push(Reply::Chain(reply));
                }
                Pending::Unit {
                    writes,
                    projections,
                    key,
                    reply,
                } => {
                    if let Some(key) = key {
                        key_index = Some(batch.keys.len());
                        batch.keys.push(key);
                    }
                    let targets = writes
                        .iter()
                        .enumerate()
                        .map(|(n, write)| Target {
                            write: first_write + n,
                            version_before: write.expected_version,
                            uncreate: write.creates,
                        })
                        .collect();
                    batch.steps.push(Step {
                        group,
                        targets,
                        projects: projections,
                        actions: writes.iter().map(EntityWrite::outcomes).sum(),
                    });
                    batch.writes.extend(writes);
                    batch.replies.push(Reply::Unit(reply));
                }
            }
            batch.groups.push(Group {
                writes: first_write..batch.writes.len(),
                steps: first_step..batch.steps.len(),
                unit,
                key: key_index,
            });
        }
        batch
    }
}

/// Sends each pending the outcomes of its steps.
fn answer(replies: Vec<Reply>, groups: &[Group], outcomes: Vec<Outcome>) {
    let mut outcomes = outcomes.into_iter();
    for (reply, group) in replies.into_iter().zip(groups) {
        let mine = outcomes.by_ref().take(group.steps.len());
        match reply {
            Reply::Chain(reply) => {
                let _ = reply.send(mine.collect());
            }
            Reply::Unit(reply) => {
                if let Some(outcome) = mine.into_iter().next() {
                    let _ = reply.send(outcome);
                }
            }
        }
    }
}

/// Every step failed with the same database error.
fn all_failed(steps: &[Step], error: sqlx::Error, maybe_committed: bool) -> Vec<Outcome> {
    let error = Arc::new(error);
    steps
        .iter()
        .map(|_| Outcome::Storage {
            error: error.clone(),
            maybe_committed,
        })
        .collect()
}

impl Batcher {
    /// Writes a batch in one transaction on the `held` connection or transaction, or on one from
    /// the pool; keeps it in `held` when the batch committed and the pool has room beside it (so
    /// that no other caller waits for it). Returns each step's outcome.
    async fn write(&self, held: &mut Option<Held>, batch: &BatchRef<'_>) -> Vec<Outcome> {
        let steps = batch.steps;
        let reused = held.is_some();
        let conn = match held.take() {
            Some(conn) => conn,
            None => match self.store.hold(self.begin_ahead).await {
                Ok(conn) => conn,
                Err(error) => return all_failed(steps, error, false),
            },
        };
        let (ended, kept) = match self.write_on(conn, batch).await {
            Ok(written) => written,
            // The server may have closed a kept connection (sqlx checks only those it hands
            // out): its first statement (`BEGIN`, or the append in a transaction begun ahead)
            // finds it so. Nothing was written: the pool's next one takes the batch.
            Err(error) if reused && session_lost(&error) => {
                tracing::debug!(%error, "a kept connection failed; taking another");
                let conn = match self.store.hold(self.begin_ahead).await {
                    Ok(conn) => conn,
                    Err(error) => return all_failed(steps, error, false),
                };
                match self.write_on(conn, batch).await {
                    Ok(written) => written,
                    Err(error) => return self.failed(steps, error),
                }
            }
            Err(error) => return self.failed(steps, error),
        };
        *held = kept;
        ended.outcomes
    }

    /// Writes `batch` on `conn`; returns how it ended and what to keep for the next batch. Fails
    /// only when the first statement does, before anything was written; `conn` is given back
    /// then (in a full pool, the next one would wait for it).
    async fn write_on(
        &self,
        conn: Held,
        batch: &BatchRef<'_>,
    ) -> Result<(Ended, Option<Held>), sqlx::Error> {
        match conn {
            Held::Begun(mut tx) => {
                let outcomes = match self.write_batch(&mut tx, batch).await? {
                    Prepared::RolledBack(outcomes) => {
                        return Ok((Ended::rolled_back(outcomes), None));
                    }
                    Prepared::ToCommit(outcomes) => outcomes,
                };
                if self.keeps() {
                    match tx.commit_and_begin().await {
                        Ok(Ok(())) => {
                            let ended = self.settle(Ok(()), batch, outcomes);
                            Ok((ended, Some(Held::Begun(tx))))
                        }
                        // Committed all the same: its callers hear so. Nothing is open to keep.
                        Ok(Err(error)) => {
                            tracing::warn!(%error, "committed, but the next transaction did not begin");
                            Ok((self.settle(Ok(()), batch, outcomes), None))
                        }
                        Err(error) => Ok((self.settle(Err(error), batch, outcomes), None)),
                    }
                } else {
                    Ok((self.settle(tx.commit().await, batch, outcomes), None))
                }
            }
            Held::Connection(mut conn) => {
                let ended = {
                    let mut tx = conn.begin().await?;
                    match self.write_batch(&mut tx, batch).await? {
                        Prepared::RolledBack(outcomes) => Ended::rolled_back(outcomes),
                        Prepared::ToCommit(outcomes) => {
                            self.settle(tx.commit().await, batch, outcomes)
                        }
                    }
                };
                let kept = (ended.committed && self.keeps()).then_some(Held::Connection(conn));
                Ok((ended, kept))
            }
        }
    }

    /// Whether to keep the connection past this batch: lingering, and the pool has room beside
    /// it. After any end but a commit the connection still owes the server its `ROLLBACK`
    /// (sqlx sends it with the connection's next statement, or when the pool takes it back):
    /// kept, it would sit in the transaction, holding its locks; so only a commit keeps it.
    fn keeps(&self) -> bool {
        !self.linger.is_zero() && self.store.has_room()
    }

    /// Writes a batch in transaction `tx`, up to its commit. Fails only when the append, its
    /// first statement, does: nothing was written.
    ///
    /// On Postgres its projections run together first, with no savepoint (a round trip) before
    /// them. Should that fail, there is none to go back to: the transaction is rolled back and
    /// begun again in one round trip, and the batch written anew with each step isolated (see
    /// [`project_batch`]). A refusal costs its batch the append again; every other batch saves
    /// the savepoint. On SQLite a savepoint costs no round trip, and a rollback would give up the
    /// write lock amid the batch: it goes back to one.
    async fn write_batch(
        &self,
        tx: &mut StoreTx<'_>,
        batch: &BatchRef<'_>,
    ) -> Result<Prepared, sqlx::Error> {
        let first = if tx.is_postgres() {
            Attempt::Together
        } else {
            Attempt::TogetherAfterSavepoint
        };
        if let Some(prepared) = self.attempt(tx, batch, first).await? {
            return Ok(prepared);
        }
        if let Err(error) = tx.rollback_and_begin().await {
            return Ok(Prepared::RolledBack(all_failed(batch.steps, error, false)));
        }
        Ok(match self.attempt(tx, batch, Attempt::Isolating).await {
            Ok(Some(prepared)) => prepared,
            Ok(None) => unreachable!("an isolating attempt decides every step"),
            Err(error) => Prepared::RolledBack(self.failed(batch.steps, error)),
        })
    }

    /// One attempt at writing a batch in `tx`; `None` when its projections run together failed
    /// in [`Attempt::Together`]: the transaction holds that failure, to be rolled back.
    async fn attempt(
        &self,
        tx: &mut StoreTx<'_>,
        batch: &BatchRef<'_>,
        attempt: Attempt,
    ) -> Result<Option<Prepared>, sqlx::Error> {
        let BatchRef {
            writes,
            groups,
            keys,
            steps,
        } = *batch;
        let refs: Vec<&EntityWrite> = writes.iter().collect();
        let appended = tx.append(&refs).await?;
        let mut written = match take_back_partial_units(tx, writes, groups, &appended).await {
            Ok(written) => written,
            Err(error) => return Ok(Some(Prepared::RolledBack(self.failed(steps, error)))),
        };
        // Counted by the attempt that decides the batch, so a batch written again counts once.
        let conflicts = written.iter().filter(|&&written| !written).count() as u64;
        let duplicates = match store_keys(tx, writes, groups, keys, &mut written).await {
            Ok(duplicates) => duplicates,
            Err(error) => {
                self.counters.conflicts.add(conflicts);
                return Ok(Some(Prepared::RolledBack(self.failed(steps, error))));
            }
        };
        let not_written = |group: &Group| {
            if group.key.is_some_and(|key| duplicates[key]) {
                Outcome::Duplicate
            } else {
                not_written(
                    &writes[group.writes.clone()],
                    &appended[group.writes.clone()],
                )
            }
        };
        // Alone in its transaction, a step needs no savepoint: its failure rolls back the whole
        // transaction, which holds nothing else. (A unit of several actions goes the batch's
        // way, so that its actions' projections run together.)
        if let [step] = steps
            && step.projects.len() <= 1
        {
            self.counters.conflicts.add(conflicts);
            let outcome = if !written[step.group] {
                not_written(&groups[step.group])
            } else {
                match project_all(tx, &step.projects).await {
                    Ok(()) => Outcome::Committed,
                    Err(Refused) => return Ok(Some(Prepared::RolledBack(vec![Outcome::Refused]))),
                }
            };
            return Ok(Some(Prepared::ToCommit(vec![outcome])));
        }
        let written = Written {
            writes,
            groups,
            keys,
            written: &written,
            not_written: &not_written,
        };
        let prepared = match project_batch(tx, &written, steps, attempt, &self.counters).await {
            Ok(Some(outcomes)) => Prepared::ToCommit(outcomes),
            Ok(None) => return Ok(None),
            Err(error) => Prepared::RolledBack(self.failed(steps, error)),
        };
        self.counters.conflicts.add(conflicts);
        Ok(Some(prepared))
    }

    /// Every step's outcome when a statement before the commit failed: nothing was written.
    /// Two runtimes' batches can lock the same rows in different orders (entities, keys): the
    /// database breaks the deadlock by failing one, which is a conflict like any other, retried.
    fn failed(&self, steps: &[Step], error: sqlx::Error) -> Vec<Outcome> {
        if is_deadlock(&error) {
            self.counters.deadlocks.incr();
            // One conflict per pending write, as a failed version check counts; steps come in
            // their pendings' order.
            let pendings = steps.last().map_or(0, |step| step.group + 1);
            self.counters.conflicts.add(pendings as u64);
            return steps.iter().map(|_| Outcome::Conflict).collect();
        }
        all_failed(steps, error, false)
    }

    /// Counts and announces what `committed` (the commit's result) wrote; should the commit
    /// have failed, the actions it held may or may not have been committed.
    fn settle(
        &self,
        committed: Result<(), sqlx::Error>,
        batch: &BatchRef<'_>,
        mut outcomes: Vec<Outcome>,
    ) -> Ended {
        let committed_actions: Vec<usize> = batch
            .steps
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, Outcome::Committed))
            .map(|(step, _)| step.actions)
            .collect();
        let committed = match committed {
            Ok(()) => {
                if !committed_actions.is_empty() {
                    self.counters.transactions.incr();
                    let actions: usize = committed_actions.iter().sum();
                    self.counters.actions_committed.add(actions as u64);
                    // Every write of the batch is named: one that did not commit costs a reader
                    // a look, never a missed change.
                    self.announcer
                        .committed(|| batch.writes.iter().map(|write| write.entity_id).collect());
                }
                true
            }
            Err(error) => {
                self.counters.commits_failed.incr();
                let error = Arc::new(error);
                for outcome in &mut outcomes {
                    if matches!(outcome, Outcome::Committed) {
                        *outcome = Outcome::Storage {
                            error: error.clone(),
                            maybe_committed: true,
                        };
                    }
                }
                false
            }
        };
        Ended {
            outcomes,
            committed,
        }
    }
}

/// A batch as a committer writes it: the writes to append, what each pending is made of, and
/// the keys to store.
#[derive(Clone, Copy)]
struct BatchRef<'a> {
    writes: &'a [EntityWrite],
    groups: &'a [Group],
    keys: &'a [KeyRow],
    steps: &'a [Step],
}

/// How a batch's projections start (see [`Batcher::write_batch`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// All together, with no savepoint before them (Postgres).
    Together,
    /// All together after a savepoint; should that fail, back to it and on as
    /// [`Isolating`](Attempt::Isolating) (SQLite).
    TogetherAfterSavepoint,
    /// After `Together` failed: one step at a time, each in a savepoint, until the failing one is
    /// found; the rest together again after a savepoint.
    Isolating,
}

/// A batch whose statements ran: to commit, or rolled back (left for sqlx to roll back).
enum Prepared {
    ToCommit(Vec<Outcome>),
    RolledBack(Vec<Outcome>),
}

/// Whether `error` ended the session, rather than failing a statement in it: the connection is
/// gone (or the server ended it: a FATAL error, as for an idle timeout or a terminated backend).
fn session_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(error) => error
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|error| {
                matches!(
                    error.severity(),
                    sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                )
            }),
        _ => false,
    }
}

/// Whether each pending was written whole. A unit of which some writes passed their version
/// check and some did not is not: the rows of those that passed are taken back.
async fn take_back_partial_units(
    tx: &mut StoreTx<'_>,
    writes: &[EntityWrite],
    groups: &[Group],
    appended: &[bool],
) -> Result<Vec<bool>, sqlx::Error> {
    let mut written = Vec::with_capacity(groups.len());
    for group in groups {
        let appended = &appended[group.writes.clone()];
        let whole = appended.iter().all(|&appended| appended);
        if group.unit && !whole {
            for (write, _) in writes[group.writes.clone()]
                .iter()
                .zip(appended)
                .filter(|&(_, &appended)| appended)
            {
                tx.truncate(write.entity_id, write.expected_version, write.creates)
                    .await?;
            }
        }
        written.push(whole);
    }
    Ok(written)
}

/// Inserts the keys of the keyed units written whole. A unit whose key another call stored is
/// not written after all: its rows are taken back. Returns, per key, whether it was such a
/// duplicate.
async fn store_keys(
    tx: &mut StoreTx<'_>,
    writes: &[EntityWrite],
    groups: &[Group],
    keys: &[KeyRow],
    written: &mut [bool],
) -> Result<Vec<bool>, sqlx::Error> {
    let mut duplicates = vec![false; keys.len()];
    // Two units of one batch may carry one key (a caller that gave up waiting, and its retry):
    // the first inserts it, the later ones are duplicates of it. The database cannot tell them
    // apart, as one multi-row insert returns the key once.
    let mut seen = std::collections::HashSet::new();
    let mut keyed = Vec::new();
    for (index, group) in groups.iter().enumerate() {
        let Some(key) = group.key else { continue };
        if !written[index] {
            continue;
        }
        if seen.insert((&keys[key].user_id, &keys[key].key)) {
            keyed.push((index, key, true));
        } else {
            keyed.push((index, key, false));
        }
    }
    let first: Vec<&KeyRow> = keyed
        .iter()
        .filter(|&&(_, _, first)| first)
        .map(|&(_, key, _)| &keys[key])
        .collect();
    let mut inserted = tx.insert_keys(&first).await?.into_iter();
    for (index, key, first) in keyed {
        let stored = first && inserted.next().unwrap_or(false);
        if !stored {
            duplicates[key] = true;
            written[index] = false;
            for write in &writes[groups[index].writes.clone()] {
                tx.truncate(write.entity_id, write.expected_version, write.creates)
                    .await?;
            }
        }
    }
    Ok(duplicates)
}

/// A batch after its append: what was written, and the outcome of what was not.
struct Written<'a> {
    writes: &'a [EntityWrite],
    groups: &'a [Group],
    keys: &'a [KeyRow],
    written: &'a [bool],
    not_written: &'a (dyn Fn(&Group) -> Outcome + Sync),
}

/// Runs the projections of neighbouring actions of one entity type together (see
/// [`ActionProjections::project_together`]); the first refusal stops them.
async fn project_together(tx: &mut StoreTx<'_>, projects: &[&Projections]) -> Result<(), Refused> {
    let mut tx = tx.projection();
    for run in projects.chunk_by(|a, b| a.entity_type() == b.entity_type()) {
        run[0].project_together(run, &mut tx).await?;
    }
    Ok(())
}

/// Runs projections one after the other; the first refusal stops them.
async fn project_all(tx: &mut StoreTx<'_>, projects: &[Projections]) -> Result<(), Refused> {
    for project in projects {
        project.project(&mut tx.projection()).await?;
    }
    Ok(())
}

/// Runs the projections of every step (see the module's doc) and takes back the rows of the
/// refused ones; returns each step's outcome, or `None` when `attempt` is
/// [`Attempt::Together`] and the projections together failed (the transaction must be rolled
/// back: no savepoint was taken before them).
async fn project_batch(
    tx: &mut StoreTx<'_>,
    batch: &Written<'_>,
    steps: &[Step],
    attempt: Attempt,
    counters: &Counters,
) -> Result<Option<Vec<Outcome>>, sqlx::Error> {
    let Written {
        writes,
        groups,
        keys,
        written,
        not_written,
    } = batch;
    let mut outcomes: Vec<Option<Outcome>> = steps.iter().map(|_| None).collect();
    // A chain with a refused action: the actions after it were decided on its state.
    let mut broken = vec![false; groups.len()];
    // The first step since the optimistic savepoint, while one is open.
    let mut optimistic_from: Option<usize> = None;
    // After projections run together failed: each step runs in a savepoint of its own, until
    // the one that fails is found.
    let mut isolating = attempt == Attempt::Isolating;
    let mut at = 0;
    while at < steps.len() {
        let step = &steps[at];
        if outcomes[at].is_some() {
            // Projected together with an earlier step, and committed.
            at += 1;
            continue;
        }
        if !written[step.group] {
            outcomes[at] = Some(not_written(&groups[step.group]));
            at += 1;
            continue;
        }
        if broken[step.group] {
            outcomes[at] = Some(Outcome::Retry);
            at += 1;
            continue;
        }
        if step.projects.is_empty() {
            outcomes[at] = Some(Outcome::Committed);
            at += 1;
            continue;
        }
        if isolating {
            // In a savepoint of its own: when it fails, what it wrote is rolled back and the
            // rest of the transaction stands.
            tx.savepoint().await?;
            match project_all(tx, &step.projects).await {
                Ok(()) => outcomes[at] = Some(Outcome::Committed),
                Err(Refused) => {
                    tx.rollback_to_savepoint().await?;
                    // The rows appended for it (and for the rest of its chain) go too, and its key.
                    for target in &step.targets {
                        tx.truncate(
                            writes[target.write].entity_id,
                            target.version_before,
                            target.uncreate,
                        )
                        .await?;
                    }
                    if let Some(key) = groups[step.group].key {
                        tx.delete_key(&keys[key]).await?;
                    }
                    broken[step.group] = true;
                    outcomes[at] = Some(Outcome::Refused);
                    isolating = false;
                }
            }
            at += 1;
            continue;
        }
        let from = match optimistic_from {
            Some(from) => from,
            None => {
                if attempt != Attempt::Together {
                    tx.savepoint().await?;
                }
                *optimistic_from.insert(at)
            }
        };
        // Every step from here on that has projections to run, together.
        let run: Vec<usize> = (at..steps.len())
            .filter(|&n| {
                let step = &steps[n];
                written[step.group] && !broken[step.group] && !step.projects.is_empty()
            })
            .collect();
        let projections: Vec<&Projections> = run.iter().flat_map(|&n| &steps[n].projects).collect();
        match project_together(tx, &projections).await {
            Ok(()) => {
                for &n in &run {
                    outcomes[n] = Some(Outcome::Committed);
                }
                at += 1;
            }
            Err(Refused) => {
                counters.projection_redos.incr();
                if attempt == Attempt::Together {
                    return Ok(None);
                }
                // Undo every projection since the savepoint and run those steps again, one at
                // a time: the failing one is found again and refused alone.
                tx.rollback_to_savepoint().await?;
                optimistic_from = None;
                isolating = true;
                at = from;
            }
        }
    }
    Ok(Some(
        outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(|| unreachable!("every step is decided")))
            .collect(),
    ))
}

/// The outcome of a pending not written whole: a create whose insert wrote nothing is
/// [`Outcome::Taken`], any other failed version check a conflict.
fn not_written(writes: &[EntityWrite], appended: &[bool]) -> Outcome {
    let taken = writes
        .iter()
        .zip(appended)
        .any(|(write, &appended)| write.creates && !appended);
    if taken {
        Outcome::Taken
    } else {
        Outcome::Conflict
    }
}

/// A deadlock or serialization failure (SQLSTATE 40P01, 40001).
fn is_deadlock(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| matches!(&*code, "40P01" | "40001"))
}
