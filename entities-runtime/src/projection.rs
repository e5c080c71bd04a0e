//! What a projection gets: the action's own transaction, on whichever backend the runtime uses.

use sqlx::postgres::{PgArguments, PgConnection};
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{Encode, Postgres, Sqlite, Type};

/// The database the runtime stores in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The open transaction of the action being persisted. Everything a projection writes through it
/// commits or rolls back with the action and its events.
///
/// [`Tx::query`] runs the same SQL on both backends: write placeholders as `$1`, `$2`, ... (SQLite
/// reads `$N` as parameter N too) and keep to the SQL both speak (`INSERT ... ON CONFLICT`,
/// `RETURNING`). For backend-specific SQL, take the connection with [`Tx::postgres`] or
/// [`Tx::sqlite`] and use sqlx directly.
pub struct Tx<'c> {
    conn: Conn<'c>,
    /// The first statement run through [`Tx::query`] that failed: on Postgres it aborted the
    /// transaction, so a projection that went on as if not must not be reported committed.
    failed: Option<String>,
}

enum Conn<'c> {
    Postgres(&'c mut PgConnection),
    Sqlite(&'c mut SqliteConnection),
}

impl<'c> Tx<'c> {
    pub(crate) fn postgres_tx(conn: &'c mut PgConnection) -> Self {
        Self {
            conn: Conn::Postgres(conn),
            failed: None,
        }
    }

    pub(crate) fn sqlite_tx(conn: &'c mut SqliteConnection) -> Self {
        Self {
            conn: Conn::Sqlite(conn),
            failed: None,
        }
    }

    pub fn backend(&self) -> Backend {
        match self.conn {
            Conn::Postgres(_) => Backend::Postgres,
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// A statement to run in this transaction; bind its parameters, then [`Query::execute`].
    pub fn query(&mut self, sql: &'static str) -> Query<'_> {
        match &mut self.conn {
            Conn::Postgres(conn) => Query::Postgres(conn, sqlx::query(sql), &mut self.failed),
            Conn::Sqlite(conn) => Query::Sqlite(conn, sqlx::query(sql), &mut self.failed),
        }
    }

    /// On Postgres, the failure of a statement run through [`Tx::query`] that the projection
    /// did not return: the transaction is aborted and would not commit. (On SQLite a failed
    /// statement leaves the transaction usable.)
    pub(crate) fn aborted(&self) -> Option<&str> {
        match self.conn {
            Conn::Postgres(_) => self.failed.as_deref(),
            Conn::Sqlite(_) => None,
        }
    }

    /// The Postgres connection, when the runtime runs on Postgres.
    pub fn postgres(&mut self) -> Option<&mut PgConnection> {
        match &mut self.conn {
            Conn::Postgres(conn) => Some(conn),
            Conn::Sqlite(_) => None,
        }
    }

    /// The SQLite connection, when the runtime runs on SQLite.
    pub fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        match &mut self.conn {
            Conn::Sqlite(conn) => Some(conn),
            Conn::Postgres(_) => None,
        }
    }
}

/// A statement bound for one backend; built by [`Tx::query`].
pub enum Query<'t> {
    #[doc(hidden)]
    Postgres(
        &'t mut PgConnection,
        sqlx::query::Query<'static, Postgres, PgArguments>,
        &'t mut Option<String>,
    ),
    #[doc(hidden)]
    Sqlite(
        &'t mut SqliteConnection,
        sqlx::query::Query<'static, Sqlite, SqliteArguments>,
        &'t mut Option<String>,
    ),
}

impl<'t> Query<'t> {
    /// Binds the next `$N` parameter; the value must encode on both backends.
    pub fn bind<'v, T>(self, value: T) -> Self
    where
        T: Encode<'v, Postgres> + Type<Postgres> + Encode<'v, Sqlite> + Type<Sqlite>,
    {
        match self {
            Query::Postgres(conn, query, failed) => {
                Query::Postgres(conn, query.bind(value), failed)
            }
            Query::Sqlite(conn, query, failed) => Query::Sqlite(conn, query.bind(value), failed),
        }
    }

    /// Runs the statement and returns the number of rows it changed.
    pub async fn execute(self) -> Result<u64, sqlx::Error> {
        let (done, failed) = match self {
            Query::Postgres(conn, query, failed) => (
                query
                    .execute(&mut *conn)
                    .await
                    .map(|done| done.rows_affected()),
                failed,
            ),
            Query::Sqlite(conn, query, failed) => (
                query
                    .execute(&mut *conn)
                    .await
                    .map(|done| done.rows_affected()),
                failed,
            ),
        };
        if let Err(error) = &done {
            failed.get_or_insert_with(|| error.to_string());
        }
        done
    }
}

/// Why a projection refused an event: the whole action rolls back either way.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError<D> {
    /// A domain rule the projection checks (a name already taken, say), in the entity's own error type.
    #[error("{0}")]
    Rejected(D),
    /// The read model's SQL failed; a constraint violation becomes `Error::Constraint`.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Whether `error` is a unique-constraint violation: what a projection checks to turn a taken
/// name into its own domain error.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}
