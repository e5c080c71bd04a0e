//! Group commit: what entity workers decided at the same moment is written in one
//! transaction, with multi-row statements, and each action stays isolated.
//!
//! Entity workers hand their decided actions (a chain per entity) to the committers. A committer
//! takes everything waiting, up to a batch's size, and in one transaction appends every chain
//! with one statement (per-entity version checks included), runs each action's projections in a
//! savepoint of its own, and commits once. An action whose projection fails is rolled back to
//! its savepoint and its rows are taken back; its neighbours commit all the same. A chain whose
//! version check fails is written not at all and decided again by its worker. Every caller is
//! answered only after the commit that holds its action.

use std::any::Any;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::projection::Tx;
use crate::store::{EntityWrite, Store};

/// An action's projections, to run in the batch's transaction. Its error is the entity's own
/// `Error<E::Error>`, boxed, since one batch holds entities of every type.
pub(crate) type ProjectFn = Box<
    dyn for<'a, 'c> FnOnce(&'a mut Tx<'c>) -> BoxFuture<'a, Result<(), Box<dyn Any + Send>>> + Send,
>;

/// One entity's chain of decided actions, waiting for a commit.
pub(crate) struct Pending {
    pub write: EntityWrite,
    /// Per action of the chain, its projections; `None` when none of its events is projected.
    pub projections: Vec<Option<ProjectFn>>,
    pub reply: oneshot::Sender<Vec<Outcome>>,
}

/// What became of one action of a chain.
#[derive(Debug)]
pub(crate) enum Outcome {
    Committed,
    /// The stored version had moved on: nothing of the chain was written. Catch up, decide again.
    Conflict,
    /// An earlier action of the chain failed, so this one, decided after it, was not written.
    Retry,
    /// Its projections refused it (the entity's `Error<E::Error>`, boxed); it was rolled back.
    Refused(Box<dyn Any + Send>),
    /// The database failed. When it failed at the commit, the action may have been committed.
    Storage {
        error: Arc<sqlx::Error>,
        maybe_committed: bool,
    },
}

/// Where workers send their chains. Cloned into the runtime; the committer tasks end on `stop`.
pub(crate) struct Committer {
    sender: mpsc::UnboundedSender<Pending>,
}

impl Committer {
    /// Starts `tasks` committers over `store`, each writing up to `max_batch` chains at a time.
    pub fn start(store: Store, tasks: usize, max_batch: usize, stop: CancellationToken) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..tasks.max(1) {
            tokio::spawn(run(
                store.clone(),
                receiver.clone(),
                max_batch.max(1),
                stop.clone(),
            ));
        }
        Self { sender }
    }

    /// Hands a chain to the committers and waits for its outcome, one per action.
    pub async fn commit(
        &self,
        write: EntityWrite,
        projections: Vec<Option<ProjectFn>>,
    ) -> Vec<Outcome> {
        let actions = write.actions.len();
        let (reply, outcome) = oneshot::channel();
        // The committer stopped (shutdown) or panicked mid-batch: whether the batch committed
        // is unknown, so the worker catches up before its next action.
        let lost = || {
            let error = Arc::new(sqlx::Error::Protocol(
                "the committer stopped before answering".into(),
            ));
            (0..actions)
                .map(|_| Outcome::Storage {
                    error: error.clone(),
                    maybe_committed: true,
                })
                .collect()
        };
        if self
            .sender
            .send(Pending {
                write,
                projections,
                reply,
            })
            .is_err()
        {
            return lost();
        }
        outcome.await.unwrap_or_else(|_| lost())
    }
}

async fn run(
    store: Store,
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
            let mut actions = batch[0].write.actions.len();
            while actions < max_batch {
                match receiver.try_recv() {
                    Ok(pending) => {
                        actions += pending.write.actions.len();
                        batch.push(pending);
                    }
                    Err(_) => break,
                }
            }
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
        match std::panic::AssertUnwindSafe(write_batch(&store, &writes, projections))
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
            (0..write.actions.len())
                .map(|_| Outcome::Storage {
                    error: error.clone(),
                    maybe_committed,
                })
                .collect()
        })
        .collect()
}

async fn write_batch(
    store: &Store,
    writes: &[EntityWrite],
    projections: Vec<Vec<Option<ProjectFn>>>,
) -> Vec<Vec<Outcome>> {
    let mut tx = match store.begin().await {
        Ok(tx) => tx,
        Err(error) => return all_failed(writes, error, false),
    };
    let refs: Vec<&EntityWrite> = writes.iter().collect();
    let appended = match tx.append(&refs).await {
        Ok(appended) => appended,
        // Two runtimes' batches can lock the same entities in different orders: the database
        // breaks the deadlock by failing one, which is a conflict like any other. Retried.
        Err(error) if is_deadlock(&error) => {
            return writes
                .iter()
                .map(|write| write.actions.iter().map(|_| Outcome::Conflict).collect())
                .collect();
        }
        Err(error) => return all_failed(writes, error, false),
    };
    let alone = writes.len() == 1 && writes[0].actions.len() == 1;
    let mut outcomes = Vec::with_capacity(writes.len());
    for ((write, appended), projections) in writes.iter().zip(appended).zip(projections) {
        if !appended {
            outcomes.push(write.actions.iter().map(|_| Outcome::Conflict).collect());
            continue;
        }
        let mut chain = Vec::with_capacity(write.actions.len());
        let mut version_before = write.expected_version;
        for (projection, version_after) in projections.into_iter().zip(write.versions_after()) {
            if !chain
                .iter()
                .all(|outcome| matches!(outcome, Outcome::Committed))
            {
                chain.push(Outcome::Retry);
                continue;
            }
            let refused = match projection {
                None => None,
                // Alone in its transaction, an action needs no savepoint: its failure rolls back
                // the whole transaction, which holds nothing else. Two round trips saved.
                Some(project) if alone => match project(&mut tx.projection()).await {
                    Ok(()) => None,
                    Err(refusal) => return vec![vec![Outcome::Refused(refusal)]],
                },
                Some(project) => match tx.isolated(project).await {
                    Ok(Ok(())) => None,
                    Ok(Err(refusal)) => Some(refusal),
                    Err(error) => return all_failed(writes, error, false),
                },
            };
            match refused {
                None => chain.push(Outcome::Committed),
                Some(refusal) => {
                    // Its own writes went with the savepoint; the rows appended for it and for
                    // the rest of its chain go now.
                    if let Err(error) = tx.truncate(write.entity_id, version_before).await {
                        return all_failed(writes, error, false);
                    }
                    chain.push(Outcome::Refused(refusal));
                }
            }
            version_before = version_after;
        }
        outcomes.push(chain);
    }
    if let Err(error) = tx.commit().await {
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
    outcomes
}

/// A deadlock or serialization failure (SQLSTATE 40P01, 40001).
fn is_deadlock(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| matches!(&*code, "40P01" | "40001"))
}
