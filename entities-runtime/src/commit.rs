//! Group commit: what entity workers decided at the same moment is written in one
//! transaction, with multi-row statements, and each action stays isolated.
//!
//! Entity workers hand their decided actions (a chain per entity) to the committers. A committer
//! takes everything waiting, up to a batch's size, and in one transaction appends every chain
//! with one statement (per-entity version checks included), runs the actions' projections, and
//! commits once. A chain whose version check fails is written not at all and decided again by
//! its worker. Every caller is answered only after the commit that holds its action.
//!
//! Projections run optimistically: one savepoint, then every action's projections one after the
//! other. Should one fail, the transaction rolls back to that savepoint and the actions since it
//! run again one at a time, each in a savepoint of its own: the failing one is rolled back and
//! its rows taken back, its neighbours commit in the same transaction all the same. A savepoint
//! per action would cost a round trip per action every time; this costs one per batch, and the
//! redo only when a projection fails.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::metrics::Counters;
use crate::projection::Tx;
use crate::store::{EntityWrite, Store, StoreTx};

/// An action's projections, as a committer runs them in its batch's transaction: more than
/// once when a neighbour's failure rolls them back. One batch holds entities of every type, so
/// a refusal stays with the action, in its entity's own error type; the committer only learns
/// that it refused.
pub(crate) trait ActionProjections: Send + Sync {
    fn project<'a, 'c>(&'a self, tx: &'a mut Tx<'c>) -> BoxFuture<'a, Result<(), Refused>>;
}

/// A refusal by an action's projections; the refusal itself is kept by the action.
#[derive(Debug)]
pub(crate) struct Refused;

pub(crate) type Projections = Arc<dyn ActionProjections>;

/// One entity's chain of decided actions, waiting for a commit.
pub(crate) struct Pending {
    pub write: EntityWrite,
    /// Per outcome of the write (see [`EntityWrite::outcomes`]), its action's projections;
    /// `None` when none of its events is projected.
    pub projections: Vec<Option<Projections>>,
    pub reply: oneshot::Sender<Vec<Outcome>>,
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

impl Committer {
    /// Starts `tasks` committers over `store`, each writing up to `max_batch` chains at a time.
    pub fn start(
        store: Store,
        tasks: usize,
        max_batch: usize,
        counters: Arc<Counters>,
        stop: CancellationToken,
    ) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..tasks.max(1) {
            tokio::spawn(run(
                Batcher {
                    store: store.clone(),
                    counters: counters.clone(),
                },
                receiver.clone(),
                max_batch.max(1),
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
        self.counters.chains_waiting.incr();
        if self
            .sender
            .send(Pending {
                write,
                projections,
                reply,
            })
            .is_err()
        {
            self.counters.chains_waiting.decr();
            return lost();
        }
        outcome.await.unwrap_or_else(|_| lost())
    }
}

/// What one committer task writes with.
struct Batcher {
    store: Store,
    counters: Arc<Counters>,
}

async fn run(
    batcher: Batcher,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>,
    max_batch: usize,
    stop: CancellationToken,
) {
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let mut batch = Vec::new();
            tokio::select! {
                pending = receiver.recv() => match pending {
                    Some(pending) => batch.push(pending),
                    None => return,
                },
                () = stop.cancelled() => return,
            }
            // Whatever else is ready now joins this batch, up to `max_batch` actions (each may
            // hold a savepoint: Postgres slows every session's snapshots past 64 of them in one
            // transaction); nothing waits for more to come.
            let mut actions = batch[0].write.outcomes();
            while actions < max_batch {
                match receiver.try_recv() {
                    Ok(pending) => {
                        actions += pending.write.outcomes();
                        batch.push(pending);
                    }
                    Err(_) => break,
                }
            }
            batcher.counters.chains_waiting.sub(batch.len() as u64);
            batch
        };
        let mut writes = Vec::with_capacity(batch.len());
        let mut projections = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for pending in batch {
            writes.push(pending.write);
            projections.push(pending.projections);
            replies.push(pending.reply);
        }
        // Projections catch their own panics; one here is a runtime bug. The replies are kept
        // out of the unwinding future, so their workers are told rather than left waiting.
        match std::panic::AssertUnwindSafe(batcher.write_batch(&writes, projections))
            .catch_unwind()
            .await
        {
            Ok(outcomes) => {
                for (reply, outcomes) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcomes);
                }
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

fn all_failed(
    writes: &[EntityWrite],
    error: sqlx::Error,
    maybe_committed: bool,
) -> Vec<Vec<Outcome>> {
    let error = Arc::new(error);
    writes
        .iter()
        .map(|write| {
            (0..write.outcomes())
                .map(|_| Outcome::Storage {
                    error: error.clone(),
                    maybe_committed,
                })
                .collect()
        })
        .collect()
}

/// One action of a batch, in the batch's order.
struct Step {
    /// Its chain's index in the batch.
    write: usize,
    /// Its entity's version before it: a refused action's rows are taken back from there on.
    version_before: crate::entity::Version,
    /// It created its entity: taking it back removes the entity's row.
    creates: bool,
    project: Option<Projections>,
}

impl Batcher {
    async fn write_batch(
        &self,
        writes: &[EntityWrite],
        projections: Vec<Vec<Option<Projections>>>,
    ) -> Vec<Vec<Outcome>> {
        let mut tx = match self.store.begin().await {
            Ok(tx) => tx,
            Err(error) => return all_failed(writes, error, false),
        };
        let refs: Vec<&EntityWrite> = writes.iter().collect();
        let appended = match tx.append(&refs).await {
            Ok(appended) => appended,
            // Two runtimes' batches can lock the same entities in different orders: the database
            // breaks the deadlock by failing one, which is a conflict like any other. Retried.
            Err(error) if is_deadlock(&error) => {
                self.counters.deadlocks.incr();
                self.counters.conflicts.add(writes.len() as u64);
                return writes
                    .iter()
                    .map(|write| (0..write.outcomes()).map(|_| Outcome::Conflict).collect())
                    .collect();
            }
            Err(error) => return all_failed(writes, error, false),
        };
        let conflicts = appended.iter().filter(|&&appended| !appended).count();
        self.counters.conflicts.add(conflicts as u64);
        let mut steps = Vec::new();
        for (index, (write, projections)) in writes.iter().zip(projections).enumerate() {
            let versions_before =
                std::iter::once(write.expected_version).chain(write.versions_after());
            for (project, version_before) in projections.into_iter().zip(versions_before) {
                steps.push(Step {
                    write: index,
                    version_before,
                    creates: write.creates && version_before == 0,
                    project,
                });
            }
        }
        // Alone in its transaction, an action needs no savepoint: its failure rolls back the whole
        // transaction, which holds nothing else.
        if let [step] = steps.as_mut_slice() {
            let outcome = match (appended[0], step.project.take()) {
                (false, _) => not_written(&writes[0]),
                (true, None) => Outcome::Committed,
                (true, Some(project)) => match project.project(&mut tx.projection()).await {
                    Ok(()) => Outcome::Committed,
                    Err(Refused) => return vec![vec![Outcome::Refused]],
                },
            };
            return self.commit(tx, vec![vec![outcome]]).await;
        }
        match project_batch(&mut tx, writes, &appended, &steps, &self.counters).await {
            Ok(outcomes) => {
                // Back in the shape of the batch: per chain, per action.
                let mut outcomes = outcomes.into_iter();
                let shaped = writes
                    .iter()
                    .map(|write| outcomes.by_ref().take(write.outcomes()).collect())
                    .collect();
                self.commit(tx, shaped).await
            }
            Err(error) => all_failed(writes, error, false),
        }
    }

    /// Commits; should the commit fail, the actions it held may or may not have been committed.
    async fn commit(&self, tx: StoreTx, mut outcomes: Vec<Vec<Outcome>>) -> Vec<Vec<Outcome>> {
        let committed = outcomes
            .iter()
            .flatten()
            .filter(|outcome| matches!(outcome, Outcome::Committed))
            .count() as u64;
        match tx.commit().await {
            Ok(()) => {
                if committed > 0 {
                    self.counters.transactions.incr();
                    self.counters.actions_committed.add(committed);
                }
            }
            Err(error) => {
                self.counters.commits_failed.incr();
                let error = Arc::new(error);
                for outcome in outcomes.iter_mut().flatten() {
                    if matches!(outcome, Outcome::Committed) {
                        *outcome = Outcome::Storage {
                            error: error.clone(),
                            maybe_committed: true,
                        };
                    }
                }
            }
        }
        outcomes
    }
}

/// Runs the projections of every step (see the module's doc) and takes back the rows of the
/// refused ones; returns each step's outcome.
async fn project_batch(
    tx: &mut StoreTx,
    writes: &[EntityWrite],
    appended: &[bool],
    steps: &[Step],
    counters: &Counters,
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut outcomes: Vec<Option<Outcome>> = steps.iter().map(|_| None).collect();
    // A chain with a refused action: the actions after it were decided on its state.
    let mut broken = vec![false; writes.len()];
    // The first step since the optimistic savepoint, while one is open.
    let mut optimistic_from: Option<usize> = None;
    // Steps up to this one run each in a savepoint of their own (after a rollback).
    let mut isolate_through: Option<usize> = None;
    let mut at = 0;
    while at < steps.len() {
        let step = &steps[at];
        let project = match &step.project {
            _ if !appended[step.write] => {
                outcomes[at] = Some(not_written(&writes[step.write]));
                at += 1;
                continue;
            }
            _ if broken[step.write] => {
                outcomes[at] = Some(Outcome::Retry);
                at += 1;
                continue;
            }
            None => {
                outcomes[at] = Some(Outcome::Committed);
                at += 1;
                continue;
            }
            Some(project) => project,
        };
        if isolate_through.is_some_and(|last| at <= last) {
            // In a savepoint of its own: when it fails, what it wrote is rolled back and the
            // rest of the transaction stands.
            tx.savepoint().await?;
            match project.project(&mut tx.projection()).await {
                Ok(()) => outcomes[at] = Some(Outcome::Committed),
                Err(Refused) => {
                    tx.rollback_to_savepoint().await?;
                    // The rows appended for it and for the rest of its chain go too.
                    tx.truncate(
                        writes[step.write].entity_id,
                        step.version_before,
                        step.creates,
                    )
                    .await?;
                    broken[step.write] = true;
                    outcomes[at] = Some(Outcome::Refused);
                }
            }
            at += 1;
            continue;
        }
        let from = match optimistic_from {
            Some(from) => from,
            None => {
                tx.savepoint().await?;
                *optimistic_from.insert(at)
            }
        };
        match project.project(&mut tx.projection()).await {
            Ok(()) => {
                outcomes[at] = Some(Outcome::Committed);
                at += 1;
            }
            Err(Refused) => {
                // Undo every projection since the savepoint and run those steps again, one at
                // a time: the failing one is found again and refused alone.
                tx.rollback_to_savepoint().await?;
                counters.projection_redos.incr();
                optimistic_from = None;
                isolate_through = Some(at);
                at = from;
            }
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|| unreachable!("every step is decided")))
        .collect())
}

/// The outcome of a write whose version check (or, for a create, whose insert) wrote nothing.
fn not_written(write: &EntityWrite) -> Outcome {
    if write.creates {
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
