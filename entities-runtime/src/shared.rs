//! What the runtime and its entity workers share: the store, the live entities, the
//! committers, the settings and the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::commit::Committer;
use crate::database::Database;
use crate::ids::Ids;
use crate::key_locks::KeyLocks;
use crate::metrics::Counters;
use crate::registry::Registry;
use crate::store::Store;

/// How the runtime behaves; set through [`RuntimeBuilder`](crate::RuntimeBuilder).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub idle_timeout: Duration,
    pub snapshot_every: u64,
    pub max_attempts: u32,
    pub committers: usize,
    pub batch_size: usize,
    pub idempotency_retention: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            snapshot_every: 100,
            max_attempts: 5,
            committers: 2,
            batch_size: 64,
            idempotency_retention: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl Config {
    /// Whether `events` written since the last snapshot call for a new one.
    pub fn snapshot_due(&self, events: i64) -> bool {
        self.snapshot_every > 0 && events >= self.snapshot_every as i64
    }
}

pub(crate) struct Shared {
    pub store: Store,
    /// The same pool, as user code sees it.
    pub database: Database,
    /// The live entities; the sweep starts their workers with this very `Shared`.
    pub registry: Registry<Arc<Shared>>,
    pub committer: Committer,
    /// Ids reserved for new entities.
    pub ids: Ids,
    /// The idempotency keys of the calls running now.
    pub key_locks: KeyLocks,
    pub config: Config,
    pub counters: Arc<Counters>,
    /// Cancelled at shutdown: every live entity snapshots and leaves.
    pub shutdown: CancellationToken,
    /// Cancelled once every entity has left: the committers end.
    committers_stop: CancellationToken,
    closing: AtomicBool,
    /// The entity workers, their snapshot tasks and the idle sweep.
    pub tasks: TaskTracker,
}

impl Shared {
    /// Starts the committers over `store`.
    pub fn start(store: Store, config: Config) -> Arc<Self> {
        let committers_stop = CancellationToken::new();
        let counters = Arc::new(Counters::default());
        let committer = Committer::start(
            store.clone(),
            config.committers,
            config.batch_size,
            counters.clone(),
            committers_stop.clone(),
        );
        Arc::new(Self {
            database: Database::new(store.clone()),
            store,
            registry: Registry::default(),
            committer,
            ids: Ids::default(),
            key_locks: KeyLocks::default(),
            config,
            counters,
            shutdown: CancellationToken::new(),
            committers_stop,
            closing: AtomicBool::new(false),
            tasks: TaskTracker::new(),
        })
    }

    /// Whether calls are still taken.
    pub fn is_open(&self) -> bool {
        !self.closing.load(Ordering::SeqCst)
    }

    /// Refuses new calls, lets every live entity finish, snapshot and leave, then stops the
    /// committers and closes the pool.
    pub async fn shut_down(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.committers_stop.cancel();
        self.store.close().await;
    }
}
