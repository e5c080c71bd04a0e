//! Live updates in the process: the committed states of one entity, or of every live entity of a
//! type, as this runtime publishes them (its own commits, and the writes of other runtimes it
//! catches up with). Nothing is read from the database for them.
//!
//! A watched entity stays live: the idle sweep leaves it in memory while someone watches it, so
//! that it keeps catching up with other runtimes' writes. States arrive in version order, one per
//! committed action; a watcher that falls [`CAPACITY`] states behind skips to the latest (a live
//! view wants the present; a durable subscription is the way to see every event).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::entity::{Entity, Version};

/// How many states a watcher may fall behind before it skips to the latest.
pub const CAPACITY: usize = 64;

/// Where the published states of one entity (or of one type) go.
pub(crate) struct Watchers<E> {
    sender: broadcast::Sender<Arc<E>>,
    /// Live [`Changes`]: checked on every publish, so an unwatched entity pays one atomic load.
    count: AtomicUsize,
    /// Cancelled when no more states will come: at shutdown (a child of the runtime's token), or
    /// when the entity is dropped from memory after a fault of the runtime's own.
    ended: CancellationToken,
}

impl<E: Entity> Watchers<E> {
    pub fn new(ended: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            sender: broadcast::channel(CAPACITY).0,
            count: AtomicUsize::new(0),
            ended,
        })
    }

    /// No more states will come: every watcher's stream ends.
    pub fn end(&self) {
        self.ended.cancel();
    }

    pub fn is_watched(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }

    /// Sends `state` to whoever watches.
    pub fn send(&self, state: &Arc<E>) {
        if self.is_watched() {
            let _ = self.sender.send(state.clone());
        }
    }

    /// A new watcher of the states published from now on (for one entity: past the one
    /// published now, read after subscribing, so none falls in between).
    pub fn watch(self: &Arc<Self>, latest: Latest<E>) -> Changes<E> {
        self.count.fetch_add(1, Ordering::SeqCst);
        let receiver = self.sender.subscribe();
        let last = match &latest {
            Latest::Entity(latest) => latest().map_or(0, |state| state.version()),
            Latest::Type => 0,
        };
        Changes {
            receiver,
            watchers: self.clone(),
            last,
            latest,
            skipped: 0,
        }
    }
}

/// How a watcher that fell behind finds the present.
pub(crate) enum Latest<E> {
    /// One entity: its published state.
    Entity(Box<dyn Fn() -> Option<Arc<E>> + Send + Sync>),
    /// A type: there is no one present to skip to; the states missed are counted.
    Type,
}

/// The committed states of an entity (from [`EntityRef::changes`](crate::EntityRef::changes)) or
/// of a type (from [`Runtime::changes_of`](crate::Runtime::changes_of)), as they are published.
pub struct Changes<E: Entity> {
    receiver: broadcast::Receiver<Arc<E>>,
    watchers: Arc<Watchers<E>>,
    /// The version of the last state returned, for one entity: older ones are not repeated.
    last: Version,
    latest: Latest<E>,
    skipped: u64,
}

impl<E: Entity> Changes<E> {
    /// The next committed state; `None` once the runtime has shut down (or the entity was
    /// dropped from memory after a fault in the runtime).
    pub async fn next(&mut self) -> Option<Arc<E>> {
        loop {
            let received = tokio::select! {
                biased;
                received = self.receiver.recv() => received,
                () = self.watchers.ended.cancelled() => return None,
            };
            match received {
                Ok(state) => {
                    if let Latest::Entity(_) = self.latest {
                        if state.version() <= self.last {
                            continue;
                        }
                        self.last = state.version();
                    }
                    return Some(state);
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.skipped += missed;
                    if let Latest::Entity(latest) = &self.latest
                        && let Some(state) = latest()
                        && state.version() > self.last
                    {
                        // Whatever is still queued is older than this: skipped by version.
                        self.last = state.version();
                        return Some(state);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// How many states this watcher missed by falling behind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The states as a [`Stream`](futures::Stream).
    pub fn into_stream(self) -> impl futures::Stream<Item = Arc<E>> + Send + 'static {
        futures::stream::unfold(self, |mut changes| async move {
            changes.next().await.map(|state| (state, changes))
        })
    }
}

impl<E: Entity> Drop for Changes<E> {
    fn drop(&mut self) {
        self.watchers.count.fetch_sub(1, Ordering::SeqCst);
    }
}
