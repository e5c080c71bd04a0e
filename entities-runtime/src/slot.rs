//! A live entity: its published state, its inbox, and the few flags its worker keeps.
//!
//! About a hundred bytes. A worker task runs only while the inbox has work; `get` reads the
//! published state without queueing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwapOption;
use tokio::sync::oneshot;

use crate::changes::{Changes, Latest, Watchers};
use crate::context::Context;
use crate::entity::{Entity, EntityId, Version};
use crate::error::Error;
use crate::keyed_call::KeyedCall;

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
    /// Actions decided one after the other and stored all together or not at all: a batch,
    /// or a keyed single action (`one`), stored with its key.
    Batch {
        ctx: Arc<Context>,
        actions: Vec<E::Action>,
        key: Option<KeyedCall>,
        one: bool,
        reply: Reply<E>,
    },
    /// A transaction asks for the worker's turn (see `Turn`).
    Hold(Grant<E>),
    /// The first action of a new entity, whose id was just reserved: decided on the empty
    /// state and committed with the entity's row. `span` is the create's, opened by its caller.
    Create {
        ctx: Arc<Context>,
        action: E::Action,
        key: Option<KeyedCall>,
        reply: Reply<E>,
        span: tracing::Span,
    },
    /// Another runtime wrote to the entity: read what it stored since the published version.
    CatchUp,
    /// Idle or shutting down: snapshot if changed, then leave memory if nothing else came.
    Leave,
}

/// Where a worker sends its turn (or why it cannot lend one: the entity failed to load).
pub(crate) type Grant<E> = oneshot::Sender<Result<Turn<E>, Error<<E as Entity>::Error>>>;

/// A lent turn. Dropping it gives the turn back.
pub(crate) struct Turn<E: Entity> {
    pub slot: Arc<Slot<E>>,
    back: oneshot::Sender<Release>,
}

/// How a transaction gives a turn back.
pub(crate) enum Release {
    /// User code panicked while the transaction decided on the entity: reload it rather than
    /// trust what memory holds.
    Reload,
}

impl<E: Entity> Turn<E> {
    pub fn new(slot: Arc<Slot<E>>, back: oneshot::Sender<Release>) -> Self {
        Self { slot, back }
    }

    /// Gives the turn back, asking the worker to reload the entity from the database.
    pub fn give_back_reloading(self) {
        let _ = self.back.send(Release::Reload);
    }
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

pub(crate) struct Slot<E: Entity> {
    id: EntityId,
    /// The last committed state; `None` until loaded.
    state: ArcSwapOption<E>,
    /// Set by every call, cleared by the idle sweep: an entity read but not written stays live.
    touched: AtomicBool,
    inbox: Mutex<Inbox<E>>,
    /// Version of the newest snapshot known to be stored.
    snapshot_version: AtomicI64,
    /// A write failed in a way that leaves unknown whether it committed: catch up before the next.
    stale: AtomicBool,
    /// A snapshot is being written in the background.
    snapshotting: AtomicBool,
    /// Who watches this entity's committed states; made by the first watcher.
    watchers: ArcSwapOption<Watchers<E>>,
    /// Who watches the committed states of every entity of its type.
    type_watchers: Arc<Watchers<E>>,
}

impl<E: Entity> Slot<E> {
    pub fn new(id: EntityId, state: Option<Arc<E>>, type_watchers: Arc<Watchers<E>>) -> Self {
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
            watchers: ArcSwapOption::empty(),
            type_watchers,
        }
    }

    pub fn id(&self) -> EntityId {
        self.id
    }

    /// The last committed state; `None` until the entity is loaded.
    pub fn published(&self) -> Option<Arc<E>> {
        self.state.load_full()
    }

    pub fn is_loaded(&self) -> bool {
        self.state.load().is_some()
    }

    /// The version of the published state (0 until loaded).
    pub fn version(&self) -> Version {
        self.state
            .load()
            .as_ref()
            .map_or(0, |state| state.version())
    }

    /// Publishes a committed state; returns the state it replaces. Watchers get it if it is
    /// newer than that one (a load publishes what was there).
    pub fn publish(&self, state: Arc<E>) -> Option<Arc<E>> {
        let previous = self.state.swap(Some(state.clone()));
        // Looked at after the swap: a watcher that arrived before it is counted here, and one
        // that arrives after it reads this state as its present (see `Watchers::watch`).
        let watched = self.is_watched() || self.type_watchers.is_watched();
        if watched
            && previous
                .as_ref()
                .is_some_and(|previous| state.version() > previous.version())
        {
            if let Some(watchers) = &*self.watchers.load() {
                watchers.send(&state);
            }
            self.type_watchers.send(&state);
        }
        previous
    }

