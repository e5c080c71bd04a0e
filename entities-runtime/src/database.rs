//! The database as user code reaches it outside an action: to read the read models, or to run
//! a transaction of its own, with the one query shape of [`Query`] on both backends.

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{Postgres, SqlSafeStr, Sqlite};

use crate::sql::{Backend, Query, Target};
use crate::store::{Store, StoreTx};
use crate::telemetry;

/// The runtime's database (from [`Runtime::database`](crate::Runtime::database)), or a pool of
/// its own on the same settings ([`Database::connect`]). Cheap to clone: clones share the pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let db = entities_runtime::Database::connect("sqlite::memory:", 1).await?;
/// db.query("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)").execute().await?;
/// db.query("INSERT INTO notes (id, text) VALUES ($1, $2)").bind(1_i64).bind("hello").execute().await?;
/// let notes: Vec<(i64, String)> = db.query("SELECT id, text FROM notes").fetch_all().await?;
/// assert_eq!(notes, [(1, "hello".to_owned())]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Database {
    store: Store,
}

/// How many connections a pool holds now ([`Database::connections`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConnections {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

impl PoolConnections {
    pub fn in_use(&self) -> u32 {
        self.open.saturating_sub(self.idle)
    }
}

impl Database {
    /// A pool of `max_connections` on `url` (`postgres://...` or `sqlite:...`, created if
    /// missing), with the settings the runtime uses: on SQLite, WAL, full sync, foreign keys,
    /// and a wait for the write lock rather than an error.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        Ok(Self::new(Store::connect(url, max_connections).await?))
    }

    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// The pool's connections now: open, idle among them (the others are in use), and the most
    /// it opens. How many calls wait for one is the `entities_pool_waiting` gauge, which the
    /// runtime reports through the `metrics` facade.
    pub fn connections(&self) -> PoolConnections {
        let (open, idle, max) = match &self.store {
            Store::Postgres(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
            Store::Sqlite(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
        };
        PoolConnections {
            open,
            idle: u32::try_from(idle).unwrap_or(open),
            max,
        }
    }

    /// A statement to run on the pool: bind its parameters, then execute or fetch.
    pub fn query(&self, sql: impl SqlSafeStr) -> Query<'_> {
        let target = match &self.store {
            Store::Postgres(pool) => Target::PostgresPool(pool),
            Store::Sqlite(pool) => Target::SqlitePool(pool),
        };
        Query::new(target, sql, None)
    }

    /// Runs statements separated by `;`, without parameters (set-up and maintenance SQL).
    pub async fn execute_script(&self, sql: impl SqlSafeStr) -> Result<(), sqlx::Error> {
        match &self.store {
            Store::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            Store::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        }
    }

    /// One connection of the pool, held until dropped: for several statements in a row
    /// without a transaction, each without a trip to the pool.
    pub async fn acquire(&self) -> Result<Connection, sqlx::Error> {
        Ok(match &self.store {
            Store::Postgres(pool) => {
                Connection(Pooled::Postgres(telemetry::connection(pool).await?))
            }
            Store::Sqlite(pool) => Connection(Pooled::Sqlite(telemetry::connection(pool).await?)),
        })
    }

    /// Begins a transaction, as the runtime does: on SQLite it takes the write lock at once.
    pub async fn begin(&self) -> Result<Transaction, sqlx::Error> {
        Ok(Transaction {
            tx: self.store.begin().await?,
        })
    }

    /// The Postgres pool, for SQL of Postgres only.
    pub fn postgres(&self) -> Option<&PgPool> {
        match &self.store {
            Store::Postgres(pool) => Some(pool),
            Store::Sqlite(_) => None,
        }
    }

    /// The SQLite pool, for SQL of SQLite only.
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match &self.store {
            Store::Sqlite(pool) => Some(pool),
            Store::Postgres(_) => None,
        }
    }

    /// Closes the pool: every clone's connections end. On the runtime's own database that is
    /// the runtime's pool, which `Runtime::shutdown` closes: closed early, every later call of
    /// the runtime fails with `Error::Storage`.
    pub async fn close(&self) {
        self.store.close().await;
    }
}

/// A connection taken from the pool with [`Database::acquire`]; back to the pool when dropped.
pub struct Connection(Pooled);

enum Pooled {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl Connection {
    /// A statement to run on this connection: bind its parameters, then execute or fetch.
    pub fn query(&mut self, sql: impl SqlSafeStr) -> Query<'_> {
        let target = match &mut self.0 {
            Pooled::Postgres(conn) => Target::PostgresConnection(conn),
            Pooled::Sqlite(conn) => Target::SqliteConnection(conn),
        };
        Query::new(target, sql, None)
    }
}

/// A transaction begun with [`Database::begin`]; rolled back if dropped uncommitted.
pub struct Transaction {
    tx: StoreTx<'static>,
}

impl Transaction {
    /// A statement to run in this transaction: bind its parameters, then execute or fetch.
    pub fn query(&mut self, sql: impl SqlSafeStr) -> Query<'_> {
        Query::new(self.tx.target(), sql, None)
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}
