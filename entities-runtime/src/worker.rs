//! An entity's worker task: runs while its inbox has work. It takes the queued commands, loads
//! the entity when it is not in memory, hands creates and actions to the per-action path
//! (`action_path`), answers reads, and leaves memory when asked to (idle or shutdown), having
//! snapshotted.

use std::sync::Arc;

use crate::action_path::{Queued, Worker};
use crate::batch::QueuedBatch;
use crate::entity::{Entity, Version};
use crate::error::Failure;
use crate::registry::Live;
use crate::shared::Shared;
use crate::slot::{Command, Slot};
use crate::snapshot;

/// The most actions one chain decides and commits together.
const MAX_CHAIN: usize = 32;

/// Starts the worker of `slot`, whose inbox has work.
pub(crate) fn start<E: Entity>(shared: &Arc<Shared>, slot: Arc<Slot<E>>) {
    shared.tasks.spawn(run(shared.clone(), slot));
}

impl<E: Entity> Live<Arc<Shared>> for Slot<E> {
    fn sweep(&self) -> bool {
        Slot::sweep(self)
    }

    fn ask_to_leave(self: Arc<Self>, shared: &Arc<Shared>) {
        if self.push(Command::Leave) {
            start(shared, self);
        }
    }

    fn follow(self: Arc<Self>, shared: &Arc<Shared>, version: Option<Version>) {
        if version.is_some_and(|version| self.version() >= version) {
            return;
        }
        if self.push(Command::CatchUp) {
            start(shared, self);
        }
    }
}

async fn run<E: Entity>(shared: Arc<Shared>, slot: Arc<Slot<E>>) {
    let _guard = AbandonOnPanic {
        shared: shared.clone(),
        slot: slot.clone(),
    };
    let mut worker = Worker { shared, slot };
    loop {
        let mut commands = worker.slot.next_commands(MAX_CHAIN);
        if commands.is_empty() {
            return;
        }
        // A create comes first, whatever reached the new id before it: there is nothing to
        // load until it commits.
        for create in commands.extract_if(.., |command| matches!(command, Command::Create { .. })) {
            if let Command::Create {
                ctx,
                action,
                key,
                reply,
                span,
            } = create
            {
                worker
                    .create(Queued::in_span(ctx, action, reply, span), key)
                    .await;
            }
        }
        if commands.is_empty() && !worker.slot.is_loaded() {
            // A create that failed leaves no entity to keep in memory.
            if worker.shared.registry.leave(&*worker.slot) {
                return;
            }
            continue;
        }
        // A created entity goes on below: at shutdown it leaves like any other, even when its
        // create came after the shutdown's sweep had asked every live entity to leave.
        if !worker.slot.is_loaded()
            && let Err(failure) = worker.load().await
        {
            fail(&worker.slot, commands, failure);
            if worker.shared.registry.leave(&*worker.slot) {
                return;
            }
            continue;
        }
        let mut actions = Vec::new();
        let mut leave = false;
        for command in commands {
            match command {
                Command::Get(reply) => {
                    let _ = reply.send(Ok(worker.state()));
                }
                Command::Act { ctx, action, reply } => {
                    actions.push(Queued::new(ctx, action, reply))
                }
                Command::Batch {
                    ctx,
                    actions: batch,
                    key,
                    one,
                    reply,
                } => {
                    // The actions queued before it are decided first, in the order they came.
                    if !actions.is_empty() {
                        worker.act(std::mem::take(&mut actions)).await;
                    }
                    worker
                        .batch(QueuedBatch::new(ctx, batch, key, one, reply))
                        .await;
                }
                Command::Hold(grant) => {
                    if !actions.is_empty() {
                        worker.act(std::mem::take(&mut actions)).await;
                    }
                    worker.lend(grant).await;
                }
                Command::CatchUp => {
                    if !actions.is_empty() {
                        worker.act(std::mem::take(&mut actions)).await;
                    }
                    if let Err(failure) = worker.catch_up().await {
                        // The next action reads the database again before it decides.
                        worker.slot.mark_stale();
                        tracing::warn!(
                            entity_type = E::TYPE,
                            entity_id = worker.slot.id(),
                            error = %failure.into_error::<E::Error>(E::TYPE, worker.slot.id()),
                            "cannot catch up with another runtime's write"
                        );
                    }
                }
                Command::Leave => leave = true,
                Command::Create { .. } => unreachable!("creates are served first"),
            }
        }
        if !actions.is_empty() {
            worker.act(actions).await;
        }
        if leave || worker.shared.shutdown.is_cancelled() {
            let counters = &worker.shared.counters;
            counters.leaving.incr();
            snapshot::write_if_changed(&worker.shared, &worker.slot).await;
            let left = worker.shared.registry.leave(&*worker.slot);
            counters.leaving.decr();
            if left {
                counters.passivations.incr();
                tracing::debug!(
                    entity_type = E::TYPE,
                    entity_id = worker.slot.id(),
                    "entity left memory"
                );
                return;
            }
            counters.passivations_interrupted.incr();
        }
    }
}

/// User code cannot panic a worker (its panics are caught and answered); a panic of the
/// runtime's own would leave the entity marked as worked on for ever. Instead its waiting
/// callers are told (their reply channels close) and it leaves memory, to be loaded afresh.
struct AbandonOnPanic<E: Entity> {
    shared: Arc<Shared>,
    slot: Arc<Slot<E>>,
}

impl<E: Entity> Drop for AbandonOnPanic<E> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shared.registry.abandon(&*self.slot);
        }
    }
}

/// A load failed: every caller of these commands gets the failure.
fn fail<E: Entity>(slot: &Slot<E>, commands: Vec<Command<E>>, failure: Failure) {
    for command in commands {
        let error = || failure.clone().into_error(E::TYPE, slot.id());
        match command {
            Command::Get(reply)
            | Command::Act { reply, .. }
            | Command::Batch { reply, .. }
            | Command::Create { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
            Command::Hold(grant) => {
                let _ = grant.send(Err(error()));
            }
            Command::Leave | Command::CatchUp => {}
        }
    }
}