    /// Before the last state of a unit of several actions is published: publishes the states
    /// between, if someone watches (they see each action's change). `true` if it did, and so
    /// the state the last publish replaces is not the one the unit was decided from.
    pub fn publish_between(&self, states: impl Iterator<Item = Arc<E>>) -> bool {
        if !(self.is_watched() || self.type_watchers.is_watched()) {
            return false;
        }
        for state in states {
            self.publish(state);
        }
        true
    }

    /// During a catch-up: publishes a change another runtime committed, if someone watches
    /// (they see each change, not only the last one read).
    pub fn publish_change(&self, state: &E) {
        if self.is_watched() || self.type_watchers.is_watched() {
            self.publish(Arc::new(state.clone()));
        }
    }

    /// Whether someone watches this entity's states: it then stays in memory.
    pub fn is_watched(&self) -> bool {
        self.watchers
            .load()
            .as_ref()
            .is_some_and(|watchers| watchers.is_watched())
    }

    /// A watcher of the states published after the one published now. `ended` is the runtime's
    /// shutdown, should this be the first watcher.
    pub fn watch(self: &Arc<Self>, ended: &tokio_util::sync::CancellationToken) -> Changes<E> {
        let mut made = None;
        self.watchers.rcu(|current| match current {
            Some(watchers) => Some(watchers.clone()),
            None => Some(
                made.get_or_insert_with(|| Watchers::new(ended.child_token()))
                    .clone(),
            ),
        });
        let watchers = self
            .watchers
            .load_full()
            .unwrap_or_else(|| unreachable!("set just above, and never taken away"));
        let slot = self.clone();
        watchers.watch(Latest::Entity(Box::new(move || slot.published())))
    }

    /// The entity is dropped from memory for good (a fault of the runtime's own): its watchers
    /// are told.
    pub fn end_watchers(&self) {
        if let Some(watchers) = &*self.watchers.load() {
            watchers.end();
        }
    }

    /// Publishes a state read from the database (a load, from a snapshot at
    /// `snapshot_version`): the spare no longer matches it and nothing is stale.
    pub fn publish_loaded(&self, state: Arc<E>, snapshot_version: Version) {
        self.snapshot_version
            .store(snapshot_version, Ordering::Relaxed);
        self.publish_caught_up(state);
    }

    /// Publishes the first state of an entity this runtime just created: watchers of its type
    /// get it (it replaces nothing, so `publish` alone would not tell them).
    pub fn publish_created(&self, state: Arc<E>) {
        self.type_watchers.send(&state);
        self.publish_loaded(state, 0);
    }

    /// Publishes a state that read the events stored after the published one.
    pub fn publish_caught_up(&self, state: Arc<E>) {
        self.drop_spare();
        self.publish(state);
        self.stale.store(false, Ordering::Relaxed);
    }

    /// A write of unknown outcome (or a conflict): the worker reads the database before it
    /// decides again, and no snapshot is taken of what memory holds meanwhile.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    pub fn snapshot_version(&self) -> Version {
        self.snapshot_version.load(Ordering::Relaxed)
    }

    /// A snapshot of `version` is stored; one written meanwhile may be newer.
    pub fn snapshot_stored(&self, version: Version) {
        self.snapshot_version.fetch_max(version, Ordering::Relaxed);
    }

    /// Takes the snapshot flag (one snapshot task per entity); `false` when another holds it.
    pub fn begin_snapshot(&self) -> bool {
        !self.snapshotting.swap(true, Ordering::Relaxed)
    }

    pub fn end_snapshot(&self) {
        self.snapshotting.store(false, Ordering::Relaxed);
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox<E>> {
        // The inbox is only pushed to and popped from; a panic cannot leave it half-changed.
        self.inbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn touch(&self) {
        // Read first: a store on every call would bounce the cache line between readers.
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
    }

    /// Queues `command`; `true` when no worker runs, so the caller must start one.
    pub fn push(&self, command: Command<E>) -> bool {
        let mut inbox = self.inbox();
        inbox.commands.push_back(command);
        !std::mem::replace(&mut inbox.working, true)
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

    /// Ends the worker if nothing waits in the inbox; `false` when a command arrived.
    pub fn stop_if_idle(&self) -> bool {
        let mut inbox = self.inbox();
        let idle = inbox.commands.is_empty();
        if idle {
            inbox.working = false;
        }
        idle
    }

    /// Ends the worker and drops what was queued: those callers are told their call ended
    /// unanswered, as their reply channels close.
    pub fn stop_and_drop_queued(&self) {
        let mut inbox = self.inbox();
        inbox.working = false;
        inbox.commands.clear();
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
    fn drop_spare(&self) {
        // Freed outside the lock: a large state takes a while.
        let spare = self.inbox().spare.take();
        drop(spare);
    }

    /// One round of the idle sweep: clears the touched flag and drops a spare state unused
    /// since the last round; `true` if nothing touched the entity since the last round.
    pub fn sweep(&self) -> bool {
        let idle = !self.touched.swap(false, Ordering::Relaxed) && !self.is_watched();
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
}
