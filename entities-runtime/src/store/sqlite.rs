//! The SQLite SQL of the store: the same tables as Postgres, JSON kept as text.

use sqlx::sqlite::SqliteConnection;

use super::{EntityWrite, KeyRow};
use crate::entity::{EntityId, Version};

pub(super) const ENTITY_ROW: &str = "SELECT e.type, e.version, s.snapshot, s.version, s.shape \
     FROM entities e LEFT JOIN entity_snapshots s ON s.entity_id = e.id WHERE e.id = $1";

pub(super) const EVENTS_AFTER: &str = "SELECT entity_version, type, payload_version, payload, action_id FROM entity_events \
     WHERE entity_id = $1 AND entity_version > $2 AND entity_version <= $3 ORDER BY entity_version";

pub(super) const IDEMPOTENCY_KEY: &str =
    "SELECT fingerprint, outcome FROM idempotency_keys WHERE user_id = $1 AND key = $2";

pub(super) const DELETE_IDEMPOTENCY_KEY: &str =
    "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2";

/// `$1`: the retention, in seconds.
pub(super) const DELETE_EXPIRED_KEYS: &str = "DELETE FROM idempotency_keys \
     WHERE created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || $1 || ' seconds')";

/// One statement per key: SQLite runs one writer at a time, so a key is either there or not.
pub(super) async fn insert_keys(
    conn: &mut SqliteConnection,
    keys: &[&KeyRow],
) -> Result<Vec<bool>, sqlx::Error> {
    let mut inserted = Vec::with_capacity(keys.len());
    for key in keys {
        let done = sqlx::query(
            "INSERT INTO idempotency_keys (user_id, key, fingerprint, outcome) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&key.user_id)
        .bind(&key.key)
        .bind(&key.fingerprint)
        .bind(&key.outcome)
        .execute(&mut *conn)
        .await?;
        inserted.push(done.rows_affected() == 1);
    }
    Ok(inserted)
}

pub(super) const SAVE_SNAPSHOT: &str = "INSERT INTO entity_snapshots AS s (entity_id, version, snapshot, shape) \
     SELECT id, $2, $3, $4 FROM entities WHERE id = $1 AND version >= $2 \
     ON CONFLICT (entity_id) DO UPDATE SET version = excluded.version, snapshot = excluded.snapshot, \
     shape = excluded.shape, \
     taken_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE s.version <= excluded.version";

/// How many ids one reservation takes.
pub(super) const ID_BLOCK: i64 = 32;

/// Reserves `$1` ids after the greatest ever given out, which `AUTOINCREMENT` keeps in
/// `sqlite_sequence` (whose row for `entities` appears with its first row: made here when
/// missing, from the greatest id there is, should the row have been deleted). An entity
/// inserted with a reserved id leaves the counter where it is.
pub(super) const RESERVE_IDS: &str = "\
INSERT INTO sqlite_sequence (name, seq) SELECT 'entities', (SELECT coalesce(max(id), 0) FROM entities) \
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'entities');
UPDATE sqlite_sequence SET seq = seq + $1 WHERE name = 'entities' RETURNING seq";

/// The event log after position `$2`, at most `$3` rows, in position order. SQLite runs one
/// writer at a time and its row ids never go back (`AUTOINCREMENT`), so position order is commit
/// order and no later commit can take a position behind a reader. `$1` (the transaction id,
/// always 0 here) keeps the parameters in step with Postgres; `$4`: a JSON array of the entity
/// types to read, or all when empty.
///
/// These statements name `id`, not `position`: the planner knows only the row id as the primary
/// key, and a condition on the generated `position` column scans and sorts the whole log.
pub(super) const READ_LOG: &str = "SELECT '0', e.id, e.entity_type, e.entity_id, e.entity_version, \
            e.type, e.payload_version, e.payload, e.action_id, a.type, e.created_by, e.request_id, e.correlation_id, \
            e.inserted_at \
     FROM entity_events e JOIN entity_actions a ON a.id = e.action_id \
     WHERE $1 IS NOT NULL AND e.id > $2 \
       AND (json_array_length($4) = 0 OR e.entity_type IN (SELECT value FROM json_each($4))) \
     ORDER BY e.id LIMIT $3";

/// The last event of the log of the types `$1` (a JSON array; all when empty).
pub(super) const LOG_HEAD: &str = "SELECT '0', id FROM entity_events \
     WHERE json_array_length($1) = 0 OR entity_type IN (SELECT value FROM json_each($1)) \
     ORDER BY id DESC LIMIT 1";

/// How many events `READ_LOG` would read after position `$2`, of the types `$3` (a JSON array;
/// all when empty). `$1`: as in `READ_LOG`.
pub(super) const COUNT_AFTER: &str = "SELECT count(*) FROM entity_events \
     WHERE $1 IS NOT NULL AND id > $2 \
       AND (json_array_length($3) = 0 OR entity_type IN (SELECT value FROM json_each($3)))";

/// The entities with events after position `$1`, each with its version and its last event's
/// position: what a runtime catches up when another process wrote to the file. `NOT INDEXED`:
/// else the planner reads the whole (entity, version) index to group without sorting.
pub(super) const CHANGED_SINCE: &str = "SELECT entity_id, max(entity_version), max(id) FROM entity_events NOT INDEXED \
     WHERE id > $1 GROUP BY entity_id";

pub(super) const HISTORY: &str = "SELECT e.entity_version, e.type, e.payload_version, e.payload, e.action_id, a.type, e.created_by, \
            e.request_id, e.correlation_id, e.inserted_at \
     FROM entity_events e JOIN entity_actions a ON a.id = e.action_id \
     WHERE e.entity_id = $1 AND e.entity_type = $2 AND e.entity_version > $3 \
     ORDER BY e.entity_version LIMIT $4";

/// One call per entity of the batch: its version check and bump, its action rows and its event
/// rows, as one multi-statement query. sqlx runs a SQLite connection on a thread of its own, so
/// each call is a round trip to that thread, which costs more than the statements themselves.
///
/// SQLite has no data-modifying CTEs; instead every insert runs only if the statement before it
/// changed rows (`changes()`), so a failed version check (no row updated) inserts nothing.
pub(super) async fn append(
    conn: &mut SqliteConnection,
    writes: &[&EntityWrite],
) -> Result<Vec<bool>, sqlx::Error> {
    let mut appended = Vec::with_capacity(writes.len());
    for write in writes {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(append_sql(write)))
            .bind(write.entity_id)
            .bind(write.expected_version)
            .bind(write.new_version())
            .bind(write.entity_type);
        let mut version = write.expected_version;
        for (action, after) in write.actions.iter().zip(write.versions_after()) {
            let (user_id, request_id, correlation_id) = action.ctx.stored_ids();
            query = query
                .bind(after)
                .bind(action.action_type)
                .bind(&action.payload)
                .bind(user_id)
                .bind(request_id)
                .bind(correlation_id);
            for event in &action.events {
                version += 1;
                query = query
                    .bind(version)
                    .bind(event.event_type)
                    .bind(&event.payload)
                    .bind(event.payload_version);
            }
        }
        appended.push(query.execute(&mut *conn).await?.rows_affected() > 0);
    }
    Ok(appended)
}

