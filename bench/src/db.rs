//! The databases a run measures on: a fresh Postgres database on the server of `DATABASE_URL`
//! (dropped afterwards), or a fresh SQLite file in the temporary directory; and the runtime and
//! the baseline's pool on it, configured alike.

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Database, Runtime, RuntimeBuilder};

use crate::baseline::Baseline;

/// One database of its own, for one measurement: the runtime's [`TestDatabase`], removed
/// afterwards ([`BenchDb::drop_database`]).
pub struct BenchDb {
    pub url: String,
    db: TestDatabase,
}

impl BenchDb {
    /// A new, empty database; the runtime's and the read model's tables come with the first
    /// runtime built on it ([`BenchDb::runtime`]).
    pub async fn new(backend: Backend) -> Self {
        let db = TestDatabase::new(backend).await;
        Self {
            url: db.url.clone(),
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

    /// The baseline's own pool of `pool` connections, connected as the runtime connects its
    /// (on SQLite: WAL, `synchronous = FULL`, foreign keys on, a 30 s busy timeout).
    pub async fn baseline(&self, pool: u32) -> Baseline {
        Baseline::new(
            Database::connect(&self.url, pool)
                .await
                .expect("baseline pool"),
        )
    }

    /// Drops the Postgres database, or deletes the SQLite file.
    pub async fn drop_database(self) {
        self.db.remove().await;
    }
}

/// The server's version, for the results: `PostgreSQL 15.x` or `SQLite 3.x`.
pub async fn server_version(backend: Backend) -> String {
    let db = BenchDb::new(backend).await;
    let baseline = db.baseline(1).await;
    let version = baseline
        .server_version()
        .await
        .unwrap_or_else(|error| format!("unknown ({error})"));
    baseline.close().await;
    db.drop_database().await;
    version
}
