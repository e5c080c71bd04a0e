//! The Postgres SQL of the store (schema `entities`).

use sqlx::postgres::PgConnection;

use super::{EntityWrite, KeyRow};
use crate::entity::{EntityId, PayloadVersion, Version};

pub(super) const ENTITY_ROW: &str = "SELECT e.type, e.version, s.snapshot::text, s.version, s.shape \
     FROM entities.entities e LEFT JOIN entities.entity_snapshots s ON s.entity_id = e.id WHERE e.id = $1";

pub(super) const EVENTS_AFTER: &str = "SELECT entity_version, type, payload_version, payload::text, action_id FROM entities.entity_events \
     WHERE entity_id = $1 AND entity_version > $2 AND entity_version <= $3 ORDER BY entity_version";

pub(super) const IDEMPOTENCY_KEY: &str = "SELECT fingerprint, outcome::text FROM entities.idempotency_keys \
     WHERE user_id = $1 AND key = $2";

pub(super) const DELETE_IDEMPOTENCY_KEY: &str =
    "DELETE FROM entities.idempotency_keys WHERE user_id = $1 AND key = $2";

/// `$1`: the retention, in seconds.
pub(super) const DELETE_EXPIRED_KEYS: &str = "DELETE FROM entities.idempotency_keys \
     WHERE created_at < now() - make_interval(secs => $1)";

/// Every keyed unit of a batch in one statement; returns the keys inserted (a key another
/// transaction holds is not: the insert waits for that transaction, then skips the row).
const INSERT_KEYS: &str = "INSERT INTO entities.idempotency_keys (user_id, key, fingerprint, outcome) \
     SELECT u, k, f, o::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(u, k, f, o) \
     ON CONFLICT DO NOTHING RETURNING user_id, key";

pub(super) const SAVE_SNAPSHOT: &str = "INSERT INTO entities.entity_snapshots AS s (entity_id, version, snapshot, shape) \
     SELECT id, $2, $3::jsonb, $4 FROM entities.entities WHERE id = $1 AND version >= $2 \
     ON CONFLICT (entity_id) DO UPDATE SET version = excluded.version, snapshot = excluded.snapshot, \
     shape = excluded.shape, taken_at = now() \
     WHERE s.version <= excluded.version";

/// The next id of the `entities` table's own sequence (`bigserial`), reserved for a create.
pub(super) const NEXT_ID: &str =
    "SELECT nextval(pg_get_serial_sequence('entities.entities', 'id'))";

/// The event log after (`$1`, `$2`) = (transaction id as text, position), at most `$3` rows, in
/// (transaction id, position) order, and only below the oldest transaction still in flight: a
/// transaction below that mark has ended, so nothing can later appear behind the reader. In
/// position order alone a reader would pass an event whose transaction, holding a lower
/// position, commits after a later one. `$4`: the entity types to read, or all when empty.
pub(super) const READ_LOG: &str = "SELECT e.transaction_id::text, e.position, e.entity_type, e.entity_id, e.entity_version, \
            e.type, e.payload_version, e.payload::text, e.action_id, a.type, e.created_by, e.request_id, e.correlation_id, \
            to_char(e.inserted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
     FROM entities.entity_events e JOIN entities.entity_actions a ON a.id = e.action_id \
     WHERE (e.transaction_id, e.position) > ($1::text::xid8, $2) \
       AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
       AND (cardinality($4::text[]) = 0 OR e.entity_type = ANY($4)) \
     ORDER BY e.transaction_id, e.position LIMIT $3";

/// The last event of the log below the oldest transaction in flight (see `READ_LOG`), of the
/// types `$1` (all when empty).
pub(super) const LOG_HEAD: &str = "SELECT transaction_id::text, position FROM entities.entity_events \
     WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
       AND (cardinality($1::text[]) = 0 OR entity_type = ANY($1)) \
     ORDER BY transaction_id DESC, position DESC LIMIT 1";

/// How many events `READ_LOG` would read after (`$1`, `$2`), of the types `$3` (all when empty).
pub(super) const COUNT_AFTER: &str = "SELECT count(*) FROM entities.entity_events e \
     WHERE (e.transaction_id, e.position) > ($1::text::xid8, $2) \
       AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
       AND (cardinality($3::text[]) = 0 OR e.entity_type = ANY($3))";

