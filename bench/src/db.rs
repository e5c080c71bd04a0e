//! The databases a run measures on: a fresh Postgres database on the server of `DATABASE_URL`
//! (dropped afterwards), or a fresh SQLite file in a temporary directory; and the runtime and
//! the baseline's pool on it, configured alike.

use std::str::FromStr;
use std::time::Duration;

use entities_runtime::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use entities_runtime::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use entities_runtime::sqlx::{self, Connection, PgConnection};
use entities_runtime::{Backend, Runtime, RuntimeBuilder};

use crate::baseline::Baseline;

/// One database of its own, for one measurement.
pub struct BenchDb {
    pub url: String,
    pub backend: Backend,
    /// The Postgres server's URL and this database's name, to drop it.
    postgres: Option<(String, String)>,
    /// The SQLite file's directory, removed when this is dropped.
    _dir: Option<tempfile::TempDir>,
}

impl BenchDb {
    /// A new, empty database; the runtime's and the read model's tables come with the first
    /// runtime built on it ([`BenchDb::runtime`]).
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("entities-bench-")
                    .tempdir()
                    .expect("a temporary directory");
                Self {
                    url: format!("sqlite://{}", dir.path().join("bench.db").display()),
                    backend,
                    postgres: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let server = server_url();
                let name = format!("entities_bench_{}", uuid::Uuid::new_v4().simple());
                let mut admin = PgConnection::connect(&server)
                    .await
                    .unwrap_or_else(|error| {
                        panic!("cannot reach Postgres at DATABASE_URL: {error}")
                    });
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .unwrap_or_else(|error| panic!("cannot create database {name}: {error}"));
                let _ = admin.close().await;
                Self {
                    url: with_database(&server, &name),
                    backend,
                    postgres: Some((server, name)),
                    _dir: None,
                }
            }
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

    /// Drops the Postgres database (the SQLite directory goes with `self`).
    pub async fn drop_database(self) {
        if let Some((server, name)) = &self.postgres
            && let Ok(mut admin) = PgConnection::connect(server).await
        {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await;
            let _ = admin.close().await;
        }
    }
}

/// The server the Postgres databases are made on.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL is unset: run `scripts/bench`, which starts a throwaway Postgres")
    })
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
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
