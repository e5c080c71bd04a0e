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

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::entity::{Entity, EntityId, Version};
use crate::error::{Error, storage};
use crate::replay;
use crate::shared::Shared;
use crate::store::{KeyRow, StoredKey};
use std::time::Duration;

/// A keyed call: whose key, which key, and the fingerprint of the call.
#[derive(Debug, Clone)]
pub(crate) struct KeyedCall {
    pub user_id: String,
    pub key: String,
    pub fingerprint: String,
}

impl KeyedCall {
    /// The keyed call of `ctx`, if it has a key; `parts` say what the call sends.
    pub fn of(ctx: &Context, parts: &[&[u8]]) -> Option<Self> {
        let key = ctx.idempotency_key()?;
        let mut hash = Sha256::new();
        // Each part with its length first, so that no two lists of parts hash alike.
        for part in parts
            .iter()
            .copied()
            .chain(ctx.request_fingerprint().map(str::as_bytes))
        {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
        let fingerprint = hash
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Some(Self {
            user_id: ctx.user_id().to_owned(),
            key: key.to_owned(),
            fingerprint,
        })
    }

    /// The row that stores this call's key with what it returned.
    pub fn row(&self, outcome: &Kept) -> KeyRow {
        KeyRow {
            user_id: self.user_id.clone(),
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            outcome: serde_json::to_string(outcome)
                .unwrap_or_else(|_| unreachable!("an outcome is plain JSON")),
        }
    }

    fn reused<D>(&self) -> Error<D> {
        Error::IdempotencyKeyReused {
            key: self.key.clone(),
        }
    }

    /// What an earlier call with this key returned, when one stored it.
    pub async fn stored<D>(&self, shared: &Shared) -> Result<Option<StoredKey>, Error<D>> {
        let stored = shared
            .store
            .idempotency_key(&self.user_id, &self.key)
            .await
            .map_err(storage)?;
        if stored.is_some() {
            shared.counters.idempotent_replays.incr();
        }
        Ok(stored)
    }

    /// The state an earlier call on entity type `E` with this key returned: as of the version
    /// it led to, from memory when the entity is live at that version, else replayed to it.
    pub async fn kept_state<E: Entity>(
        &self,
        shared: &Shared,
        stored: StoredKey,
    ) -> Result<Arc<E>, Error<E::Error>> {
        let (id, version) = match self.kept(stored)? {
            Kept::Entity {
                entity_type,
                id,
                version,
            } if entity_type == E::TYPE => (id, version),
            _ => return Err(self.reused()),
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

    /// The value an earlier transaction with this key returned.
    pub fn kept_value<T: serde::de::DeserializeOwned, D>(
        &self,
        stored: StoredKey,
    ) -> Result<T, Error<D>> {
        match self.kept(stored)? {
            Kept::Value(value) => serde_json::from_value(value).map_err(|_| self.reused()),
            Kept::Entity { .. } => Err(self.reused()),
        }
    }

    fn kept<D>(&self, stored: StoredKey) -> Result<Kept, Error<D>> {
        if stored.fingerprint != self.fingerprint {
            return Err(self.reused());
        }
        serde_json::from_str(&stored.outcome).map_err(|_| self.reused())
    }
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

/// What a keyed call returned, as its key's row keeps it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kept {
    /// The entity's state as of `version`.
    Entity {
        entity_type: String,
        id: EntityId,
        version: Version,
    },
    /// A transaction's value, as JSON.
    Value(serde_json::Value),
}

impl Kept {
    pub fn entity<E: Entity>(state: &E) -> Self {
        Kept::Entity {
            entity_type: E::TYPE.to_owned(),
            id: state.id(),
            version: state.version(),
        }
    }
}
