//! The live entities: a sharded map from (entity type, id) to each entity's slot.
//!
//! Every call reaches an inbox under the map's shard lock (a read lock), and an entity leaves
//! the map under the write lock only with an empty inbox and no worker. So once it has left, no
//! call can reach it: a call racing an idle stop finds no slot and makes a fresh one.
//!
//! The registry starts no worker: whoever queues a command on an idle slot is told so and
//! starts it. `W` is what the sweep's [`Live::ask_to_leave`] starts workers with (the runtime's
//! shared state), a parameter so that this module needs nothing above it.

use std::any::{Any, TypeId};
use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio_util::sync::CancellationToken;

use crate::changes::{Changes, Latest, Watchers};
use crate::entity::{Entity, EntityId, Version};
use crate::slot::{Command, Slot};

/// A live entity of any type, as the idle sweep and shutdown see it.
pub(crate) trait Live<W>: Any + Send + Sync {
    /// One round of the idle sweep; `true` if nothing touched the entity since the last round.
    fn sweep(&self) -> bool;
    /// Asks the entity to leave, starting its worker with `workers` if none runs.
    fn ask_to_leave(self: Arc<Self>, workers: &W);
    /// Asks the entity to read the events other runtimes stored since its version, unless it
    /// is at `version` already.
    fn follow(self: Arc<Self>, workers: &W, version: Option<Version>);
}

type Key = (TypeId, EntityId);

fn key<E: Entity>(id: EntityId) -> Key {
    (TypeId::of::<E>(), id)
}

fn slot<E: Entity, W: 'static>(live: &Arc<dyn Live<W>>) -> &Slot<E> {
    let any: &dyn Any = live.as_ref();
    any.downcast_ref::<Slot<E>>()
        .unwrap_or_else(|| unreachable!("registry keys carry the TypeId of their slot's entity"))
}

fn downcast<E: Entity, W: 'static>(live: Arc<dyn Live<W>>) -> Arc<Slot<E>> {
    let any: Arc<dyn Any + Send + Sync> = live;
    any.downcast::<Slot<E>>()
        .unwrap_or_else(|_| unreachable!("registry keys carry the TypeId of their slot's entity"))
}

fn is_own<E: Entity, W>(live: &Arc<dyn Live<W>>, own: &Slot<E>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(live), own as *const Slot<E>)
}

/// Queues `command` on a live slot; the slot when its worker must be started.
fn push<E: Entity, W: 'static>(
    live: &Arc<dyn Live<W>>,
    command: Command<E>,
) -> Option<Arc<Slot<E>>> {
    let slot = slot::<E, W>(live);
    slot.touch();
    slot.push(command).then(|| downcast(live.clone()))
}

pub(crate) struct Registry<W> {
    live: DashMap<Key, Arc<dyn Live<W>>>,
    /// Per entity type that has been live: who watches its entities' states (an
    /// `Arc<Watchers<E>>`). Its keys are also the types a bare id is looked up in.
    types: DashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    /// The runtime's shutdown: watchers' streams end with it.
    shutdown: CancellationToken,
}

