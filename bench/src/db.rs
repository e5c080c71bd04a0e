//! The databases a run measures on: a fresh Postgres database on the server of `DATABASE_URL`
//! (dropped afterwards), or a fresh SQLite file in the temporary directory; and the runtime and
//! the baseline's pool on it, configured alike.

use std::str::FromStr;
use std::time::Duration;

use entities_runtime::sqlx;
use entities_runtime::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use entities_runtime::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Runtime, RuntimeBuilder};

use crate::baseline::Baseline;

/// One database of its own, for one measurement: the runtime's [`TestDatabase`], removed
/// afterwards ([`BenchDb::drop_database`]).
pub struct BenchDb {
    pub url: String,
    pub backend: Backend,
    db: TestDatabase,
}

impl BenchDb {
    /// A new, empty database; the runtime's and the read model's tables come with the first
    /// runtime built on it ([`BenchDb::runtime`]).
    pub async fn new(backend: Backend) -> Self {
        let db = TestDatabase::new(backend).await;
        Self {
            url: db.url.clone(),
            backend,
            db,
        }
    }

    /// A runtime on this database with a pool of `pool` connections, migrated (the runtime's
    /// tables and `example::MIGRATIONS`; a no-op after the first).
    pub async fn runtime(&self, pool: u32) -> Runtime {
        self.builder(pool).build().await.expect("runtime")
    }

    pub fn builder(&self, pool: u32) -> RuntimeBuilder {
        Runtime::builder(&self.url)
            .migrations(example::MIGRATIONS)
            .max_connections(pool)
    }

    /// The baseline's own pool of `pool` connections, configured as the runtime configures
    /// its: on SQLite WAL, `synchronous = FULL`, foreign keys on, a 30 s busy timeout.
    pub async fn baseline(&self, pool: u32) -> Baseline {
        match self.backend {
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(&self.url).expect("URL");
                Baseline::Postgres(
                    PgPoolOptions::new()
                        .max_connections(pool)
                        .connect_with(options)
                        .await
                        .expect("baseline pool"),
                )
            }
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(&self.url)
                    .expect("URL")
                    .create_if_missing(true)
                    .foreign_keys(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(30));
                Baseline::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(pool)
                        .connect_with(options)
                        .await
                        .expect("baseline pool"),
                )
            }
        }
    }

    /// Drops the Postgres database, or deletes the SQLite file.
    pub async fn drop_database(self) {
        self.db.remove().await;
    }
}

/// The server's version, for the results: `PostgreSQL 15.x` or `SQLite 3.x`.
pub async fn server_version(backend: Backend) -> String {
    let db = BenchDb::new(backend).await;
    let version = match db.baseline(1).await {
        Baseline::Postgres(pool) => sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(&pool)
            .await
            .map(|v| format!("PostgreSQL {v}")),
        Baseline::Sqlite(pool) => sqlx::query_scalar::<_, String>("SELECT sqlite_version()")
            .fetch_one(&pool)
            .await
            .map(|v| format!("SQLite {v}")),
    }
    .unwrap_or_else(|error| format!("unknown ({error})"));
    db.drop_database().await;
    version
}
