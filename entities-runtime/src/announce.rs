//! Telling whoever reads the log that it moved on: this runtime's subscriptions at once (a
//! counter they wait on), and, on Postgres, other runtimes through `NOTIFY` (see `follow`).

use tokio::sync::{mpsc, watch};

use crate::entity::EntityId;

pub(crate) struct Announcer {
    /// Moves after every commit of this runtime, and whenever another runtime's is heard of.
    moved: watch::Sender<u64>,
    /// Postgres: the ids of the entities each commit wrote, for the task that notifies other
    /// runtimes (outside the commit: `NOTIFY` in the transaction would serialise every commit
    /// on Postgres's notification queue lock).
    notices: Option<mpsc::UnboundedSender<Vec<EntityId>>>,
}

impl Announcer {
    pub fn new(notices: Option<mpsc::UnboundedSender<Vec<EntityId>>>) -> Self {
        Self {
            moved: watch::channel(0).0,
            notices,
        }
    }

    /// A transaction of this runtime committed events of the entities `ids` lists.
    pub fn committed(&self, ids: impl FnOnce() -> Vec<EntityId>) {
        self.moved();
        if let Some(notices) = &self.notices {
            let _ = notices.send(ids());
        }
    }

    /// The log moved on (or may have): wake the readers.
    pub fn moved(&self) {
        self.moved
            .send_modify(|moves| *moves = moves.wrapping_add(1));
    }

    /// What a reader waits on for the log to move.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.moved.subscribe()
    }
}