impl<W: 'static> Registry<W> {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            live: DashMap::new(),
            types: DashMap::new(),
            shutdown,
        }
    }

    /// Who watches the states of every entity of type `E`.
    pub fn type_watchers<E: Entity>(&self) -> Arc<Watchers<E>> {
        let type_id = TypeId::of::<E>();
        let found = self.types.get(&type_id).map(|entry| entry.clone());
        let any = found.unwrap_or_else(|| {
            self.types
                .entry(type_id)
                .or_insert_with(|| Watchers::<E>::new(self.shutdown.child_token()))
                .clone()
        });
        any.downcast::<Watchers<E>>()
            .unwrap_or_else(|_| unreachable!("keyed by the TypeId of their entity"))
    }

    /// A watcher of the states of every live entity of type `E`.
    pub fn watch_type<E: Entity>(&self) -> Changes<E> {
        self.type_watchers::<E>().watch(Latest::Type)
    }

    /// A watcher of live entity `id`'s states; `None` when it is not live.
    pub fn watch<E: Entity>(&self, id: EntityId) -> Option<Changes<E>> {
        let entry = self.live.get(&key::<E>(id))?;
        let slot = downcast::<E, W>(entry.value().clone());
        drop(entry);
        slot.touch();
        slot.is_loaded().then(|| slot.watch(&self.shutdown))
    }

    /// Asks the live entity `id`, whatever its type, to catch up with other runtimes' writes
    /// (up to `version`, when known).
    pub fn follow(&self, workers: &W, id: EntityId, version: Option<Version>) {
        // The types are collected first: no lock of one map is held while the other is locked
        // (`dispatch` locks them the other way round).
        let types: Vec<TypeId> = self.types.iter().map(|entry| *entry.key()).collect();
        for type_id in types {
            let live = self.live.get(&(type_id, id)).map(|live| live.clone());
            if let Some(live) = live {
                live.follow(workers, version);
                return;
            }
        }
    }

    /// Asks every live entity to catch up: other runtimes' writes may have been missed.
    pub fn follow_all(&self, workers: &W) {
        let live: Vec<_> = self
            .live
            .iter()
            .map(|entry| entry.value().clone())
            .collect();
        for live in live {
            live.follow(workers, None);
        }
    }

    /// The committed state of a live entity, without waiting on its worker.
    pub fn published<E: Entity>(&self, id: EntityId) -> Option<Arc<E>> {
        let entry = self.live.get(&key::<E>(id))?;
        let slot = slot::<E, W>(entry.value());
        slot.touch();
        slot.published()
    }

    /// Queues `command` for entity `id`, making its slot when it is not live. Returns the slot
    /// when no worker runs for it: the caller starts one (outside the shard lock; the inbox
    /// already holds the command).
    #[must_use = "a slot returned has work and no worker: start one"]
    pub fn dispatch<E: Entity>(&self, id: EntityId, command: Command<E>) -> Option<Arc<Slot<E>>>
    where
        Slot<E>: Live<W>,
    {
        let key = key::<E>(id);
        match self.live.get(&key) {
            Some(entry) => push(entry.value(), command),
            None => match (self.type_watchers::<E>(), self.live.entry(key)) {
                (_, Entry::Occupied(entry)) => push(entry.get(), command),
                (type_watchers, Entry::Vacant(vacant)) => {
                    let slot = Arc::new(Slot::new(id, None, type_watchers));
                    slot.push(command);
                    vacant.insert(slot.clone());
                    Some(slot)
                }
            },
        }
    }

    /// Removes `own` if nothing waits in its inbox: its worker then ends. `false` when a command
    /// arrived, which the worker serves before it tries again.
    pub fn leave<E: Entity>(&self, own: &Slot<E>) -> bool {
        let key = key::<E>(own.id());
        // A watched entity stays (a watcher may have come after the sweep asked it to leave),
        // but for shutdown.
        let removed = self.live.remove_if(&key, |_, live| {
            is_own(live, own)
                && (!own.is_watched() || self.shutdown.is_cancelled())
                && own.stop_if_idle()
        });
        removed.is_some()
            || !self
                .live
                .get(&key)
                .is_some_and(|live| is_own(live.value(), own))
    }

    /// Removes `own` whatever its inbox holds, dropping what was queued. Under the shard's
    /// write lock, so no call can slip in between.
    pub fn abandon<E: Entity>(&self, own: &Slot<E>) {
        self.live.remove_if(&key::<E>(own.id()), |_, live| {
            is_own(live, own) && {
                own.stop_and_drop_queued();
                true
            }
        });
        own.end_watchers();
    }

    /// Asks every live entity that `select` picks to leave.
    pub fn ask_to_leave(&self, workers: &W, mut select: impl FnMut(&dyn Live<W>) -> bool) {
        for entry in self.live.iter() {
            if select(entry.value().as_ref()) {
                entry.value().clone().ask_to_leave(workers);
            }
        }
    }

    /// How many entities are live.
    pub fn len(&self) -> usize {
        self.live.len()
    }
}
