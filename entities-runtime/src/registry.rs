//! The live entities: a sharded map from (entity type, id) to each entity's slot.
//!
//! A live entity is its slot: the published state, an inbox, and a few flags, about a hundred
//! bytes. A worker task runs only while the inbox has work. Every call reaches an inbox under the
//! map's shard lock (a read lock), and an entity leaves the map under the write lock only with an
//! empty inbox and no worker. So once it has left, no call can reach it: a call racing an idle
//! stop finds no slot and makes a fresh one.

use std::any::{Any, TypeId};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::sync::oneshot;

use crate::context::Context;
use crate::entity::{Entity, EntityId, Version};
use crate::error::Error;
use crate::runtime::Shared;
use crate::worker;

/// Where a call's answer goes.
pub(crate) type Reply<E> = oneshot::Sender<Result<Arc<E>, Error<<E as Entity>::Error>>>;

/// A message to an entity's worker.
pub(crate) enum Command<E: Entity> {
    /// The state, once loaded (a `get` that found the entity still loading).
    Get(Reply<E>),
    Act {
        ctx: Arc<Context>,
        action: E::Action,
        reply: Reply<E>,
    },
    /// Idle or shutting down: snapshot if changed, then leave memory if nothing else came.
    Leave,
}

struct Inbox<E: Entity> {
    commands: VecDeque<Command<E>>,
    /// A worker is running; it drains `commands` before it ends.
    working: bool,
    spare: Option<Spare<E>>,
}

/// An unshared copy of the published state, made from the state the last commit replaced by
/// applying that commit's events to it. The next action applies its events to it in place, so an
/// action costs what its events cost instead of a copy of the whole state (and the free of the
/// one it replaces). It doubles the memory of an entity's state while the entity is written to:
/// an idle sweep that finds it unused since the last sweep drops it.
struct Spare<E> {
    state: Arc<E>,
    used: bool,
}

/// What the registry keeps of a live entity.
pub(crate) struct Slot<E: Entity> {
    pub id: EntityId,
    /// The last committed state, read by `get` without queueing; `None` until loaded.
    pub state: ArcSwapOption<E>,
    /// Set by every call, cleared by the idle sweep: an entity read but not written stays live.
    touched: AtomicBool,
    inbox: Mutex<Inbox<E>>,
    /// Version of the newest snapshot known to be stored.
    pub snapshot_version: AtomicI64,
    /// A write failed in a way that leaves unknown whether it committed: catch up before the next.
    pub stale: AtomicBool,
    /// A snapshot is being written in the background.
    pub snapshotting: AtomicBool,
}

impl<E: Entity> Slot<E> {
    fn new(id: EntityId, state: Option<Arc<E>>) -> Self {
        Self {
            id,
            state: ArcSwapOption::new(state),
            touched: AtomicBool::new(true),
            inbox: Mutex::new(Inbox {
                commands: VecDeque::new(),
                working: false,
                spare: None,
            }),
            snapshot_version: AtomicI64::new(0),
            stale: AtomicBool::new(false),
            snapshotting: AtomicBool::new(false),
        }
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox<E>> {
        // The inbox is only pushed to and popped from; a panic cannot leave it half-changed.
        self.inbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn touch(&self) {
        // Read first: a store on every call would bounce the cache line between readers.
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
    }

    /// Queues `command`; `true` when no worker runs, so the caller must start one.
    fn push(&self, command: Command<E>) -> bool {
        let mut inbox = self.inbox();
        inbox.commands.push_back(command);
        !std::mem::replace(&mut inbox.working, true)
    }

    /// The spare copy of the published state (`Spare`), when there is one at `version`.
    pub fn take_spare(&self, version: Version) -> Option<Arc<E>> {
        let spare = self.inbox().spare.take()?;
        (spare.state.version() == version).then_some(spare.state)
    }

    /// Keeps `state`, an unshared copy of the published state, for the next action.
    pub fn keep_spare(&self, state: Arc<E>) {
        let replaced = self.inbox().spare.replace(Spare { state, used: true });
        // Freed outside the lock: a large state takes a while.
        drop(replaced);
    }

    /// Drops the spare copy: the published state was replaced other than by a commit.
    pub fn drop_spare(&self) {
        // Freed outside the lock: a large state takes a while.
        let spare = self.inbox().spare.take();
        drop(spare);
    }

    /// The worker's next commands, at most `max`; none ends the worker.
    pub fn next_commands(&self, max: usize) -> Vec<Command<E>> {
        let mut inbox = self.inbox();
        let take = inbox.commands.len().min(max);
        let commands: Vec<_> = inbox.commands.drain(..take).collect();
        if commands.is_empty() {
            inbox.working = false;
            // An idle entity keeps no buffer.
            inbox.commands = VecDeque::new();
        }
        commands
    }
}

/// A live entity of any type, as the idle sweep and shutdown see it.
pub(crate) trait Live: Any + Send + Sync {
    /// One round of the idle sweep: clears the touched flag and drops a spare state unused since
    /// the last round; `true` if nothing touched the entity since the last round.
    fn sweep(&self) -> bool;
    /// Asks the entity to leave, starting its worker if none runs.
    fn ask_to_leave(self: Arc<Self>, shared: &Arc<Shared>);
}

impl<E: Entity> Live for Slot<E> {
    fn sweep(&self) -> bool {
        let idle = !self.touched.swap(false, Ordering::Relaxed);
        if !idle {
            let mut inbox = self.inbox();
            let unused = match &mut inbox.spare {
                Some(spare) if spare.used => {
                    spare.used = false;
                    None
                }
                _ => inbox.spare.take(),
            };
            // Freed outside the lock: a large state takes a while.
            drop(inbox);
            drop(unused);
        }
        idle
    }

    fn ask_to_leave(self: Arc<Self>, shared: &Arc<Shared>) {
        if self.push(Command::Leave) {
            worker::start(shared, self);
        }
    }
}

type Key = (TypeId, EntityId);

/// Queues `command` on a live slot; the slot when its worker must be started.
fn push<E: Entity>(live: &Arc<dyn Live>, command: Command<E>) -> Option<Arc<Slot<E>>> {
    let slot = slot::<E>(live);
    slot.touch();
    slot.push(command).then(|| downcast(live.clone()))
}

fn key<E: Entity>(id: EntityId) -> Key {
    (TypeId::of::<E>(), id)
}

fn slot<E: Entity>(value: &Arc<dyn Live>) -> &Slot<E> {
    let any: &dyn Any = value.as_ref();
    any.downcast_ref::<Slot<E>>()
        .unwrap_or_else(|| unreachable!("registry keys carry the TypeId of their slot's entity"))
}

fn downcast<E: Entity>(live: Arc<dyn Live>) -> Arc<Slot<E>> {
    let any: Arc<dyn Any + Send + Sync> = live;
    any.downcast::<Slot<E>>()
        .unwrap_or_else(|_| unreachable!("registry keys carry the TypeId of their slot's entity"))
}

fn is_own<E: Entity>(value: &Arc<dyn Live>, own: &Slot<E>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(value), own as *const Slot<E>)
}

#[derive(Default)]
pub(crate) struct Registry {
    live: DashMap<Key, Arc<dyn Live>>,
}

impl Registry {
    /// The committed state of a live entity, without waiting on its worker.
    pub fn published<E: Entity>(&self, id: EntityId) -> Option<Arc<E>> {
        let entry = self.live.get(&key::<E>(id))?;
        let slot = slot::<E>(entry.value());
        slot.touch();
        slot.state.load_full()
    }

