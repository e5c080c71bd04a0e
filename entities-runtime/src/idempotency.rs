//! Idempotent calls: a call made with an idempotency key (`Context::with_idempotency_key`) stores
//! the key, in the transaction that commits it, with what it returned. A call whose key (for its
//! user) is stored already is not decided again: it returns what the first returned, the state
//! as of the version that call led to, or a transaction's value. Held in the database (a
//! primary key over user and key), so it holds across restarts, passivation and runtimes.
//!
//! Each keyed call is fingerprinted (what it sends, and the request's fingerprint when the caller
//! gave one): the same key with another call is refused with `Error::IdempotencyKeyReused`.
//! Only a committed call stores its key: a refused one may be sent again with the same key.

use std::sync::Arc;
use std::time::Duration;

use crate::entity::{Entity, EntityId};
use crate::error::{Error, storage};
use crate::keyed_call::{Kept, KeyedCall};
use crate::replay;
use crate::shared::Shared;
use crate::store::StoredKey;

/// What an earlier call with this key returned, when one stored it.
pub(crate) async fn stored<D>(
    shared: &Shared,
    call: &KeyedCall,
) -> Result<Option<StoredKey>, Error<D>> {
    let stored = shared
        .store
        .idempotency_key(&call.user_id, &call.key)
        .await
        .map_err(storage)?;
    if stored.is_some() {
        shared.counters.idempotent_replays.incr();
    }
    Ok(stored)
}

/// The state an earlier call on entity type `E` (on entity `on`, when the call names one) with
/// this key returned: as of the version it led to, from memory when the entity is live at that
/// version, else replayed to it.
pub(crate) async fn kept_state<E: Entity>(
    shared: &Shared,
    call: &KeyedCall,
    stored: StoredKey,
    on: Option<EntityId>,
) -> Result<Arc<E>, Error<E::Error>> {
    let (id, version) = match call.kept(stored)? {
        Kept::Entity {
            entity_type,
            id,
            version,
        } if entity_type == E::TYPE && on.is_none_or(|on| on == id) => (id, version),
        _ => return Err(call.reused()),
    };
    if let Some(state) = shared.registry.published::<E>(id)
        && state.version() == version
    {
        return Ok(state);
    }
    replay::state_at::<E>(&shared.store, id, version)
        .await
        .map(Arc::new)
        .map_err(|failure| failure.into_error(E::TYPE, id))
}

/// Every tenth of `retention` (between a second and an hour), deletes the idempotency keys older
/// than `retention`: a key is kept at least that long, and at most a tenth longer. Ends at
/// shutdown; holds the runtime weakly.
pub(crate) async fn sweep_expired_keys(shared: std::sync::Weak<Shared>) {
    let Some((retention, shutdown)) = shared
        .upgrade()
        .map(|shared| (shared.config.idempotency_retention, shared.shutdown.clone()))
    else {
        return;
    };
    let period = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = shutdown.cancelled() => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match shared.store.delete_expired_keys(retention).await {
            Ok(deleted) => shared.counters.idempotency_keys_expired.add(deleted),
            Err(error) => tracing::warn!(%error, "cannot delete expired idempotency keys"),
        }
    }
}
