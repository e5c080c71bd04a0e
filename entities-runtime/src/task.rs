//! The task of one live entity: loads it, serves its actions one at a time, publishes each
//! committed state, snapshots, and leaves when idle or at shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tracing::Instrument;

use crate::context::Context;
use crate::entity::{Entity, EntityId, Tagged, Version};
use crate::error::{Error, Failure, storage};
use crate::persist::{self, EncodedAction};
use crate::registry::{Command, Slot, Started};
use crate::replay;
use crate::runtime::Shared;

/// Runs the task of entity `id` until it leaves the registry.
pub(crate) async fn run<E: Entity>(runtime: Arc<Shared>, id: EntityId, started: Started<E>) {
    let Started { slot, mut mailbox } = started;
    let (state, snapshot_version) = match slot.state.load_full() {
        // Just created: the creator published the state, and nothing is snapshotted yet.
        Some(state) => (state, 0),
        None => match replay::load::<E>(&runtime.store, id).await {
            Ok(loaded) => {
                let state = Arc::new(loaded.state);
                slot.state.store(Some(state.clone()));
                (state, loaded.snapshot_version)
            }
            Err(failure) => return fail_and_leave(&runtime, id, &slot, &mut mailbox, failure),
        },
    };
    let mut task = EntityTask {
        runtime,
        id,
        slot,
        mailbox,
        state,
        snapshot_version,
        stale: false,
    };
    task.serve().await;
}

/// A load failed: every caller waiting gets the failure, and the task leaves, so the next call
/// tries the load again.
fn fail_and_leave<E: Entity>(
    runtime: &Shared,
    id: EntityId,
    slot: &Arc<Slot<E>>,
    mailbox: &mut mpsc::UnboundedReceiver<Command<E>>,
    failure: Failure,
) {
    loop {
        while let Ok(command) = mailbox.try_recv() {
            let reply = match command {
                Command::Get(reply) | Command::Act { reply, .. } => reply,
            };
            let _ = reply.send(Err(failure.clone().into_error(E::TYPE, id)));
        }
        if runtime.registry.leave(id, slot, mailbox) {
            return;
        }
    }
}

struct EntityTask<E: Entity> {
    runtime: Arc<Shared>,
    id: EntityId,
    slot: Arc<Slot<E>>,
    mailbox: mpsc::UnboundedReceiver<Command<E>>,
    /// The last committed state, as published.
    state: Arc<E>,
    /// Version of the newest snapshot known to be stored.
    snapshot_version: Version,
    /// A write failed in a way that leaves unknown whether it committed: catch up before the next.
    stale: bool,
}

impl<E: Entity> EntityTask<E> {
    async fn serve(&mut self) {
        let idle_timeout = self.runtime.config.idle_timeout;
        loop {
            let leaving = tokio::select! {
                biased;
                command = self.mailbox.recv() => match command {
                    Some(command) => {
                        self.handle(command).await;
                        false
                    }
                    // Unreachable while the slot (which holds the sender) lives; leave all the same.
                    None => return,
                },
                () = self.runtime.shutdown.cancelled() => true,
                () = tokio::time::sleep(idle_timeout) => !self.slot.touched.swap(false, Ordering::Relaxed),
            };
            if leaving {
                self.snapshot_if_changed().await;
                if self
                    .runtime
                    .registry
                    .leave(self.id, &self.slot, &self.mailbox)
                {
                    tracing::debug!(entity_type = E::TYPE, entity_id = self.id, "entity stopped");
                    return;
                }
            }
        }
    }

    async fn handle(&mut self, command: Command<E>) {
        match command {
            Command::Get(reply) => {
                let _ = reply.send(Ok(self.state.clone()));
            }
            Command::Act { ctx, action, reply } => {
                let result = self.act(&ctx, &action).await;
                let panicked = matches!(result, Err(Error::Panicked { .. }));
                let _ = reply.send(result);
                if panicked {
                    self.restart().await;
                } else if self
                    .runtime
                    .config
                    .snapshot_due(self.state.version() - self.snapshot_version)
                {
                    self.snapshot_if_changed().await;
                }
            }
        }
    }

