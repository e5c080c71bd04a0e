//! The event store: one enum over the two backends, so the per-action path is one code path.
//!
//! Each backend module holds its SQL; this module holds what they share.

mod log;
mod migrate;
mod postgres;
mod sqlite;
pub(crate) mod subscriptions;

use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use futures::StreamExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Connection, Postgres, Sqlite};

pub use log::{LogPosition, LoggedEvent};
pub(crate) use log::{RawEvent, changed_since, count_after, head, read_log};
pub use migrate::Migration;

use crate::context::Context;
use crate::entity::{EntityId, PayloadVersion, Version};
use crate::projection::Tx;
use crate::sql::{Backend, Target};
use crate::telemetry;

/// Runs `$body` on whichever pool `$store` holds, with `$sql` bound to that backend's version
/// of a query: the queries both backends share are written once.
macro_rules! on_pool {
    ($store:expr, $pool:ident, $sql:ident = $name:ident => $body:expr) => {
        match $store {
            Store::Postgres(pool) => {
                let mut connection = crate::telemetry::connection(pool).await?;
                let $pool = &mut *connection;
                let $sql = postgres::$name;
                $body
            }
            Store::Sqlite(pool) => {
                let mut connection = crate::telemetry::connection(pool).await?;
                let $pool = &mut *connection;
                let $sql = sqlite::$name;
                $body
            }
        }
    };
}

/// A connection pool to the database the runtime stores in.
#[derive(Clone, Debug)]
pub(crate) enum Store {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The `entities` row of an entity.
#[derive(Debug)]
pub(crate) struct EntityRow {
    pub entity_type: String,
    pub version: Version,
    pub snapshot: Option<String>,
    pub snapshot_version: Option<Version>,
    /// The fingerprint of the state's shape the snapshot was written with (`Entity::SHAPE`);
    /// `None` for one written before fingerprints.
    pub snapshot_shape: Option<String>,
}

/// One stored event, as read back for a replay.
#[derive(Debug)]
pub(crate) struct StoredEvent {
    pub version: Version,
    pub event_type: String,
    pub payload_version: PayloadVersion,
    pub payload: String,
    /// The action that recorded it: the events of one action are one committed change.
    pub action_id: i64,
}

/// One stored event with what caused it: a line of an entity's history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRecord {
    /// The entity's version after this event.
    pub version: Version,
    pub event_type: String,
    /// The version of the payload's shape it was stored with (`#[event(version = N)]`): the
    /// payload is as stored, not upcast.
    pub payload_version: PayloadVersion,
    pub payload: serde_json::Value,
    pub action_id: i64,
    pub action_type: String,
    pub created_by: String,
    pub request_id: String,
    pub correlation_id: String,
    /// When it was stored: RFC 3339, UTC.
    pub inserted_at: String,
}

/// The rows of one action: its own and its events'.
#[derive(Debug)]
pub(crate) struct ActionRows {
    pub action_type: &'static str,
    pub payload: String,
    pub ctx: Arc<Context>,
    pub events: Vec<EventRow>,
}

/// The row of one event: its type tag, the version of its payload's shape
/// (`#[event(version = N)]`), and its JSON.
#[derive(Debug)]
pub(crate) struct EventRow {
    pub event_type: &'static str,
    pub payload_version: PayloadVersion,
    pub payload: String,
}

/// What one entity writes in a transaction: a chain of actions, each decided on the state the
/// one before it left, checked against the version they were all decided from.
#[derive(Debug)]
pub(crate) struct EntityWrite {
    pub entity_type: &'static str,
    pub entity_id: EntityId,
    /// The stored version the chain was decided from; the write fails if it moved on.
    pub expected_version: Version,
    /// The chain creates the entity (`expected_version` is 0): its row is inserted rather than
    /// its version checked and bumped, and the write fails in the same way if the id is taken.
    pub creates: bool,
    /// Empty only for a create that recorded no events: the entity's row alone.
    pub actions: Vec<ActionRows>,
}

impl EntityWrite {
    /// The entity's version after each action of the chain.
    pub fn versions_after(&self) -> impl Iterator<Item = Version> + '_ {
        self.actions
            .iter()
            .scan(self.expected_version, |version, action| {
                *version += action.events.len() as Version;
                Some(*version)
            })
    }

    /// How many outcomes the committer answers it with: one per action, or one for the row of
    /// a create that recorded no events.
    pub fn outcomes(&self) -> usize {
        self.actions.len().max(1)
    }

    pub fn new_version(&self) -> Version {
        self.versions_after()
            .last()
            .unwrap_or(self.expected_version)
    }
}

