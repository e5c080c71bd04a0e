//! One statement shape on both backends: `query(sql).bind(..).execute()` or `.fetch_*::<Row>()`,
//! run in a projection's transaction ([`Tx`](crate::Tx)), in a transaction of your own, or on
//! the runtime's pool ([`Database`](crate::Database)).
//!
//! Write placeholders as `$1`, `$2`, ... (SQLite reads `$N` as parameter N too) and keep to the
//! SQL both speak (`INSERT ... ON CONFLICT`, `RETURNING`). For SQL of one backend only, take its
//! sqlx connection or pool (`postgres()`, `sqlite()`) and use sqlx directly.

use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Encode, FromRow, Postgres, SqlSafeStr, Sqlite, Type};

/// The database the runtime stores in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// What a row decodes into on both backends: a struct deriving `sqlx::FromRow`, or a tuple of
/// column values (`(i64, String)`). Implemented for every such type; not by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be read from a row on both backends",
    note = "derive `sqlx::FromRow` for it (every field's type must decode on Postgres and on SQLite), or read a tuple"
)]
pub trait Row: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin {}

impl<T> Row for T where T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{}

type PgQuery = sqlx::query::Query<'static, Postgres, PgArguments>;
type SqliteQuery = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

/// What a statement runs on.
pub(crate) enum Target<'c> {
    PostgresConnection(&'c mut PgConnection),
    SqliteConnection(&'c mut SqliteConnection),
    PostgresPool(&'c PgPool),
    SqlitePool(&'c SqlitePool),
}

enum Bound {
    Postgres(PgQuery),
    Sqlite(SqliteQuery),
}

/// A statement, its parameters bound one by one; run it with [`Query::execute`] or one of the
/// `fetch_*` methods.
#[must_use = "a query does nothing until it is executed or fetched"]
pub struct Query<'c> {
    target: Target<'c>,
    bound: Bound,
    /// Where the first failed statement is recorded: on Postgres it aborts a transaction, and a
    /// projection that goes on as if not must not be reported committed.
    failed: Option<&'c mut Option<String>>,
}

/// Runs `$body` with `$query` bound to the statement and `$on` to its executor, on whichever
/// backend `$self` holds.
macro_rules! on_target {
    ($self:expr, |$query:ident, $on:ident| $body:expr) => {
        match ($self.target, $self.bound) {
            (Target::PostgresConnection($on), Bound::Postgres($query)) => {
                let $on = &mut *$on;
                $body
            }
            (Target::PostgresPool(pool), Bound::Postgres($query)) => {
                match crate::telemetry::connection(pool).await {
                    Ok(mut connection) => {
                        let $on = &mut *connection;
                        $body
                    }
                    Err(error) => Err(error),
                }
            }
            (Target::SqliteConnection($on), Bound::Sqlite($query)) => {
                let $on = &mut *$on;
                $body
            }
            (Target::SqlitePool(pool), Bound::Sqlite($query)) => {
                match crate::telemetry::connection(pool).await {
                    Ok(mut connection) => {
                        let $on = &mut *connection;
                        $body
                    }
                    Err(error) => Err(error),
                }
            }
            _ => unreachable!("a query is bound for its target's backend"),
        }
    };
}

impl<'c> Query<'c> {
    pub(crate) fn new(
        target: Target<'c>,
        sql: impl SqlSafeStr,
        failed: Option<&'c mut Option<String>>,
    ) -> Self {
        let bound = match target {
            Target::PostgresConnection(_) | Target::PostgresPool(_) => {
                Bound::Postgres(sqlx::query(sql))
            }
            Target::SqliteConnection(_) | Target::SqlitePool(_) => Bound::Sqlite(sqlx::query(sql)),
        };
        Self {
            target,
            bound,
            failed,
        }
    }

    /// Binds the next `$N` parameter; the value must encode on both backends.
    pub fn bind<'v, T>(mut self, value: T) -> Self
    where
        T: Encode<'v, Postgres> + Type<Postgres> + Encode<'v, Sqlite> + Type<Sqlite>,
    {
        self.bound = match self.bound {
            Bound::Postgres(query) => Bound::Postgres(query.bind(value)),
            Bound::Sqlite(query) => Bound::Sqlite(query.bind(value)),
        };
        self
    }

    /// Runs the statement; returns the number of rows it changed.
    pub async fn execute(self) -> Result<u64, sqlx::Error> {
        let failed = self.failed;
        let done = on_target!(self, |query, on| query
            .execute(on)
            .await
            .map(|done| done.rows_affected()));
        record(failed, done)
    }

    /// Every row the statement returns.
    pub async fn fetch_all<R: Row>(self) -> Result<Vec<R>, sqlx::Error> {
        let failed = self.failed;
        let rows = on_target!(self, |query, on| query
            .fetch_all(on)
            .await
            .and_then(|rows| rows.iter().map(R::from_row).collect()));
        record(failed, rows)
    }

    /// The one row the statement returns; `sqlx::Error::RowNotFound` when there is none.
    pub async fn fetch_one<R: Row>(self) -> Result<R, sqlx::Error> {
        let failed = self.failed;
        let row = on_target!(self, |query, on| query
            .fetch_one(on)
            .await
            .and_then(|row| R::from_row(&row)));
        record(failed, row)
    }

    /// The first row the statement returns, if any.
    pub async fn fetch_optional<R: Row>(self) -> Result<Option<R>, sqlx::Error> {
        let failed = self.failed;
        let row = on_target!(self, |query, on| query
            .fetch_optional(on)
            .await
            .and_then(|row| row.as_ref().map(R::from_row).transpose()));
        record(failed, row)
    }
}

/// Notes a statement the database failed (not a row that did not decode, or was not there:
/// those leave a transaction usable).
fn record<T>(
    failed: Option<&mut Option<String>>,
    result: Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    if let (Err(error @ sqlx::Error::Database(_)), Some(failed)) = (&result, failed) {
        failed.get_or_insert_with(|| error.to_string());
    }
    result
}
