//! Snapshots of live entities: written when enough events were committed since the last one
//! (in the background) and when an entity leaves memory (by its worker).

use std::sync::Arc;

use crate::entity::{Entity, Version};
use crate::shared::Shared;
use crate::slot::Slot;

/// Whether `snapshot_every` events were committed since the last snapshot (and the state in
/// memory is known to be the stored one).
pub(crate) fn due<E: Entity>(shared: &Shared, slot: &Slot<E>) -> bool {
    !slot.is_stale()
        && shared
            .config
            .snapshot_due(slot.version() - slot.snapshot_version())
}

/// Writes a snapshot in a task of its own, so the entity's next actions do not wait for it
/// (its cost grows with the state); one at a time per entity.
pub(crate) fn write_in_background<E: Entity>(shared: &Arc<Shared>, slot: &Arc<Slot<E>>) {
    if !slot.begin_snapshot() {
        return;
    }
    let (shared, slot) = (shared.clone(), slot.clone());
    shared.clone().tasks.spawn(async move {
        // Cleared however the task ends (a panicking `Serialize` too), else the entity would
        // never snapshot again.
        let mut turn = Turn {
            slot: &slot,
            held: true,
        };
        loop {
            // Writes went on meanwhile (on SQLite the snapshot waits for the write lock): when
            // another snapshot is due already, it is written now, not at the next action.
            let mut stored = write_if_changed(&shared, &slot).await;
            while stored && due(&shared, &slot) {
                stored = write_if_changed(&shared, &slot).await;
            }
            turn.release();
            // The worker may have found a snapshot due while this one still ran, and left it
            // to this task: one more look after the flag is down. A failed save is not retried
            // here (the next action's check tries again).
            if !stored || !due(&shared, &slot) || !turn.retake() {
                break;
            }
        }
    });
}

/// An entity's snapshot flag, held by its snapshot task: cleared when the task drops it while
/// holding it.
struct Turn<'a, E: Entity> {
    slot: &'a Slot<E>,
    held: bool,
}

impl<E: Entity> Turn<'_, E> {
    fn release(&mut self) {
        self.slot.end_snapshot();
        self.held = false;
    }

    /// Takes the flag again, unless another snapshot task has it.
    fn retake(&mut self) -> bool {
        self.held = self.slot.begin_snapshot();
        self.held
    }
}

impl<E: Entity> Drop for Turn<'_, E> {
    fn drop(&mut self) {
        if self.held {
            self.slot.end_snapshot();
        }
    }
}

/// Stores the published state as the entity's snapshot, unless one of its version is there.
/// Returns whether it stored one.
pub(crate) async fn write_if_changed<E: Entity>(shared: &Shared, slot: &Slot<E>) -> bool {
    let Some(state) = slot.published() else {
        return false;
    };
    let version: Version = state.version();
    if version <= slot.snapshot_version() || slot.is_stale() {
        return false;
    }
    let saved = match serde_json::to_string(&*state) {
        Ok(snapshot) => {
            // Not kept while it is written: the worker may recycle it into its spare.
            drop(state);
            shared
                .store
                .save_snapshot(slot.id(), version, &snapshot, E::SHAPE)
                .await
        }
        Err(error) => {
            tracing::warn!(entity_type = E::TYPE, entity_id = slot.id(), %error, "state does not serialize; no snapshot");
            return false;
        }
    };
    match saved {
        Ok(stored) => {
            if stored {
                shared.counters.snapshots_saved.incr();
            } else {
                // Another runtime stored a newer one: ours would have replaced it with an older state.
                shared.counters.snapshots_superseded.incr();
            }
            // A later snapshot may have been stored meanwhile (this one in the background).
            slot.snapshot_stored(version);
            true
        }
        Err(error) => {
            tracing::warn!(entity_type = E::TYPE, entity_id = slot.id(), %error, "snapshot not saved");
            false
        }
    }
}
