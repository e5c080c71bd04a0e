//! The live entities: a sharded map from (entity type, id) to the slot its task serves.
//!
//! Every send to a task happens under the map's shard lock (a read lock), and a task leaves the
//! map under the write lock only when its mailbox is empty. So once a task has left, no message
//! can reach it: a call racing an idle stop finds no slot and starts a fresh task.

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::sync::{mpsc, oneshot};

use crate::context::Context;
use crate::entity::{Entity, EntityId};
use crate::error::Error;

/// Where a call's answer goes.
pub(crate) type Reply<E> = oneshot::Sender<Result<Arc<E>, Error<<E as Entity>::Error>>>;

/// A message to an entity task.
pub(crate) enum Command<E: Entity> {
    /// The state, once loaded (a `get` that found the entity still loading).
    Get(Reply<E>),
    Act {
        ctx: Context,
        action: E::Action,
        reply: Reply<E>,
    },
}

/// What the registry keeps of a live entity.
pub(crate) struct Slot<E: Entity> {
    mailbox: mpsc::UnboundedSender<Command<E>>,
    /// The last committed state, read by `get` without queueing; `None` while loading.
    pub state: ArcSwapOption<E>,
    /// Set by every call, cleared by the task's idle check: an entity read but not written stays live.
    pub touched: AtomicBool,
}

type Key = (TypeId, EntityId);

#[derive(Default)]
pub(crate) struct Registry {
    live: DashMap<Key, Arc<dyn Any + Send + Sync>>,
}

fn key<E: Entity>(id: EntityId) -> Key {
    (TypeId::of::<E>(), id)
}

fn slot<E: Entity>(value: &Arc<dyn Any + Send + Sync>) -> &Slot<E> {
    value
        .downcast_ref::<Slot<E>>()
        .unwrap_or_else(|| unreachable!("registry keys carry the TypeId of their slot's entity"))
}

fn is_own<E: Entity>(value: &Arc<dyn Any + Send + Sync>, own: &Arc<Slot<E>>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(value), Arc::as_ptr(own))
}

/// A new entity task's end of its slot, for the caller to spawn.
pub(crate) struct Started<E: Entity> {
    pub slot: Arc<Slot<E>>,
    pub mailbox: mpsc::UnboundedReceiver<Command<E>>,
}

impl Registry {
    /// The committed state of a live entity, without waiting on its task.
    pub fn published<E: Entity>(&self, id: EntityId) -> Option<Arc<E>> {
        let entry = self.live.get(&key::<E>(id))?;
        let slot = slot::<E>(entry.value());
        slot.touched.store(true, Ordering::Relaxed);
        slot.state.load_full()
    }

    /// Sends `command` to the task of entity `id`. When none is live, makes its slot, sends the
    /// command to it and returns the task's end for the caller to spawn (with `state` already
    /// published when the caller knows it, as after a create).
    pub fn dispatch<E: Entity>(&self, id: EntityId, mut command: Command<E>) -> Option<Started<E>> {
        let key = key::<E>(id);
        loop {
            if let Some(entry) = self.live.get(&key) {
                let live = slot::<E>(entry.value());
                live.touched.store(true, Ordering::Relaxed);
                match live.mailbox.send(command) {
                    Ok(()) => return None,
                    // The task died without leaving (a bug in the runtime, not user code):
                    // drop its slot and start afresh.
                    Err(mpsc::error::SendError(returned)) => {
                        command = returned;
                        let dead = Arc::as_ptr(entry.value());
                        drop(entry);
                        self.live.remove_if(&key, |_, value| {
                            std::ptr::addr_eq(Arc::as_ptr(value), dead)
                        });
                        continue;
                    }
                }
            }
            match self.live.entry(key) {
                Entry::Occupied(_) => continue,
                Entry::Vacant(vacant) => {
                    let started = Self::new_slot::<E>(None);
                    // The receiver is alive in `started`, so this send cannot fail.
                    let _ = started.slot.mailbox.send(command);
                    vacant.insert(started.slot.clone());
                    return Some(started);
                }
            }
        }
    }

    /// Registers a live entity whose state the caller already has (just created). Returns
    /// `None` if a task for it is live already.
    pub fn adopt<E: Entity>(&self, id: EntityId, state: Arc<E>) -> Option<Started<E>> {
        match self.live.entry(key::<E>(id)) {
            Entry::Occupied(_) => None,
            Entry::Vacant(vacant) => {
                let started = Self::new_slot::<E>(Some(state));
                vacant.insert(started.slot.clone());
                Some(started)
            }
        }
    }

    fn new_slot<E: Entity>(state: Option<Arc<E>>) -> Started<E> {
        let (sender, mailbox) = mpsc::unbounded_channel();
        let slot = Arc::new(Slot {
            mailbox: sender,
            state: ArcSwapOption::new(state),
            touched: AtomicBool::new(false),
        });
        Started { slot, mailbox }
    }

    /// Removes the task's slot if nothing waits in its mailbox; the task must then end. Returns
    /// `false` when a message arrived, which the task serves before trying again.
    pub fn leave<E: Entity>(
        &self,
        id: EntityId,
        own: &Arc<Slot<E>>,
        mailbox: &mpsc::UnboundedReceiver<Command<E>>,
    ) -> bool {
        let key = key::<E>(id);
        let removed = self
            .live
            .remove_if(&key, |_, value| is_own(value, own) && mailbox.is_empty());
        // Not ours any more (a stale slot was dropped): nothing can reach this task, so it ends.
        removed.is_some()
            || !self
                .live
                .get(&key)
                .is_some_and(|value| is_own(value.value(), own))
    }

    /// How many entities are live.
    pub fn len(&self) -> usize {
        self.live.len()
    }
}
