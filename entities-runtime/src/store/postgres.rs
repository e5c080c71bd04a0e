//! The Postgres SQL of the store (schema `entities`).

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool};

use super::{Append, EntityRow, HistoryRow, StoredEvent};
use crate::entity::{EntityId, Version};

pub(super) async fn entity_row(
    pool: &PgPool,
    id: EntityId,
) -> Result<Option<EntityRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT type, version, snapshot::text, snapshot_version FROM entities.entities WHERE id = $1",
    )
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
    pool: &PgPool,
    id: EntityId,
    version: Version,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT entity_version, type, payload::text FROM entities.entity_events \
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
    pool: &PgPool,
    id: EntityId,
    version: Version,
    snapshot: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE entities.entities SET snapshot = $3::jsonb, snapshot_version = $2 \
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
    conn: &mut PgConnection,
    entity_type: &str,
) -> Result<EntityId, sqlx::Error> {
    sqlx::query_scalar("INSERT INTO entities.entities (type, version) VALUES ($1, 0) RETURNING id")
        .bind(entity_type)
        .fetch_one(conn)
        .await
}

/// One statement, one round trip: the version check and bump, the action row and every event
/// row. When the version check matches no row, `bumped` is empty, so nothing is inserted and
/// the statement returns no row.
const APPEND: &str = "\
WITH bumped AS (
    UPDATE entities.entities SET version = $3, updated_at = now()
    WHERE id = $1 AND version = $2
    RETURNING id
), action AS (
    INSERT INTO entities.entity_actions
        (entity_id, entity_type, type, payload, created_by, request_id, correlation_id)
    SELECT id, $4, $5, $6::jsonb, $7, $8, $9 FROM bumped
    RETURNING id
), events AS (
    INSERT INTO entities.entity_events
        (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id)
    SELECT $1, $4, $2 + e.n, e.type, e.payload::jsonb, action.id, $7, $8, $9
    FROM action, unnest($10::text[], $11::text[]) WITH ORDINALITY AS e(type, payload, n)
)
SELECT id FROM action";

pub(super) async fn append(
    conn: &mut PgConnection,
    append: &Append<'_>,
) -> Result<bool, sqlx::Error> {
    let new_version = append.expected_version + append.event_types.len() as Version;
    let action_id: Option<i64> = sqlx::query_scalar(APPEND)
        .bind(append.entity_id)
        .bind(append.expected_version)
        .bind(new_version)
        .bind(append.entity_type)
        .bind(append.action_type)
        .bind(append.action_payload)
        .bind(&append.ctx.user_id)
        .bind(&append.ctx.request_id)
        .bind(&append.ctx.correlation_id)
        .bind(append.event_types)
        .bind(append.event_payloads)
        .fetch_optional(conn)
        .await?;
    Ok(action_id.is_some())
}

pub(super) async fn history(
    pool: &PgPool,
    entity_type: &str,
    id: EntityId,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT e.entity_version, e.type, e.payload::text, e.action_id, a.type, e.created_by, \
                e.request_id, e.correlation_id, \
                to_char(e.inserted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
         FROM entities.entity_events e JOIN entities.entity_actions a ON a.id = e.action_id \
         WHERE e.entity_id = $1 AND e.entity_type = $2 ORDER BY e.entity_version",
    )
    .bind(id)
    .bind(entity_type)
    .fetch_all(pool)
    .await
}