/// An idempotency key to insert with a unit, in its transaction.
#[derive(Debug)]
pub(crate) struct KeyRow {
    pub user_id: String,
    pub key: String,
    pub fingerprint: String,
    /// What the keyed call returned, as JSON.
    pub outcome: String,
}

/// A stored idempotency key: the fingerprint of the call that stored it and what it returned.
#[derive(Debug)]
pub(crate) struct StoredKey {
    pub fingerprint: String,
    pub outcome: String,
}

/// A history row as both backends return it: the columns of [`EventRecord`], payload as text.
pub(crate) type HistoryRow = (
    Version,
    String,
    PayloadVersion,
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
);

/// The [`EventRecord`] of a history row (or of a log row's last columns).
pub(crate) fn record(row: HistoryRow) -> Result<EventRecord, sqlx::Error> {
    let payload =
        serde_json::from_str(&row.3).map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
    Ok(EventRecord {
        version: row.0,
        event_type: row.1,
        payload_version: row.2,
        payload,
        action_id: row.4,
        action_type: row.5,
        created_by: row.6,
        request_id: row.7,
        correlation_id: row.8,
        inserted_at: row.9,
    })
}

/// How long a call waits for a pooled connection unless told otherwise: short, so that an
/// outage fails calls fast (sqlx's own default is 30 s).
pub(crate) const DEFAULT_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// An open transaction on either backend: on a connection of its own (`'static`), or on a
/// [`Held`] one.
pub(crate) enum StoreTx<'c> {
    Postgres(sqlx::Transaction<'c, Postgres>),
    Sqlite(sqlx::Transaction<'c, Sqlite>),
}

/// What a committer keeps from one batch to the next, saving the next batch the round trips
/// sqlx spends checking a connection as the pool hands it out and takes it back. Only taking it
/// is counted in `entities_pool_waiting`; its `BEGIN`s are not (see `telemetry::transaction`).
pub(crate) enum Held {
    /// Postgres: a transaction begun with the last batch's `COMMIT`, in its round trip (see
    /// [`StoreTx::commit_and_begin`]). sqlx counts it open, so dropped it is rolled back.
    Begun(StoreTx<'static>),
    /// A connection each batch begins its own transaction on.
    Connection(KeptConnection),
}

/// A connection taken from the pool and kept, for one transaction after another.
pub(crate) enum KeptConnection {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl KeptConnection {
    /// Begins a transaction on it, as [`Store::begin`] does on the pool.
    pub async fn begin(&mut self) -> Result<StoreTx<'_>, sqlx::Error> {
        Ok(match self {
            KeptConnection::Postgres(conn) => StoreTx::Postgres(conn.begin_with(PG_BEGIN).await?),
            KeptConnection::Sqlite(conn) => StoreTx::Sqlite(conn.begin_with(SQLITE_BEGIN).await?),
        })
    }
}

const PG_BEGIN: &str = "BEGIN";
/// See [`StoreTx::commit_and_begin`] (and `testing::CommitCutter`, which knows it).
pub(crate) const PG_COMMIT_AND_BEGIN: &str = "COMMIT; BEGIN";
/// See [`StoreTx::rollback_and_begin`] (and `testing::CommitCutter`, which knows it).
pub(crate) const PG_ROLLBACK_AND_BEGIN: &str = "ROLLBACK; BEGIN";
/// IMMEDIATE takes the write lock up front: a deferred transaction that reads first could fail
/// to upgrade (SQLITE_BUSY) instead of waiting its turn.
const SQLITE_BEGIN: &str = "BEGIN IMMEDIATE";

impl Store {
    /// Connects to `postgres://...`/`postgresql://...` or `sqlite:...` (created if missing).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        Self::connect_with(url, max_connections, DEFAULT_ACQUIRE_TIMEOUT).await
    }

    /// As [`connect`](Self::connect), a wait for a pooled connection failing after
    /// `acquire_timeout`.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        acquire_timeout: std::time::Duration,
    ) -> Result<Self, sqlx::Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire_timeout)
                .connect_with(options)
                .await?;
            Ok(Store::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .foreign_keys(true)
                // WAL lets reads run beside the one writer; FULL keeps every commit on disk.
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                .busy_timeout(std::time::Duration::from_secs(30));
            // An in-memory database lives in one connection: a second one would see another database.
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let pool = SqlitePoolOptions::new()
                .max_connections(if in_memory { 1 } else { max_connections })
                .acquire_timeout(acquire_timeout)
                .connect_with(options)
                .await?;
            Ok(Store::Sqlite(pool))
        } else {
            Err(sqlx::Error::Configuration(
                format!(
                    "unsupported database URL `{url}`: expected `postgres://...` or `sqlite:...`"
                )
                .into(),
            ))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Postgres(_) => Backend::Postgres,
            Store::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub async fn migrate(&self, user: &[Migration]) -> Result<(), sqlx::migrate::MigrateError> {
        migrate::run(self, user).await
    }

    pub async fn begin(&self) -> Result<StoreTx<'static>, sqlx::Error> {
        Ok(match self {
            Store::Postgres(pool) => {
                StoreTx::Postgres(telemetry::transaction(pool, PG_BEGIN).await?)
            }
            Store::Sqlite(pool) => {
                StoreTx::Sqlite(telemetry::transaction(pool, SQLITE_BEGIN).await?)
            }
        })
    }

    /// What a committer writes its next batch on (see [`Held`]): on Postgres with `begin_ahead`,
    /// a transaction it may keep open past its commit; otherwise a connection.
    pub async fn hold(&self, begin_ahead: bool) -> Result<Held, sqlx::Error> {
        Ok(match self {
            Store::Postgres(_) if begin_ahead => Held::Begun(self.begin().await?),
            Store::Postgres(pool) => {
                Held::Connection(KeptConnection::Postgres(telemetry::connection(pool).await?))
            }
            Store::Sqlite(pool) => {
                Held::Connection(KeptConnection::Sqlite(telemetry::connection(pool).await?))
            }
        })
    }

    /// Whether the pool could hand out a connection now without a wait: one is idle, or it may
    /// open another.
    pub fn has_room(&self) -> bool {
        fn room<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> bool {
            pool.num_idle() > 0 || pool.size() < pool.options().get_max_connections()
        }
        match self {
            Store::Postgres(pool) => room(pool),
            Store::Sqlite(pool) => room(pool),
        }
    }

    pub async fn entity_row(&self, id: EntityId) -> Result<Option<EntityRow>, sqlx::Error> {
        type Row = (
            String,
            Version,
            Option<String>,
            Option<Version>,
            Option<String>,
        );
        let row: Option<Row> = on_pool!(self, pool, sql = ENTITY_ROW => {
            sqlx::query_as(sql).bind(id).fetch_optional(pool).await?
        });
        Ok(row.map(
            |(entity_type, version, snapshot, snapshot_version, snapshot_shape)| EntityRow {
                entity_type,
                version,
                snapshot,
                snapshot_version,
                snapshot_shape,
            },
        ))
    }

    /// The events of `id` after `version` and up to `through`, in order.
    pub async fn events_after(
        &self,
        id: EntityId,
        version: Version,
        through: Version,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let rows: Vec<(Version, String, PayloadVersion, String, i64)> = on_pool!(self, pool, sql = EVENTS_AFTER => {
            sqlx::query_as(sql).bind(id).bind(version).bind(through).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(version, event_type, payload_version, payload, action_id)| StoredEvent {
                    version,
                    event_type,
                    payload_version,
                    payload,
                    action_id,
                },
            )
            .collect())
    }

    /// The events of entity `id` of type `entity_type` with their actions, oldest first.
    pub async fn history(
        &self,
        entity_type: &str,
        id: EntityId,
        after: Version,
        limit: usize,
    ) -> Result<Vec<EventRecord>, sqlx::Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<HistoryRow> = on_pool!(self, pool, sql = HISTORY => {
            sqlx::query_as(sql)
                .bind(id)
                .bind(entity_type)
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(record).collect()
    }

    /// Reserves `count` ids for new entities; nobody else is given them.
    ///
    /// Postgres reserves one (a round trip, no write); SQLite, whose reservation is a write
    /// transaction, [`sqlite::ID_BLOCK`] at a time.
    pub async fn reserve_ids(&self) -> Result<Range<EntityId>, sqlx::Error> {
        match self {
            Store::Postgres(pool) => {
                let mut connection = telemetry::connection(pool).await?;
                let first: EntityId = sqlx::query_scalar(postgres::NEXT_ID)
                    .fetch_one(&mut *connection)
                    .await?;
                Ok(first..first + 1)
            }
            Store::Sqlite(pool) => {
                let mut tx = telemetry::transaction(pool, "BEGIN IMMEDIATE").await?;
                let last: EntityId = sqlx::query_scalar(sqlite::RESERVE_IDS)
                    .bind(sqlite::ID_BLOCK)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(last - sqlite::ID_BLOCK + 1..last + 1)
            }
        }
    }

    /// Stores `snapshot`, of a state of shape `shape`, as the state at `version`, unless a newer
    /// snapshot is there already (one of the same version is rewritten: it may be one that no
    /// longer decodes, or of another shape). Returns whether it was written.
    pub async fn save_snapshot(
        &self,
        id: EntityId,
        version: Version,
        snapshot: &str,
        shape: &str,
    ) -> Result<bool, sqlx::Error> {
        let done = on_pool!(self, pool, sql = SAVE_SNAPSHOT => {
            sqlx::query(sql).bind(id).bind(version).bind(snapshot).bind(shape).execute(pool).await?.rows_affected()
        });
        Ok(done == 1)
    }

    /// The key `key` of `user_id`, if a call stored it.
    pub async fn idempotency_key(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<StoredKey>, sqlx::Error> {
        let row: Option<(String, String)> = on_pool!(self, pool, sql = IDEMPOTENCY_KEY => {
            sqlx::query_as(sql).bind(user_id).bind(key).fetch_optional(pool).await?
        });
        Ok(row.map(|(fingerprint, outcome)| StoredKey {
            fingerprint,
            outcome,
        }))
    }

    /// Deletes the idempotency keys stored more than `retention` ago; returns how many.
    pub async fn delete_expired_keys(
        &self,
        retention: std::time::Duration,
    ) -> Result<u64, sqlx::Error> {
        let seconds = retention.as_secs_f64();
        Ok(on_pool!(self, pool, sql = DELETE_EXPIRED_KEYS => {
            sqlx::query(sql).bind(seconds).execute(pool).await?.rows_affected()
        }))
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        match self {
            Store::Postgres(pool) => pool.close().await,
            Store::Sqlite(pool) => pool.close().await,
        }
    }
}

impl StoreTx<'_> {
    /// For each write: checks and bumps the version, and writes its action rows and event rows.
    /// Returns, per write, whether it was written; a write whose stored version moved on
    /// writes nothing.
    pub async fn append(&mut self, writes: &[&EntityWrite]) -> Result<Vec<bool>, sqlx::Error> {
        match self {
            StoreTx::Postgres(tx) => postgres::append(tx, writes).await,
            StoreTx::Sqlite(tx) => sqlite::append(tx, writes).await,
        }
    }

    /// Inserts the keys of the batch's keyed units; returns, per key, whether it was inserted
    /// (`false`: a call stored it already).
    pub async fn insert_keys(&mut self, keys: &[&KeyRow]) -> Result<Vec<bool>, sqlx::Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            StoreTx::Postgres(tx) => postgres::insert_keys(tx, keys).await,
            StoreTx::Sqlite(tx) => sqlite::insert_keys(tx, keys).await,
        }
    }

    /// Takes back a key inserted in this transaction, with the unit it belonged to.
    pub async fn delete_key(&mut self, key: &KeyRow) -> Result<(), sqlx::Error> {
        match self {
            StoreTx::Postgres(tx) => {
                sqlx::query(postgres::DELETE_IDEMPOTENCY_KEY)
                    .bind(&key.user_id)
                    .bind(&key.key)
                    .execute(&mut **tx)
                    .await?;
            }
            StoreTx::Sqlite(tx) => {
                sqlx::query(sqlite::DELETE_IDEMPOTENCY_KEY)
                    .bind(&key.user_id)
                    .bind(&key.key)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// What a statement of user code runs on in this transaction.
    pub fn target(&mut self) -> Target<'_> {
        match self {
            StoreTx::Postgres(tx) => Target::PostgresConnection(tx),
            StoreTx::Sqlite(tx) => Target::SqliteConnection(tx),
        }
    }

    /// The transaction as projections see it.
    pub fn projection(&mut self) -> Tx<'_> {
        match self {
            StoreTx::Postgres(tx) => Tx::postgres_tx(tx),
            StoreTx::Sqlite(tx) => Tx::sqlite_tx(tx),
        }
    }

    /// Takes back an appended chain from `version` on: its later actions and events go, and the
    /// entity's version returns to `version`; at version 0 of a chain that created the entity,
    /// its row goes too. For a projection that failed after the append.
    pub async fn truncate(
        &mut self,
        entity_id: EntityId,
        version: Version,
        uncreate: bool,
    ) -> Result<(), sqlx::Error> {
        match self {
            StoreTx::Postgres(tx) => postgres::truncate(tx, entity_id, version, uncreate).await,
            StoreTx::Sqlite(tx) => sqlite::truncate(tx, entity_id, version, uncreate).await,
        }
    }

    /// Sets a savepoint. It is never released: the next `SAVEPOINT` of the same name stacks on
    /// it (both backends keep the older one), a rollback goes to the newest, and `COMMIT`
    /// releases them all, which saves a round trip each.
    pub async fn savepoint(&mut self) -> Result<(), sqlx::Error> {
        self.raw("SAVEPOINT entities_action").await
    }

    /// Undoes what was written since the newest savepoint, which stays.
    pub async fn rollback_to_savepoint(&mut self) -> Result<(), sqlx::Error> {
        self.raw("ROLLBACK TO SAVEPOINT entities_action").await
    }

    async fn raw(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        match self {
            StoreTx::Postgres(tx) => sqlx::raw_sql(sql).execute(&mut **tx).await.map(drop),
            StoreTx::Sqlite(tx) => sqlx::raw_sql(sql).execute(&mut **tx).await.map(drop),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            StoreTx::Postgres(tx) => tx.commit().await,
            StoreTx::Sqlite(tx) => tx.commit().await,
        }
    }

    /// Postgres: commits and, in the same round trip, begins the next transaction, which this
    /// one then is: a batch on it saves its `BEGIN`'s round trip. sqlx keeps counting it open,
    /// so it still rolls back when dropped. The outer result is the commit's; the inner one the
    /// `BEGIN`'s, an error there (the commit done) leaving no transaction open. When the commit
    /// fails the `BEGIN` is not run (the server stops a multi-statement query at its first error).
    ///
    /// Postgres takes no snapshot and assigns no transaction id for a bare `BEGIN`: the open
    /// transaction holds back neither vacuum nor the readers of the log (see `READ_LOG`), but
    /// `now()` in it is the time it began. (SQLite keeps no transaction begun ahead: see
    /// `commit::Settings::begin_ahead`.)
    pub async fn commit_and_begin(&mut self) -> Result<Result<(), sqlx::Error>, sqlx::Error> {
        let StoreTx::Postgres(tx) = self else {
            unreachable!("only a Postgres transaction is begun ahead")
        };
        let mut answers = sqlx::raw_sql(PG_COMMIT_AND_BEGIN).execute_many(&mut **tx);
        let mut answered = 0;
        while let Some(answer) = answers.next().await {
            match answer {
                Ok(_) => answered += 1,
                Err(error) if answered == 0 => return Err(error),
                Err(error) => return Ok(Err(error)),
            }
        }
        Ok(match answered {
            2 => Ok(()),
            _ => Err(sqlx::Error::Protocol(format!(
                "`{PG_COMMIT_AND_BEGIN}` answered {answered} statement(s)"
            ))),
        })
    }

    /// Postgres: rolls back and, in the same round trip, begins the next transaction, which
    /// this one then is (as [`commit_and_begin`](Self::commit_and_begin)). (A SQLite batch goes
    /// back to a savepoint instead: see `commit::Attempt`.)
    pub async fn rollback_and_begin(&mut self) -> Result<(), sqlx::Error> {
        match self {
            StoreTx::Postgres(_) => self.raw(PG_ROLLBACK_AND_BEGIN).await,
            StoreTx::Sqlite(_) => unreachable!("a SQLite batch goes back to a savepoint"),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, StoreTx::Postgres(_))
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            StoreTx::Postgres(tx) => tx.rollback().await,
            StoreTx::Sqlite(tx) => tx.rollback().await,
        }
    }
}

/// The name of the constraint a database error violated. SQLite names none, so there it is the
/// `table.column` list its message ends with (`UNIQUE constraint failed: shopping_lists.name`).
pub(crate) fn constraint_name(error: &dyn sqlx::error::DatabaseError) -> Option<String> {
    if let Some(name) = error.constraint() {
        return Some(name.to_owned());
    }
    error
        .message()
        .split_once("constraint failed: ")
        .map(|(_, columns)| columns.trim().to_owned())
}
