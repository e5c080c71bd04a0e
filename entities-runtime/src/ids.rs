//! Ids for new entities, reserved before their first action is decided: `Create::create` is
//! given the id, and the create then commits through the committers like any other action.
//!
//! On Postgres an id is the next value of the `entities` table's sequence, one per create: one
//! round trip, no write, ids in the order creates asked. On SQLite a reservation is a write
//! transaction (a sync to disk), so ids are reserved 32 at a time, as a Postgres
//! sequence with a `CACHE` does: the ids of a block that a runtime has not used when it stops
//! are skipped. Either way a create that is refused leaves its id unused.

use std::ops::Range;

use tokio::sync::Mutex;

use crate::entity::EntityId;
use crate::store::Store;

#[derive(Default)]
pub(crate) struct Ids {
    /// Reserved and not yet handed out (SQLite).
    reserved: Mutex<Range<EntityId>>,
}

impl Ids {
    pub async fn next(&self, store: &Store) -> Result<EntityId, sqlx::Error> {
        if let Store::Postgres(_) = store {
            // One id per reservation: nothing to keep, and concurrent creates need not queue.
            return store.reserve_ids().await.map(|ids| ids.start);
        }
        // Held across the reservation: creates that come meanwhile wait for its block rather
        // than each reserving one.
        let mut reserved = self.reserved.lock().await;
        if reserved.is_empty() {
            *reserved = store.reserve_ids().await?;
        }
        let id = reserved.start;
        reserved.start += 1;
        Ok(id)
    }
}