pub(super) const HISTORY: &str = "SELECT e.entity_version, e.type, e.payload_version, e.payload::text, e.action_id, a.type, e.created_by, \
            e.request_id, e.correlation_id, \
            to_char(e.inserted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
     FROM entities.entity_events e JOIN entities.entity_actions a ON a.id = e.action_id \
     WHERE e.entity_id = $1 AND e.entity_type = $2 AND e.entity_version > $3 \
     ORDER BY e.entity_version LIMIT $4";

/// One statement, one round trip, for every entity of a batch: the version checks and bumps,
/// the action rows and the event rows. An entity whose version check fails is not in `bumped`,
/// so none of its rows are inserted; the statement returns the ids of those that passed.
///
/// `e.id = ANY($1)` repeats the join condition so that the entities are found through their
/// primary key: without it the generic plan of this prepared statement joins the unnested
/// batch against a sequential scan of every entity (measured: 0.6 ms per batch at only 1,000
/// entities, growing with the table).
///
/// The events go in in the batch's order (`ORDER BY ev.n`): their positions come from a
/// sequence as they are inserted, and the join would hand them over in any order, while the log
/// promises each entity's events in version order (seen: versions 1, 3, 2 of one entity).
const APPEND: &str = "\
WITH created AS (
    INSERT INTO entities.entities AS e (id, type, version)
    SELECT c.id, c.type, c.version FROM unnest($17::bigint[], $18::text[], $19::bigint[]) AS c(id, type, version)
    ON CONFLICT (id) DO NOTHING
    RETURNING e.id
), bumped AS (
    UPDATE entities.entities AS e SET version = w.new_version, updated_at = now()
    FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS w(id, expected, new_version)
    WHERE e.id = ANY($1) AND e.id = w.id AND e.version = w.expected
    RETURNING e.id
), written AS (
    SELECT id FROM bumped UNION ALL SELECT id FROM created
), actions AS (
    INSERT INTO entities.entity_actions
        (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id)
    SELECT a.entity_id, a.entity_type, a.version, a.type, a.payload::jsonb, a.created_by, a.request_id, a.correlation_id
    FROM unnest($4::bigint[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
        AS a(entity_id, entity_type, version, type, payload, created_by, request_id, correlation_id)
    WHERE a.entity_id IN (SELECT id FROM written)
    RETURNING id, entity_id, entity_type, entity_version, created_by, request_id, correlation_id
), events AS (
    INSERT INTO entities.entity_events
        (entity_id, entity_type, entity_version, type, payload_version, payload, action_id, created_by, request_id, correlation_id)
    SELECT ev.entity_id, a.entity_type, ev.version, ev.type, ev.payload_version, ev.payload::jsonb, a.id, a.created_by, a.request_id, a.correlation_id
    FROM unnest($12::bigint[], $13::bigint[], $14::bigint[], $15::text[], $16::text[], $20::int[])
        WITH ORDINALITY AS ev(entity_id, action_version, version, type, payload, payload_version, n)
    JOIN actions a ON a.entity_id = ev.entity_id AND a.entity_version = ev.action_version
    ORDER BY ev.n
)
SELECT id FROM written";

/// The head of the two statements of a lone action: its entity's version check and bump, and
/// its action row (written only when the check passed). `$1` id, `$2` expected version, `$3`
/// new version, `$4` entity type, `$5` action type, `$6` payload, `$7`-`$9` the stored ids.
macro_rules! bump_and_action {
    () => {
        "\
WITH bumped AS (
    UPDATE entities.entities SET version = $3, updated_at = now()
    WHERE id = $1 AND version = $2
    RETURNING id
), action AS (
    INSERT INTO entities.entity_actions
        (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id)
    SELECT id, $4, $3, $5, $6::jsonb, $7, $8, $9 FROM bumped
    RETURNING id
), "
    };
}

/// `APPEND` for the commonest write, one action of an entity that exists (a lone action, as
/// at one client): its version check and bump, its action row and its events, with the action
/// bound as scalars and no joins; the events as arrays (`$10`-`$13`). Its plan costs the server
/// less than the batch statement's, which unnests, joins and sorts arrays of one row (see
/// the README's Performance section for the figures).
const APPEND_ONE_ACTION: &str = concat!(
    bump_and_action!(),
    "events AS (
    INSERT INTO entities.entity_events
        (entity_id, entity_type, entity_version, type, payload_version, payload, action_id, created_by, request_id, correlation_id)
    SELECT $1, $4, ev.version, ev.type, ev.payload_version, ev.payload::jsonb, a.id, $7, $8, $9
    FROM action a, unnest($10::bigint[], $11::text[], $12::text[], $13::int[])
        WITH ORDINALITY AS ev(version, type, payload, payload_version, n)
    ORDER BY ev.n
)
SELECT id FROM bumped"
);