    /// Queues `command` for entity `id`, making its slot when it is not live, and starts its
    /// worker when none runs.
    pub fn dispatch<E: Entity>(&self, shared: &Arc<Shared>, id: EntityId, command: Command<E>) {
        let key = key::<E>(id);
        let start = match self.live.get(&key) {
            Some(entry) => push(entry.value(), command),
            None => match self.live.entry(key) {
                Entry::Occupied(entry) => push(entry.get(), command),
                Entry::Vacant(vacant) => {
                    let slot = Arc::new(Slot::new(id, None));
                    slot.push(command);
                    vacant.insert(slot.clone());
                    Some(slot)
                }
            },
        };
        // Started outside the shard lock; the inbox already holds the command.
        if let Some(slot) = start {
            worker::start(shared, slot);
        }
    }

    /// Registers a live entity whose state the caller already has (just created), unless it
    /// is live already.
    pub fn adopt<E: Entity>(&self, id: EntityId, state: Arc<E>) {
        if let Entry::Vacant(vacant) = self.live.entry(key::<E>(id)) {
            vacant.insert(Arc::new(Slot::new(id, Some(state))));
        }
    }

    /// Removes `own` if nothing waits in its inbox: its worker then ends. `false` when a command
    /// arrived, which the worker serves before it tries again.
    pub fn leave<E: Entity>(&self, own: &Slot<E>) -> bool {
        let key = key::<E>(own.id);
        let removed = self.live.remove_if(&key, |_, value| {
            is_own(value, own) && {
                let mut inbox = own.inbox();
                let empty = inbox.commands.is_empty();
                if empty {
                    inbox.working = false;
                }
                empty
            }
        });
        removed.is_some()
            || !self
                .live
                .get(&key)
                .is_some_and(|value| is_own(value.value(), own))
    }

    /// Removes `own` whatever its inbox holds, dropping what was queued (those callers are told
    /// their call ended unanswered). Under the shard's write lock, so no call can slip in between.
    pub fn abandon<E: Entity>(&self, own: &Slot<E>) {
        self.live.remove_if(&key::<E>(own.id), |_, value| {
            is_own(value, own) && {
                let mut inbox = own.inbox();
                inbox.working = false;
                inbox.commands.clear();
                true
            }
        });
    }

    /// Asks every live entity that `select` picks to leave.
    pub fn ask_to_leave(&self, shared: &Arc<Shared>, mut select: impl FnMut(&dyn Live) -> bool) {
        for entry in self.live.iter() {
            if select(entry.value().as_ref()) {
                entry.value().clone().ask_to_leave(shared);
            }
        }
    }

    /// How many entities are live.
    pub fn len(&self) -> usize {
        self.live.len()
    }
}

impl<E: Entity> Slot<E> {
    pub fn snapshot_version(&self) -> Version {
        self.snapshot_version.load(Ordering::Relaxed)
    }
}
