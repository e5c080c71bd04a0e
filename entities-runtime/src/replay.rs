//! Loading an entity: its snapshot, then the events after it.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::entity::{Entity, EntityId, Tagged, Version};
use crate::error::{Failure, panic_message};
use crate::store::{Store, StoredEvent};

/// An entity as loaded from the database.
pub(crate) struct Loaded<E> {
    pub state: E,
    /// Version of the snapshot the load started from (0 when it replayed from the start).
    pub snapshot_version: Version,
}

/// Loads entity `id`: from its snapshot when that still decodes, else from its first event.
pub(crate) async fn load<E: Entity>(store: &Store, id: EntityId) -> Result<Loaded<E>, Failure> {
    load_through(store, id, Version::MAX).await
}

/// The state of entity `id` as it was at `version` (what an idempotent call that led to it
/// answers when it is repeated).
pub(crate) async fn state_at<E: Entity>(
    store: &Store,
    id: EntityId,
    version: Version,
) -> Result<E, Failure> {
    let loaded = load_through::<E>(store, id, version).await?;
    if loaded.state.version() != version {
        return Err(Failure::Corrupt {
            version,
            reason: format!("its events stop at version {}", loaded.state.version()),
        });
    }
    Ok(loaded.state)
}

/// Loads entity `id` up to version `through`: from a snapshot no newer than that when there is
/// one that still decodes, else from its first event.
async fn load_through<E: Entity>(
    store: &Store,
    id: EntityId,
    through: Version,
) -> Result<Loaded<E>, Failure> {
    let row = store.entity_row(id).await?.ok_or(Failure::NotFound)?;
    if row.entity_type != E::TYPE {
        return Err(Failure::NotFound);
    }
    let snapshot = match row.snapshot_version {
        Some(version) if version <= through => row.snapshot,
        _ => None,
    };
    let (mut state, snapshot_version) = match (snapshot, row.snapshot_version) {
        (Some(_), Some(version))
            if row
                .snapshot_shape
                .as_deref()
                .is_some_and(|shape| shape != E::SHAPE) =>
        {
            // Written by a state of another shape: even if it decodes, it may mean something
            // else now (a field renamed back and forth, a type's JSON changed). The events hold
            // the truth.
            tracing::info!(
                entity_type = E::TYPE,
                entity_id = id,
                snapshot_version = version,
                "snapshot of another state shape; replaying every event"
            );
            (E::new(id), 0)
        }
        (Some(snapshot), Some(version)) => match serde_json::from_str::<E>(&snapshot) {
            Ok(mut state) => {
                state.set_version(version);
                (state, version)
            }
            Err(error) => {
                // The struct changed since the snapshot was taken: the events still hold the truth.
                tracing::warn!(
                    entity_type = E::TYPE,
                    entity_id = id,
                    snapshot_version = version,
                    %error,
                    "snapshot does not decode; replaying every event"
                );
                (E::new(id), 0)
            }
        },
        _ => (E::new(id), 0),
    };
    for stored in store.events_after(id, state.version(), through).await? {
        apply_stored(&mut state, stored)?;
    }
    if state.version() < row.version.min(through) {
        return Err(Failure::Corrupt {
            version: state.version() + 1,
            reason: format!(
                "the entity is at version {} but its events stop at version {}",
                row.version,
                state.version()
            ),
        });
    }
    Ok(Loaded {
        state,
        snapshot_version,
    })
}

/// Applies to `state` the events stored after its version, calling `changed` with the state
/// after each action's events: each a committed change.
pub(crate) async fn catch_up<E: Entity>(
    store: &Store,
    id: EntityId,
    state: &mut E,
    mut changed: impl FnMut(&E),
) -> Result<(), Failure> {
    let mut events = store
        .events_after(id, state.version(), Version::MAX)
        .await?
        .into_iter()
        .peekable();
    while let Some(stored) = events.next() {
        let action_id = stored.action_id;
        apply_stored(state, stored)?;
        if events.peek().is_none_or(|next| next.action_id != action_id) {
            changed(state);
        }
    }
    Ok(())
}

fn apply_stored<E: Entity>(state: &mut E, stored: StoredEvent) -> Result<(), Failure> {
    let expected = state.version() + 1;
    if stored.version != expected {
        return Err(Failure::Corrupt {
            version: expected,
            reason: format!(
                "event versions jump from {} to {}",
                state.version(),
                stored.version
            ),
        });
    }
    let event = E::Event::decode(&stored.event_type, stored.payload_version, &stored.payload)
        .map_err(|error| Failure::Corrupt {
            version: stored.version,
            reason: error.to_string(),
        })?;
    catch_unwind(AssertUnwindSafe(|| state.apply_event(&event))).map_err(|payload| {
        Failure::Panicked {
            during: "apply",
            message: panic_message(payload.as_ref()),
        }
    })?;
    state.set_version(stored.version);
    Ok(())
}
