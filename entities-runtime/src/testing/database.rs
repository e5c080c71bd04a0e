//! Real databases for tests: a fresh SQLite file, or a fresh database on the Postgres server
//! that `DATABASE_URL` names.

use std::path::PathBuf;

use sqlx::{Connection, PgConnection};

use crate::sql::Backend;

/// A database of its own for one test, on a real server or file, removed when this is dropped:
/// the SQLite file deleted, the Postgres database dropped (its connections ended), so that a
/// long-lived server does not collect them.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    file: Option<PathBuf>,
    /// The Postgres server's URL and this database's name.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => Self::postgres().await,
            Backend::Sqlite => Self::sqlite(),
        }
    }

    /// A new SQLite file in the temporary directory.
    pub fn sqlite() -> Self {
        let file = std::env::temp_dir().join(format!(
            "entities-test-{}.db",
            uuid::Uuid::new_v4().simple()
        ));
        Self {
            url: format!("sqlite://{}", file.display()),
            backend: Backend::Sqlite,
            file: Some(file),
            postgres: None,
        }
    }

    /// A new database on the server of `DATABASE_URL`.
    ///
    /// # Panics
    /// When `DATABASE_URL` is unset or its server does not answer: a Postgres test must fail,
    /// never skip. `scripts/test` starts a throwaway server and sets it.
    pub async fn postgres() -> Self {
        let server = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            panic!("DATABASE_URL is unset: `scripts/test` and `scripts/bench` start a throwaway Postgres and set it")
        });
        let name = format!("entities_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server)
            .await
            .unwrap_or_else(|error| panic!("cannot reach Postgres at DATABASE_URL: {error}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("cannot create test database {name}: {error}"));
        let _ = admin.close().await;
        Self {
            url: with_database(&server, &name),
            backend: Backend::Postgres,
            file: None,
            postgres: Some((server, name)),
        }
    }

    /// Removes the database now, as dropping it would, without blocking a thread of the
    /// caller's async runtime.
    pub async fn remove(mut self) {
        if let Some((server, name)) = self.postgres.take() {
            drop_database(&server, &name).await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
        if let Some((server, name)) = self.postgres.take() {
            // `drop` cannot await, and usually runs on a thread of the test's async runtime,
            // which must not block on another: a thread and a runtime of its own do it.
            let dropped = std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    runtime.block_on(drop_database(&server, &name));
                }
            });
            let _ = dropped.join();
        }
    }
}

/// Drops database `name` of `server`, ending its connections; a server that is away is left
/// as it is.
async fn drop_database(server: &str, name: &str) {
    if let Ok(mut admin) = PgConnection::connect(server).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
        let _ = admin.close().await;
    }
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

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced_keeping_server_and_options() {
        assert_eq!(
            with_database("postgres://u@h:5/postgres", "t"),
            "postgres://u@h:5/t"
        );
        assert_eq!(with_database("postgres://u@h:5", "t"), "postgres://u@h:5/t");
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "t"),
            "postgres://u@h/t?sslmode=disable"
        );
    }
}
