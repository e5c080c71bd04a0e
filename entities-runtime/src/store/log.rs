//! Reading the event log: the SQL of each backend is in its module; this one runs it on whatever
//! the caller reads through (the pool, or a subscription's own connection) and decodes the rows.

use super::{EventRecord, HistoryRow, postgres, record, sqlite};
use crate::entity::{EntityId, PayloadVersion, Version};
use crate::sql::Target;

/// Where a reader of the log stands: the last event it read. Ordered as the log is; keep it
/// (both numbers) as a subscriber's checkpoint. `transaction` is the Postgres transaction id
/// that wrote the event (always 0 on SQLite).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct LogPosition {
    pub transaction: u64,
    pub position: i64,
}

impl LogPosition {
    /// Before the first event.
    pub const START: LogPosition = LogPosition {
        transaction: 0,
        position: 0,
    };
}

/// One event of the log: where it stands, whose it is, and the event with what caused it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoggedEvent {
    pub at: LogPosition,
    pub entity_type: String,
    pub entity_id: EntityId,
    pub record: EventRecord,
}

impl LogPosition {
    /// The transaction id as Postgres reads it back (`$1::text::xid8`).
    fn transaction_text(&self) -> String {
        self.transaction.to_string()
    }

    fn parse(transaction: &str, position: i64) -> Result<Self, sqlx::Error> {
        let transaction = transaction
            .parse()
            .map_err(|error: std::num::ParseIntError| sqlx::Error::Decode(Box::new(error)))?;
        Ok(Self {
            transaction,
            position,
        })
    }
}

/// One event of the log as stored, its payload still text: decoded into a [`LoggedEvent`], or
/// straight into an entity's event enum by a typed reader.
///
/// `pub` only to appear in the sealed trait that reads it (in a private module: unnameable).
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub(crate) at: LogPosition,
    pub(crate) entity_type: String,
    pub(crate) entity_id: EntityId,
    pub(crate) row: HistoryRow,
}

impl RawEvent {
    pub fn version(&self) -> Version {
        self.row.0
    }

    pub fn event_type(&self) -> &str {
        &self.row.1
    }

    pub fn payload_version(&self) -> PayloadVersion {
        self.row.2
    }

    pub fn payload(&self) -> &str {
        &self.row.3
    }

    pub fn into_logged(self) -> Result<LoggedEvent, sqlx::Error> {
        Ok(LoggedEvent {
            at: self.at,
            entity_type: self.entity_type,
            entity_id: self.entity_id,
            record: record(self.row)?,
        })
    }
}

/// A log row as both backends return it: the transaction id (text), the position, the entity's
/// type and id, then the columns of [`EventRecord`], payload as text.
type LogRow = (
    String,
    i64,
    String,
    EntityId,
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

/// The entity types as SQLite's statements take them: a JSON array.
fn json_types(entity_types: &[&str]) -> Result<String, sqlx::Error> {
    serde_json::to_string(entity_types).map_err(|error| sqlx::Error::Encode(Box::new(error)))
}

/// Runs `$query` (built by `$build` for the backend of `$target`) on whatever `$target` is, as
/// `$fetch`.
macro_rules! run_on {
    ($target:expr, $build:ident, $fetch:ident) => {
        match $target {
            Target::PostgresConnection(conn) => $build!(postgres).$fetch(&mut *conn).await,
            Target::PostgresPool(pool) => {
                let mut connection = crate::telemetry::connection(pool).await?;
                $build!(postgres).$fetch(&mut *connection).await
            }
            Target::SqliteConnection(conn) => $build!(sqlite).$fetch(&mut *conn).await,
            Target::SqlitePool(pool) => {
                let mut connection = crate::telemetry::connection(pool).await?;
                $build!(sqlite).$fetch(&mut *connection).await
            }
        }
    };
}

/// Up to `limit` events of the log after `after`, of `entity_types` (all when empty), in log
/// order (see the runtime's `log` module).
pub(crate) async fn read_log(
    target: Target<'_>,
    after: LogPosition,
    limit: usize,
    entity_types: &[&str],
) -> Result<Vec<RawEvent>, sqlx::Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let types = json_types(entity_types)?;
    macro_rules! build {
        (postgres) => {
            sqlx::query_as::<_, LogRow>(postgres::READ_LOG)
                .bind(after.transaction_text())
                .bind(after.position)
                .bind(limit)
                .bind(entity_types)
        };
        (sqlite) => {
            sqlx::query_as::<_, LogRow>(sqlite::READ_LOG)
                .bind(after.transaction_text())
                .bind(after.position)
                .bind(limit)
                .bind(&types)
        };
    }
    let rows = run_on!(target, build, fetch_all)?;
    rows.into_iter()
        .map(|row| {
            let (transaction, position, entity_type, entity_id, v, t, pv, p, a, at, by, r, c, i) =
                row;
            Ok(RawEvent {
                at: LogPosition::parse(&transaction, position)?,
                entity_type,
                entity_id,
                row: (v, t, pv, p, a, at, by, r, c, i),
            })
        })
        .collect()
}

/// The last event of `entity_types` (all when empty) a reader can read now:
/// [`LogPosition::START`] when there is none.
pub(crate) async fn head(
    target: Target<'_>,
    entity_types: &[&str],
) -> Result<LogPosition, sqlx::Error> {
    let types = json_types(entity_types)?;
    macro_rules! build {
        (postgres) => {
            sqlx::query_as::<_, (String, i64)>(postgres::LOG_HEAD).bind(entity_types)
        };
        (sqlite) => {
            sqlx::query_as::<_, (String, i64)>(sqlite::LOG_HEAD).bind(&types)
        };
    }
    match run_on!(target, build, fetch_optional)? {
        Some((transaction, position)) => LogPosition::parse(&transaction, position),
        None => Ok(LogPosition::START),
    }
}

/// How many events of `entity_types` (all when empty) a reader can read now after `after`.
pub(crate) async fn count_after(
    target: Target<'_>,
    after: LogPosition,
    entity_types: &[&str],
) -> Result<u64, sqlx::Error> {
    let types = json_types(entity_types)?;
    macro_rules! build {
        (postgres) => {
            sqlx::query_scalar::<_, i64>(postgres::COUNT_AFTER)
                .bind(after.transaction_text())
                .bind(after.position)
                .bind(entity_types)
        };
        (sqlite) => {
            sqlx::query_scalar::<_, i64>(sqlite::COUNT_AFTER)
                .bind(after.transaction_text())
                .bind(after.position)
                .bind(&types)
        };
    }
    Ok(run_on!(target, build, fetch_one)?.max(0) as u64)
}

/// SQLite only: the entities with events after `position`, each with its version and its last
/// event's position.
pub(crate) async fn changed_since(
    pool: &sqlx::SqlitePool,
    position: i64,
) -> Result<Vec<(EntityId, Version, i64)>, sqlx::Error> {
    sqlx::query_as(sqlite::CHANGED_SINCE)
        .bind(position)
        .fetch_all(pool)
        .await
}
