//! Telling whoever reads the log that it moved on: this runtime's subscriptions at once (a
//! counter they wait on), and, on Postgres, other runtimes through `NOTIFY` (see `follow`),
//! when one listens.
//!
//! A `NOTIFY` is a transaction of its own, signals every listening backend, and comes back to
//! the sender's own listener: per commit of a lone runtime it cost about 15 % of W1's rate on
//! Postgres, for nobody. So runtimes greet each other on the channel (`follow::notice`) and a
//! runtime that listens notifies only while it knows another one does:
//!
//! - a runtime that starts listening (or listens again) says `hello`;
//! - a runtime that hears `hello` from another adds it and answers `here <it>`;
//! - a runtime that hears `here` from another it did not know adds it and answers `here`;
//!   when the `here` is to itself, it catches up every live entity.
//!
//! That last catch-up keeps the promise: a commit that a runtime did not announce, not knowing
//! the listener yet, came before it learned of the listener, so before its `here`, so before
//! the listener's catch-up, which reads it. Whether to announce is decided at the commit,
//! before its callers are answered. A runtime that does not listen hears no greeting, so it
//! announces always. A runtime killed without its `bye` stays known, and is notified for
//! nothing until the others restart.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::{mpsc, watch};

use crate::entity::EntityId;
use crate::metrics::Counters;

pub(crate) struct Announcer {
    /// Moves after every commit of this runtime, and whenever another runtime's is heard of.
    moved: watch::Sender<u64>,
    /// Postgres: the ids of the entities each commit wrote, for the task that notifies other
    /// runtimes (outside the commit: `NOTIFY` in the transaction would serialise every commit
    /// on Postgres's notification queue lock).
    notices: Option<mpsc::UnboundedSender<Vec<EntityId>>>,
    /// The other runtimes that listen.
    pub peers: Peers,
}

impl Announcer {
    pub fn new(notices: Option<mpsc::UnboundedSender<Vec<EntityId>>>, peers: Peers) -> Self {
        Self {
            moved: watch::channel(0).0,
            notices,
            peers,
        }
    }

    /// A transaction of this runtime committed events of the entities `ids` lists.
    pub fn committed(&self, ids: impl FnOnce() -> Vec<EntityId>) {
        self.moved();
        if let Some(notices) = &self.notices
            && self.peers.anyone_listening()
        {
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

/// Which other runtimes listen for this runtime's commits.
pub(crate) struct Peers {
    /// Whether this runtime listens, so hears of the others; when not, it assumes someone does.
    listening: bool,
    known: Mutex<HashSet<String>>,
}

impl Peers {
    pub fn new(listening: bool) -> Self {
        Self {
            listening,
            known: Mutex::new(HashSet::new()),
        }
    }

    /// Whether a commit is worth a notification.
    pub fn anyone_listening(&self) -> bool {
        !self.listening || !self.known().is_empty()
    }

    /// Runtime `instance` listens; `true` if it was not known.
    pub fn add(&self, instance: &str, counters: &Counters) -> bool {
        let added = self.known().insert(instance.to_owned());
        if added {
            counters.runtimes_listening.incr();
        }
        added
    }

    /// Runtime `instance` stopped listening.
    pub fn remove(&self, instance: &str, counters: &Counters) {
        if self.known().remove(instance) {
            counters.runtimes_listening.decr();
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
