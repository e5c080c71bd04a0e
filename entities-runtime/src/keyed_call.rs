//! A keyed call (see `idempotency`): its user and key, the fingerprint of what it sends, and
//! what its key's row keeps of its outcome.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::entity::{Entity, EntityId, Version};
use crate::error::Error;
use crate::store::{KeyRow, StoredKey};

/// A keyed call: whose key, which key, and the fingerprint of the call.
#[derive(Debug, Clone)]
pub(crate) struct KeyedCall {
    pub user_id: String,
    pub key: String,
    pub fingerprint: String,
}

impl KeyedCall {
    /// The keyed call of `ctx`, if it has a key. Its fingerprint is the request's, when the
    /// caller gave one: the request determines the call, whose payload may hold values the
    /// server draws anew for each try (an item's fresh UUID). Otherwise `parts`, what the call
    /// sends, make it.
    pub fn of(ctx: &Context, parts: &[&[u8]]) -> Option<Self> {
        let key = ctx.idempotency_key()?;
        let request: [&[u8]; 2];
        let parts = match ctx.request_fingerprint() {
            Some(fingerprint) => {
                request = [b"request", fingerprint.as_bytes()];
                &request[..]
            }
            None => parts,
        };
        let mut hash = Sha256::new();
        // Each part with its length first, so that no two lists of parts hash alike.
        for part in parts {
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

    pub fn reused<D>(&self) -> Error<D> {
        Error::IdempotencyKeyReused {
            key: self.key.clone(),
        }
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

    /// What the stored key kept, if this call stored it (else it is a reuse of the key).
    pub fn kept<D>(&self, stored: StoredKey) -> Result<Kept, Error<D>> {
        if stored.fingerprint != self.fingerprint {
            return Err(self.reused());
        }
        serde_json::from_str(&stored.outcome).map_err(|_| self.reused())
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
