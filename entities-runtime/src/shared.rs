//! What the runtime and its entity workers share: the store, the live entities, the
//! committers, the settings and the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::announce::{Announcer, Peers};
use crate::commit::{self, Committer};
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
    /// How long a committer keeps its connection while no batch waits.
    pub commit_linger: Duration,
    /// Postgres: whether a kept connection waits inside the next transaction, begun ahead.
    pub begin_ahead: bool,
    pub idempotency_retention: Duration,
    /// SQLite: how often to look for other processes' writes to live entities.
    pub follow_interval: Duration,
    /// Whether live entities catch up with other runtimes' writes as they happen.
    pub follow_other_writers: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            snapshot_every: 100,
            max_attempts: 5,
            committers: 2,
            batch_size: 64,
            commit_linger: Duration::from_millis(5),
            begin_ahead: true,
            idempotency_retention: Duration::from_secs(24 * 60 * 60),
            follow_interval: Duration::from_millis(100),
            follow_other_writers: true,
        }
    }
}

impl Config {
    /// Whether `events` written since the last snapshot call for a new one.
    pub fn snapshot_due(&self, events: i64) -> bool {
        self.snapshot_every > 0 && events >= self.snapshot_every as i64
    }
}

/// The ids of the entities each commit wrote, as the committers announce them.
pub(crate) type Notices = tokio::sync::mpsc::UnboundedReceiver<Vec<crate::entity::EntityId>>;

pub(crate) struct Shared {
    /// This runtime's id, unique among the runtimes on a database: what its notifications
    /// carry and its subscription leases name.
    pub instance: String,
    pub store: Store,
    /// An in-memory SQLite database: no other process can write to it.
    pub in_memory: bool,
    /// Tells readers of the log that it moved on.
    pub announcer: Arc<Announcer>,
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
    /// Starts the committers over `store`. Returns, on Postgres, where the ids of each commit's
    /// entities arrive, for the task that notifies other runtimes (`follow`).
    pub fn start(store: Store, in_memory: bool, config: Config) -> (Arc<Self>, Option<Notices>) {
        let committers_stop = CancellationToken::new();
        let counters = Arc::new(Counters::default());
        let (notices, notices_out) = match store {
            Store::Postgres(_) => {
                let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
                (Some(sender), Some(receiver))
            }
            Store::Sqlite(_) => (None, None),
        };
        let announcer = Arc::new(Announcer::new(
            notices,
            Peers::new(config.follow_other_writers),
        ));
        let committer = Committer::start(
            store.clone(),
            commit::Settings {
                tasks: config.committers,
                max_batch: config.batch_size,
                linger: config.commit_linger,
                begin_ahead: config.begin_ahead,
            },
            counters.clone(),
            announcer.clone(),
            committers_stop.clone(),
        );
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Self {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            database: Database::new(store.clone()),
            store,
            in_memory,
            announcer,
            registry: Registry::new(shutdown.clone()),
            committer,
            ids: Ids::default(),
            key_locks: KeyLocks::default(),
            config,
            counters,
            shutdown,
            committers_stop,
            closing: AtomicBool::new(false),
            tasks: TaskTracker::new(),
        });
        (shared, notices_out)
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
