//! An entity's worker turn, lent to a transaction: the worker serves what was queued before the
//! transaction asked, hands over its loaded entity, and waits until the transaction is done with
//! it. Meanwhile no other action of the entity is decided (they queue), and `get` still answers
//! from the published state.

use tokio::sync::oneshot;

use crate::action_path::Worker;
use crate::entity::Entity;
use crate::slot::{Grant, Release, Turn};

impl<E: Entity> Worker<E> {
    /// Lends the worker's turn to the transaction behind `grant` and waits for it back; then
    /// catches up or reloads as the transaction left the entity, and snapshots if due.
    pub async fn lend(&mut self, grant: Grant<E>) {
        // A write of unknown outcome went before: the transaction decides on what is stored.
        if self.slot.is_stale()
            && let Err(failure) = self.catch_up().await
        {
            let _ = grant.send(Err(failure.into_error(E::TYPE, self.slot.id())));
            return;
        }
        let (back, returned) = oneshot::channel();
        let turn = Turn::new(self.slot.clone(), back);
        // A transaction that stopped waiting (it failed, or its caller went away) lends nothing.
        if grant.send(Ok(turn)).is_err() {
            return;
        }
        let reload = matches!(returned.await, Ok(Release::Reload));
        self.settled(reload).await;
    }
}
