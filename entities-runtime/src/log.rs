//! The event log: every stored event, of every entity, in one order that a reader can follow
//! from a checkpoint without ever passing an event still in flight.
//!
//! Postgres numbers events (`position`) as they are inserted, not as they commit: a transaction
//! that took position 9 may commit after one that took 10. A reader in position order would pass
//! 9 while it is in flight, and never see it. So on Postgres the log is read in (transaction id,
//! position) order, and only below `pg_snapshot_xmin(pg_current_snapshot())`, the oldest
//! transaction still running: every transaction below it has ended, committed or not, so no
//! event can later appear behind a reader's checkpoint. (A transaction that runs long holds the
//! log back for every reader until it ends; the runtime's own are short.) On SQLite, writes are
//! serialised and row ids never go back, so position order is commit order.

use crate::entity::Entity;
use crate::runtime::Runtime;
use crate::store::{LogPosition, LoggedEvent};

impl Runtime {
    /// Up to `limit` events of the log after `after`, in log order: committed ones only, and
    /// never one past an event still in flight (see the module's doc). Read again from the last
    /// one's [`LoggedEvent::at`] for the next.
    pub async fn read_log(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, sqlx::Error> {
        self.shared().store.read_log(after, limit, &[]).await
    }

    /// [`read_log`](Self::read_log), of the events of entity type `E` only.
    pub async fn read_log_of<E: Entity>(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, sqlx::Error> {
        self.shared().store.read_log(after, limit, &[E::TYPE]).await
    }
}