/// [`APPEND_ONE_ACTION`] for an action of one event (most are), every value a scalar: `$10` its
/// type, `$11` its payload version, `$12` its payload; its version is the entity's new one.
const APPEND_ONE_EVENT: &str = concat!(
    bump_and_action!(),
    "events AS (
    INSERT INTO entities.entity_events
        (entity_id, entity_type, entity_version, type, payload_version, payload, action_id, created_by, request_id, correlation_id)
    SELECT $1, $4, $3, $10, $11, $12::jsonb, a.id, $7, $8, $9 FROM action a
)
SELECT id FROM bumped"
);

/// The batch's rows as the arrays `APPEND` binds, column by column.
#[derive(Default)]
struct Columns<'a> {
    ids: Vec<EntityId>,
    expected: Vec<Version>,
    new_versions: Vec<Version>,
    action_entity: Vec<EntityId>,
    action_entity_type: Vec<&'static str>,
    action_version: Vec<Version>,
    action_type: Vec<&'static str>,
    action_payload: Vec<&'a str>,
    created_by: Vec<&'a str>,
    request_id: Vec<&'a str>,
    correlation_id: Vec<&'a str>,
    event_entity: Vec<EntityId>,
    event_action_version: Vec<Version>,
    event_version: Vec<Version>,
    event_type: Vec<&'static str>,
    event_payload: Vec<&'a str>,
    event_payload_version: Vec<PayloadVersion>,
    created: Vec<EntityId>,
    created_type: Vec<&'static str>,
    created_version: Vec<Version>,
}