    /// One action, with its span: decide, write, commit, publish; on a version conflict catch
    /// up with the database and decide again, a bounded number of times.
    async fn act(&mut self, ctx: &Context, action: &E::Action) -> Result<Arc<E>, Error<E::Error>> {
        let span = tracing::info_span!(
            "action",
            entity_type = E::TYPE,
            entity_id = self.id,
            action = action.type_tag(),
            version = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let result = self
            .act_with_retries(ctx, action)
            .instrument(span.clone())
            .await;
        span.record("version", self.state.version());
        span.record("outcome", outcome(&result));
        result
    }

    async fn act_with_retries(
        &mut self,
        ctx: &Context,
        action: &E::Action,
    ) -> Result<Arc<E>, Error<E::Error>> {
        if self.stale {
            self.catch_up().await?;
        }
        let encoded = EncodedAction::<E>::new(action, self.id)?;
        let attempts = self.runtime.config.max_attempts;
        for attempt in 1..=attempts {
            let before = self.state.clone();
            let Some(decision) = persist::decide(&*before, ctx, action)? else {
                return Ok(before);
            };
            let mut tx = self.runtime.store.begin().await.map_err(storage)?;
            if !persist::write(&mut tx, ctx, &*before, &encoded, &decision).await? {
                drop(tx);
                tracing::debug!(attempt, "version conflict; catching up");
                self.catch_up().await?;
                continue;
            }
            if let Err(error) = tx.commit().await {
                // A lost connection at commit leaves unknown whether it committed.
                self.stale = true;
                return Err(storage(error));
            }
            let after = Arc::new(decision.after);
            self.state = after.clone();
            self.slot.state.store(Some(after.clone()));
            return Ok(after);
        }
        Err(Error::Conflict {
            entity_type: E::TYPE,
            id: self.id,
            attempts,
        })
    }

    /// Applies the events other writers stored since this task's version, and publishes them.
    async fn catch_up(&mut self) -> Result<(), Error<E::Error>> {
        let mut state = (*self.state).clone();
        replay::catch_up(&self.runtime.store, self.id, &mut state)
            .await
            .map_err(|failure| failure.into_error(E::TYPE, self.id))?;
        self.state = Arc::new(state);
        self.slot.state.store(Some(self.state.clone()));
        self.stale = false;
        Ok(())
    }

    /// After user code panicked: reload from the database rather than trust anything in memory.
    async fn restart(&mut self) {
        match replay::load::<E>(&self.runtime.store, self.id).await {
            Ok(loaded) => {
                self.state = Arc::new(loaded.state);
                self.slot.state.store(Some(self.state.clone()));
                self.snapshot_version = loaded.snapshot_version;
                self.stale = false;
            }
            Err(_) => self.stale = true,
        }
    }

    async fn snapshot_if_changed(&mut self) {
        let version = self.state.version();
        if version <= self.snapshot_version {
            return;
        }
        let saved = match serde_json::to_string(&*self.state) {
            Ok(snapshot) => {
                self.runtime
                    .store
                    .save_snapshot(self.id, version, &snapshot)
                    .await
            }
            Err(error) => {
                tracing::warn!(entity_type = E::TYPE, entity_id = self.id, %error, "state does not serialize; no snapshot");
                return;
            }
        };
        match saved {
            Ok(_) => self.snapshot_version = version,
            Err(error) => {
                tracing::warn!(entity_type = E::TYPE, entity_id = self.id, %error, "snapshot not saved")
            }
        }
    }
}

pub(crate) fn outcome<E, D>(result: &Result<E, Error<D>>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(Error::Rejected(_)) => "rejected",
        Err(Error::NotFound { .. }) => "not_found",
        Err(Error::Conflict { .. }) => "conflict",
        Err(Error::Constraint { .. }) => "constraint",
        Err(Error::Corrupt { .. }) => "corrupt",
        Err(Error::Payload { .. }) => "payload",
        Err(Error::Storage(_)) => "storage",
        Err(Error::Panicked { .. }) => "panicked",
        Err(Error::ShuttingDown) => "shutting_down",
    }
}
