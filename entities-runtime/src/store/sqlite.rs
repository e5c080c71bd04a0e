//! The SQLite SQL of the store: the same tables as Postgres, JSON kept as text.

use sqlx::sqlite::SqliteConnection;

use super::EntityWrite;
use crate::entity::{EntityId, Version};

pub(super) const ENTITY_ROW: &str = "SELECT e.type, e.version, s.snapshot, s.version \
     FROM entities e LEFT JOIN entity_snapshots s ON s.entity_id = e.id WHERE e.id = $1";

pub(super) const EVENTS_AFTER: &str = "SELECT entity_version, type, payload FROM entity_events \
     WHERE entity_id = $1 AND entity_version > $2 ORDER BY entity_version";

pub(super) const SAVE_SNAPSHOT: &str = "INSERT INTO entity_snapshots AS s (entity_id, version, snapshot) \
     SELECT id, $2, $3 FROM entities WHERE id = $1 AND version >= $2 \
     ON CONFLICT (entity_id) DO UPDATE SET version = excluded.version, snapshot = excluded.snapshot, \
     taken_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE s.version <= excluded.version";

pub(super) const INSERT_ENTITY: &str =
    "INSERT INTO entities (type, version) VALUES ($1, 0) RETURNING id";

pub(super) const HISTORY: &str = "SELECT e.entity_version, e.type, e.payload, e.action_id, a.type, e.created_by, \
            e.request_id, e.correlation_id, e.inserted_at \
     FROM entity_events e JOIN entity_actions a ON a.id = e.action_id \
     WHERE e.entity_id = $1 AND e.entity_type = $2 ORDER BY e.entity_version";

/// SQLite has no data-modifying CTEs, so each row is its own statement; every statement here
/// is an in-process call on a prepared statement, not a round trip.
pub(super) async fn append(
    conn: &mut SqliteConnection,
    writes: &[&EntityWrite],
) -> Result<Vec<bool>, sqlx::Error> {
    let mut appended = Vec::with_capacity(writes.len());
    for write in writes {
        appended.push(append_one(conn, write).await?);
    }
    Ok(appended)
}

async fn append_one(conn: &mut SqliteConnection, write: &EntityWrite) -> Result<bool, sqlx::Error> {
    let bumped = sqlx::query(
        "UPDATE entities SET version = $3, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
         WHERE id = $1 AND version = $2",
    )
    .bind(write.entity_id)
    .bind(write.expected_version)
    .bind(write.new_version())
    .execute(&mut *conn)
    .await?;
    if bumped.rows_affected() != 1 {
        return Ok(false);
    }
    let mut version = write.expected_version;
    for (action, after) in write.actions.iter().zip(write.versions_after()) {
        let action_id: i64 = sqlx::query_scalar(
            "INSERT INTO entity_actions \
             (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(write.entity_id)
        .bind(write.entity_type)
        .bind(after)
        .bind(action.action_type)
        .bind(&action.payload)
        .bind(&action.ctx.user_id)
        .bind(&action.ctx.request_id)
        .bind(&action.ctx.correlation_id)
        .fetch_one(&mut *conn)
        .await?;
        for (event_type, payload) in action.event_types.iter().zip(&action.event_payloads) {
            version += 1;
            sqlx::query(
                "INSERT INTO entity_events \
                 (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(write.entity_id)
            .bind(write.entity_type)
            .bind(version)
            .bind(*event_type)
            .bind(payload)
            .bind(action_id)
            .bind(&action.ctx.user_id)
            .bind(&action.ctx.request_id)
            .bind(&action.ctx.correlation_id)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(true)
}

pub(super) async fn truncate(
    conn: &mut SqliteConnection,
    entity_id: EntityId,
    version: Version,
) -> Result<(), sqlx::Error> {
    for sql in [
        "DELETE FROM entity_events WHERE entity_id = $1 AND entity_version > $2",
        "DELETE FROM entity_actions WHERE entity_id = $1 AND entity_version > $2",
        "UPDATE entities SET version = $2 WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(entity_id)
            .bind(version)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