impl<'a> Columns<'a> {
    fn of(writes: &[&'a EntityWrite]) -> Self {
        let mut columns = Self::default();
        for write in writes {
            if write.creates {
                columns.created.push(write.entity_id);
                columns.created_type.push(write.entity_type);
                columns.created_version.push(write.new_version());
            } else {
                columns.ids.push(write.entity_id);
                columns.expected.push(write.expected_version);
                columns.new_versions.push(write.new_version());
            }
            let mut version = write.expected_version;
            for (action, after) in write.actions.iter().zip(write.versions_after()) {
                columns.action_entity.push(write.entity_id);
                columns.action_entity_type.push(write.entity_type);
                columns.action_version.push(after);
                columns.action_type.push(action.action_type);
                columns.action_payload.push(&action.payload);
                let (user_id, request_id, correlation_id) = action.ctx.stored_ids();
                columns.created_by.push(user_id);
                columns.request_id.push(request_id);
                columns.correlation_id.push(correlation_id);
                for event in &action.events {
                    version += 1;
                    columns.event_entity.push(write.entity_id);
                    columns.event_action_version.push(after);
                    columns.event_version.push(version);
                    columns.event_type.push(event.event_type);
                    columns.event_payload.push(&event.payload);
                    columns.event_payload_version.push(event.payload_version);
                }
            }
        }
        columns
    }
}

/// Writes a batch's entities, actions and events; returns, write by write, whether its version
/// check passed (a write that failed it wrote nothing). A lone action of an entity that exists
/// takes a statement of its own, cheaper for the server than the batch's.
pub(super) async fn append(
    conn: &mut PgConnection,
    writes: &[&EntityWrite],
) -> Result<Vec<bool>, sqlx::Error> {
    match writes {
        [write] if !write.creates && write.actions.len() == 1 => {
            Ok(vec![append_one_action(conn, write).await?])
        }
        _ => append_batch(conn, writes).await,
    }
}

/// Whether the write, one action of an entity that exists, passed its version check (and
/// was written).
async fn append_one_action(
    conn: &mut PgConnection,
    write: &EntityWrite,
) -> Result<bool, sqlx::Error> {
    let action = &write.actions[0];
    let (user_id, request_id, correlation_id) = action.ctx.stored_ids();
    let query = |sql| {
        sqlx::query_scalar(sql)
            .bind(write.entity_id)
            .bind(write.expected_version)
            .bind(write.new_version())
            .bind(write.entity_type)
            .bind(action.action_type)
            .bind(&action.payload)
            .bind(user_id)
            .bind(request_id)
            .bind(correlation_id)
    };
    let query = match &action.events[..] {
        [event] => query(APPEND_ONE_EVENT)
            .bind(event.event_type)
            .bind(event.payload_version)
            .bind(&event.payload),
        events => {
            let versions: Vec<Version> = (1..)
                .map(|n| write.expected_version + n)
                .take(events.len())
                .collect();
            query(APPEND_ONE_ACTION)
                .bind(versions)
                .bind(
                    events
                        .iter()
                        .map(|event| event.event_type)
                        .collect::<Vec<_>>(),
                )
                .bind(
                    events
                        .iter()
                        .map(|event| event.payload.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    events
                        .iter()
                        .map(|event| event.payload_version)
                        .collect::<Vec<_>>(),
                )
        }
    };
    let bumped: Option<EntityId> = query.fetch_optional(conn).await?;
    Ok(bumped.is_some())
}

/// Any batch: every write's version check or row insert, actions and events, in one statement.
async fn append_batch(
    conn: &mut PgConnection,
    writes: &[&EntityWrite],
) -> Result<Vec<bool>, sqlx::Error> {
    let columns = Columns::of(writes);
    let bumped: Vec<EntityId> = sqlx::query_scalar(APPEND)
        .bind(&columns.ids)
        .bind(&columns.expected)
        .bind(&columns.new_versions)
        .bind(&columns.action_entity)
        .bind(&columns.action_entity_type)
        .bind(&columns.action_version)
        .bind(&columns.action_type)
        .bind(&columns.action_payload)
        .bind(&columns.created_by)
        .bind(&columns.request_id)
        .bind(&columns.correlation_id)
        .bind(&columns.event_entity)
        .bind(&columns.event_action_version)
        .bind(&columns.event_version)
        .bind(&columns.event_type)
        .bind(&columns.event_payload)
        .bind(&columns.created)
        .bind(&columns.created_type)
        .bind(&columns.created_version)
        .bind(&columns.event_payload_version)
        .fetch_all(conn)
        .await?;
    Ok(writes
        .iter()
        .map(|write| bumped.contains(&write.entity_id))
        .collect())
}

pub(super) async fn truncate(
    conn: &mut PgConnection,
    entity_id: EntityId,
    version: Version,
    uncreate: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH events AS (DELETE FROM entities.entity_events WHERE entity_id = $1 AND entity_version > $2), \
              actions AS (DELETE FROM entities.entity_actions WHERE entity_id = $1 AND entity_version > $2) \
         UPDATE entities.entities SET version = $2 WHERE id = $1",
    )
    .bind(entity_id)
    .bind(version)
    .execute(&mut *conn)
    .await?;
    if uncreate {
        // After the statement above: its deletes of the rows that reference this one are
        // checked at its end.
        sqlx::query("DELETE FROM entities.entities WHERE id = $1")
            .bind(entity_id)
            .execute(conn)
            .await?;
    }
    Ok(())
}

pub(super) async fn insert_keys(
    conn: &mut PgConnection,
    keys: &[&KeyRow],
) -> Result<Vec<bool>, sqlx::Error> {
    let column = |field: fn(&KeyRow) -> &str| keys.iter().map(|key| field(key)).collect::<Vec<_>>();
    let inserted: Vec<(String, String)> = sqlx::query_as(INSERT_KEYS)
        .bind(column(|key| &key.user_id))
        .bind(column(|key| &key.key))
        .bind(column(|key| &key.fingerprint))
        .bind(column(|key| &key.outcome))
        .fetch_all(conn)
        .await?;
    Ok(keys
        .iter()
        .map(|key| {
            inserted
                .iter()
                .any(|(user_id, inserted)| *user_id == key.user_id && *inserted == key.key)
        })
        .collect())
}
