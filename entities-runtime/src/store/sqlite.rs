//! The SQLite SQL of the store: the same tables as Postgres, JSON kept as text.

use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqlitePool};

use super::{Append, EntityRow, HistoryRow, StoredEvent};
use crate::entity::{EntityId, Version};

pub(super) async fn entity_row(
    pool: &SqlitePool,
    id: EntityId,
) -> Result<Option<EntityRow>, sqlx::Error> {
    let row =
        sqlx::query("SELECT type, version, snapshot, snapshot_version FROM entities WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.map(|row| {
        Ok(EntityRow {
            entity_type: row.try_get(0)?,
            version: row.try_get(1)?,
            snapshot: row.try_get(2)?,
            snapshot_version: row.try_get(3)?,
        })
    })
    .transpose()
}

pub(super) async fn events_after(
    pool: &SqlitePool,
    id: EntityId,
    version: Version,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT entity_version, type, payload FROM entity_events \
         WHERE entity_id = $1 AND entity_version > $2 ORDER BY entity_version",
    )
    .bind(id)
    .bind(version)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredEvent {
                version: row.try_get(0)?,
                event_type: row.try_get(1)?,
                payload: row.try_get(2)?,
            })
        })
        .collect()
}

pub(super) async fn save_snapshot(
    pool: &SqlitePool,
    id: EntityId,
    version: Version,
    snapshot: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE entities SET snapshot = $3, snapshot_version = $2 \
         WHERE id = $1 AND version >= $2 AND (snapshot_version IS NULL OR snapshot_version < $2)",
    )
    .bind(id)
    .bind(version)
    .bind(snapshot)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn insert_entity(
    conn: &mut SqliteConnection,
    entity_type: &str,
) -> Result<EntityId, sqlx::Error> {
    sqlx::query_scalar("INSERT INTO entities (type, version) VALUES ($1, 0) RETURNING id")
        .bind(entity_type)
        .fetch_one(conn)
        .await
}

/// SQLite has no data-modifying CTEs, so the version check is its own statement; every
/// statement here is an in-process call on a prepared statement, not a round trip.
pub(super) async fn append(
    conn: &mut SqliteConnection,
    append: &Append<'_>,
) -> Result<bool, sqlx::Error> {
    let new_version = append.expected_version + append.event_types.len() as Version;
    let bumped = sqlx::query(
        "UPDATE entities SET version = $3, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
         WHERE id = $1 AND version = $2",
    )
    .bind(append.entity_id)
    .bind(append.expected_version)
    .bind(new_version)
    .execute(&mut *conn)
    .await?;
    if bumped.rows_affected() != 1 {
        return Ok(false);
    }
    let action_id: i64 = sqlx::query_scalar(
        "INSERT INTO entity_actions (entity_id, entity_type, type, payload, created_by, request_id, correlation_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(append.entity_id)
    .bind(append.entity_type)
    .bind(append.action_type)
    .bind(append.action_payload)
    .bind(&append.ctx.user_id)
    .bind(&append.ctx.request_id)
    .bind(&append.ctx.correlation_id)
    .fetch_one(&mut *conn)
    .await?;
    for (n, (event_type, payload)) in append
        .event_types
        .iter()
        .zip(append.event_payloads)
        .enumerate()
    {
        sqlx::query(
            "INSERT INTO entity_events \
             (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(append.entity_id)
        .bind(append.entity_type)
        .bind(append.expected_version + n as Version + 1)
        .bind(*event_type)
        .bind(payload)
        .bind(action_id)
        .bind(&append.ctx.user_id)
        .bind(&append.ctx.request_id)
        .bind(&append.ctx.correlation_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

pub(super) async fn history(
    pool: &SqlitePool,
    entity_type: &str,
    id: EntityId,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT e.entity_version, e.type, e.payload, e.action_id, a.type, e.created_by, \
                e.request_id, e.correlation_id, e.inserted_at \
         FROM entity_events e JOIN entity_actions a ON a.id = e.action_id \
         WHERE e.entity_id = $1 AND e.entity_type = $2 ORDER BY e.entity_version",
    )
    .bind(id)
    .bind(entity_type)
    .fetch_all(pool)
    .await
}