/// The statements of [`append`] for a chain of this shape (how many actions, how many events
/// each); sqlx keeps each shape prepared. `$N` parameters are bound by number in every
/// statement: 1-4 are the entity's, then 6 per action and 4 per event, in order.
fn append_sql(write: &EntityWrite) -> String {
    use std::fmt::Write;
    let mut sql = String::from(if write.creates {
        "INSERT INTO entities (id, type, version) VALUES ($1, $4, $3) ON CONFLICT (id) DO NOTHING;\n"
    } else {
        "UPDATE entities SET version = $3, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
         WHERE id = $1 AND version = $2;\n"
    });
    let mut next = 5;
    for action in &write.actions {
        let a = next;
        next += 6;
        let _ = writeln!(
            sql,
            "INSERT INTO entity_actions \
             (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id) \
             SELECT $1, $4, ${a}, ${}, ${}, ${}, ${}, ${} WHERE changes() > 0;",
            a + 1,
            a + 2,
            a + 3,
            a + 4,
            a + 5,
        );
        for _ in &action.events {
            let e = next;
            next += 4;
            let _ = writeln!(
                sql,
                "INSERT INTO entity_events \
                 (entity_id, entity_type, entity_version, type, payload, payload_version, action_id, created_by, request_id, correlation_id) \
                 SELECT $1, $4, ${e}, ${}, ${}, ${}, \
                 (SELECT id FROM entity_actions WHERE entity_id = $1 AND entity_version = ${a}), ${}, ${}, ${} \
                 WHERE changes() > 0;",
                e + 1,
                e + 2,
                e + 3,
                a + 3,
                a + 4,
                a + 5,
            );
        }
    }
    sql
}

pub(super) async fn truncate(
    conn: &mut SqliteConnection,
    entity_id: EntityId,
    version: Version,
    uncreate: bool,
) -> Result<(), sqlx::Error> {
    let entity = if uncreate {
        "DELETE FROM entities WHERE id = $1"
    } else {
        "UPDATE entities SET version = $2 WHERE id = $1"
    };
    for sql in [
        "DELETE FROM entity_events WHERE entity_id = $1 AND entity_version > $2",
        "DELETE FROM entity_actions WHERE entity_id = $1 AND entity_version > $2",
        entity,
    ] {
        sqlx::query(sql)
            .bind(entity_id)
            .bind(version)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// The plan of `statement`, its parameters bound as `parameters` says: `t` a transaction id
    /// (text), `p` a position or a limit, `j` a JSON array of entity types.
    async fn plan(store: &Store, statement: &str, parameters: &str) -> String {
        let Store::Sqlite(pool) = store else {
            unreachable!("a SQLite store")
        };
        let explain = format!("EXPLAIN QUERY PLAN {statement}");
        let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(explain));
        for parameter in parameters.chars() {
            query = match parameter {
                't' => query.bind("0"),
                'p' => query.bind(10_i64),
                _ => query.bind(r#"["counter"]"#),
            };
        }
        let rows = query.fetch_all(pool).await.unwrap();
        rows.into_iter()
            .map(|(.., detail)| detail)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Each page of a log read seeks to its place by the row id and reads in its order: a plan
    /// that scans or sorts the whole log makes a replay cost the square of the log's length.
    #[tokio::test]
    async fn log_reads_seek_by_the_row_id() {
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        store.migrate(&[]).await.unwrap();
        for (statement, parameters) in [
            (READ_LOG, "tppj"),
            (COUNT_AFTER, "tpj"),
            (CHANGED_SINCE, "p"),
        ] {
            let plan = plan(&store, statement, parameters).await;
            assert!(
                plan.contains("USING INTEGER PRIMARY KEY (rowid>?)"),
                "{statement}\n{plan}"
            );
        }
        for (statement, parameters) in [(READ_LOG, "tppj"), (LOG_HEAD, "j")] {
            let plan = plan(&store, statement, parameters).await;
            assert!(!plan.contains("ORDER BY"), "sorted: {statement}\n{plan}");
        }
    }
}
