//! What a projection gets: the action's own transaction, on whichever backend the runtime uses.

use sqlx::SqlSafeStr;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;

use crate::sql::{Backend, Query, Target};

/// The open transaction of the action being persisted. Everything a projection writes through it
/// commits or rolls back with the action and its events.
///
/// [`Tx::query`] runs the same SQL on both backends (see [`Query`]). For backend-specific SQL,
/// take the connection with [`Tx::postgres`] or [`Tx::sqlite`] and use sqlx directly.
pub struct Tx<'c> {
    conn: Conn<'c>,
    /// The first statement run through [`Tx::query`] that the database failed: on Postgres it
    /// aborted the transaction, so a projection that went on as if not must not be reported
    /// committed.
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

    /// A statement to run in this transaction: bind its parameters, then execute or fetch.
    pub fn query(&mut self, sql: impl SqlSafeStr) -> Query<'_> {
        let target = match &mut self.conn {
            Conn::Postgres(conn) => Target::PostgresConnection(conn),
            Conn::Sqlite(conn) => Target::SqliteConnection(conn),
        };
        Query::new(target, sql, Some(&mut self.failed))
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
