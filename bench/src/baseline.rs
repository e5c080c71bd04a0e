//! The baseline: hand-written sqlx issuing per action the statements the runtime needs, in one
//! transaction (`BEGIN`, version check, action row, event row, read-model row, `COMMIT`), on the
//! runtime's own tables, with a pool of its own the same size as the runtime's.

use entities_runtime::sqlx::{self, PgPool, SqlitePool};
use entities_runtime::{Action as _, Context, EntityId, Event as _};
use example::ShoppingList;
use example::shopping_list::{
    AddItem, CreateShoppingList, Item, ItemAdded, ItemRemoved, NameChanged, QuantityChanged,
    ShoppingListCreated, ShoppingListEvent,
};

/// A pool on the measured database, used directly.
#[derive(Clone)]
pub enum Baseline {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// One entity as the baseline keeps it: its id and the version it last wrote.
pub struct Entity {
    pub id: EntityId,
    pub version: i64,
}

/// Runs `$body` on the pool `$baseline` holds (with `$pg` or `$lite` as `$sql`: the Postgres
/// tables are in schema `entities` and JSON goes in as `jsonb`).
macro_rules! on_pool {
    ($baseline:expr, $pool:ident => $body:expr) => {
        match $baseline {
            Baseline::Postgres($pool) => $body,
            Baseline::Sqlite($pool) => $body,
        }
    };
    ($baseline:expr, $pool:ident, $sql:ident = ($pg:expr, $lite:expr) => $body:expr) => {
        match $baseline {
            Baseline::Postgres($pool) => {
                let $sql = $pg;
                $body
            }
            Baseline::Sqlite($pool) => {
                let $sql = $lite;
                $body
            }
        }
    };
}

/// Runs the statements of one write transaction on `$tx`, whichever backend it is on.
macro_rules! in_transaction {
    ($baseline:expr, |$tx:ident, $pg:ident| $body:expr) => {
        match $baseline {
            Baseline::Postgres(pool) => {
                let $pg = true;
                let mut $tx = pool.begin().await.expect("BEGIN");
                $body;
                $tx.commit().await.expect("COMMIT");
            }
            Baseline::Sqlite(pool) => {
                let $pg = false;
                // As the runtime: take the write lock up front.
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("BEGIN");
                $body;
                $tx.commit().await.expect("COMMIT");
            }
        }
    };
}

const ACTION_PG: &str = "INSERT INTO entities.entity_actions (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id) \
     VALUES ($1, 'shopping_list', $2, $3, $4::jsonb, $5, $6, $7) RETURNING id";
const ACTION_LITE: &str = "INSERT INTO entity_actions (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id) \
     VALUES ($1, 'shopping_list', $2, $3, $4, $5, $6, $7) RETURNING id";
const EVENT_PG: &str = "INSERT INTO entities.entity_events (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id) \
     VALUES ($1, 'shopping_list', $2, $3, $4::jsonb, $5, $6, $7, $8)";
const EVENT_LITE: &str = "INSERT INTO entity_events (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id) \
     VALUES ($1, 'shopping_list', $2, $3, $4, $5, $6, $7, $8)";

/// Writes the action row and its one event row in `$tx`.
macro_rules! action_and_event {
    ($tx:ident, $pg:ident, $ctx:expr, $id:expr, $version:expr, $action:expr, $event:expr) => {{
        let (action_type, action_payload) = $action;
        let (event_type, event_payload) = $event;
        let action_id: i64 = sqlx::query_scalar(if $pg { ACTION_PG } else { ACTION_LITE })
            .bind($id)
            .bind($version)
            .bind(action_type)
            .bind(&action_payload)
            .bind(&$ctx.user_id)
            .bind(&$ctx.request_id)
            .bind(&$ctx.correlation_id)
            .fetch_one(&mut *$tx)
            .await
            .expect("action row");
        sqlx::query(if $pg { EVENT_PG } else { EVENT_LITE })
            .bind($id)
            .bind($version)
            .bind(event_type)
            .bind(&event_payload)
            .bind(action_id)
            .bind(&$ctx.user_id)
            .bind(&$ctx.request_id)
            .bind(&$ctx.correlation_id)
            .execute(&mut *$tx)
            .await
            .expect("event row");
    }};
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("JSON")
}

impl Baseline {
    /// Creates a list as the runtime's create does, in one transaction: its entity row at
    /// version 1, the create action and event rows, and its read-model row. (Set-up, not timed.)
    pub async fn create(&self, ctx: &Context, name: &str) -> Entity {
        let id: EntityId;
        in_transaction!(self, |tx, pg| {
            id = sqlx::query_scalar(if pg {
                "INSERT INTO entities.entities (type, version) VALUES ('shopping_list', 1) RETURNING id"
            } else {
                "INSERT INTO entities (type, version) VALUES ('shopping_list', 1) RETURNING id"
            })
            .fetch_one(&mut *tx)
            .await
            .expect("entity row");
            let name = name.to_owned();
            action_and_event!(
                tx,
                pg,
                ctx,
                id,
                1i64,
                (
                    CreateShoppingList::TYPE,
                    json(&CreateShoppingList {
                        id,
                        name: name.clone()
                    })
                ),
                (
                    ShoppingListCreated::TYPE,
                    json(&ShoppingListCreated {
                        id,
                        name: name.clone()
                    })
                )
            );
            sqlx::query("INSERT INTO shopping_lists (id, name) VALUES ($1, $2)")
                .bind(id)
                .bind(&name)
                .execute(&mut *tx)
                .await
                .expect("list row");
        });
        Entity { id, version: 1 }
    }

    /// One AddItem, by hand: `BEGIN`, the version check (`UPDATE ... WHERE version = $old`,
    /// one row affected), the action row (`RETURNING id`), the event row, the read-model row,
    /// `COMMIT`. Payloads are the same JSON the runtime stores.
    pub async fn add_item(&self, ctx: &Context, entity: &mut Entity, action: AddItem) {
        let (expected, new) = (entity.version, entity.version + 1);
        let event = ItemAdded {
            id: action.id.clone(),
            name: action.name.clone(),
            quantity: action.quantity,
        };
        in_transaction!(self, |tx, pg| {
            let checked = sqlx::query(if pg {
                "UPDATE entities.entities SET version = $3, updated_at = now() WHERE id = $1 AND version = $2"
            } else {
                "UPDATE entities SET version = $3, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = $1 AND version = $2"
            })
            .bind(entity.id)
            .bind(expected)
            .bind(new)
            .execute(&mut *tx)
            .await
            .expect("version check");
            assert_eq!(checked.rows_affected(), 1, "the baseline's version check");
            action_and_event!(
                tx,
                pg,
                ctx,
                entity.id,
                new,
                (AddItem::TYPE, json(&action)),
                (ItemAdded::TYPE, json(&event))
            );
            sqlx::query(
                "INSERT INTO shopping_list_items (id, shopping_list_id, name, quantity, added_in_version) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&event.id)
            .bind(entity.id)
            .bind(&event.name)
            .bind(event.quantity)
            .bind(new)
            .execute(&mut *tx)
            .await
            .expect("read-model row");
        });
        entity.version = new;
    }

    /// A list read by hand from the read model: its row, then its items, on one connection.
    pub async fn read(&self, id: EntityId) -> ShoppingList {
        const LIST: &str = "SELECT name FROM shopping_lists WHERE id = $1";
        const ITEMS: &str = "SELECT id, name, quantity FROM shopping_list_items \
                             WHERE shopping_list_id = $1 ORDER BY added_in_version";
        let (name, items): (String, Vec<(String, String, i32)>) = on_pool!(self, pool => {
            let mut conn = pool.acquire().await.expect("connection");
            let name = sqlx::query_scalar(LIST)
                .bind(id)
                .fetch_one(&mut *conn)
                .await
                .expect("list row");
            let items = sqlx::query_as(ITEMS)
                .bind(id)
                .fetch_all(&mut *conn)
                .await
                .expect("item rows");
            (name, items)
        });
        ShoppingList {
            id,
            version: 0,
            name,
            items: items
                .into_iter()
                .map(|(id, name, quantity)| Item { id, name, quantity })
                .collect(),
        }
    }

    /// Every event of entity `id`, selected and decoded by hand: W4's baseline for a load
    /// without a snapshot. Returns how many.
    pub async fn read_events(&self, id: EntityId) -> usize {
        let rows: Vec<(i64, String, String)> = on_pool!(self, pool, sql = (
            "SELECT entity_version, type, payload::text FROM entities.entity_events WHERE entity_id = $1 ORDER BY entity_version",
            "SELECT entity_version, type, payload FROM entity_events WHERE entity_id = $1 ORDER BY entity_version"
        ) => sqlx::query_as(sql).bind(id).fetch_all(pool).await.expect("event rows"));
        for (_, event_type, payload) in &rows {
            std::hint::black_box(decode(event_type, payload));
        }
        rows.len()
    }

    /// The snapshot of entity `id` and the events after it, selected and decoded by hand: W4's
    /// baseline for a load from a snapshot.
    pub async fn read_snapshot(&self, id: EntityId) -> ShoppingList {
        let (snapshot, version): (String, i64) = on_pool!(self, pool, sql = (
            "SELECT snapshot::text, version FROM entities.entity_snapshots WHERE entity_id = $1",
            "SELECT snapshot, version FROM entity_snapshots WHERE entity_id = $1"
        ) => sqlx::query_as(sql).bind(id).fetch_one(pool).await.expect("snapshot row"));
        let rows: Vec<(String, String)> = on_pool!(self, pool, sql = (
            "SELECT type, payload::text FROM entities.entity_events WHERE entity_id = $1 AND entity_version > $2 ORDER BY entity_version",
            "SELECT type, payload FROM entity_events WHERE entity_id = $1 AND entity_version > $2 ORDER BY entity_version"
        ) => sqlx::query_as(sql).bind(id).bind(version).fetch_all(pool).await.expect("event rows"));
        let list: ShoppingList = serde_json::from_str(&snapshot).expect("snapshot JSON");
        for (event_type, payload) in &rows {
            std::hint::black_box(decode(event_type, payload));
        }
        list
    }

    /// Runs raw SQL (set-up only).
    pub async fn exec(&self, sql: String) {
        on_pool!(self, pool => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .map(drop))
        .expect("set-up SQL");
    }

    /// One number from SQL (set-up checks only).
    pub async fn scalar(&self, sql: &str) -> Option<i64> {
        let sql = sql.to_owned();
        on_pool!(self, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await)
        .expect("set-up query")
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// An event as a hand-written reader decodes it: by its stored tag, into its struct.
fn decode(event_type: &str, payload: &str) -> ShoppingListEvent {
    fn parse<T: serde::de::DeserializeOwned + Into<ShoppingListEvent>>(
        payload: &str,
    ) -> ShoppingListEvent {
        serde_json::from_str::<T>(payload)
            .expect("event JSON")
            .into()
    }
    match event_type {
        t if t == QuantityChanged::TYPE => parse::<QuantityChanged>(payload),
        t if t == ItemAdded::TYPE => parse::<ItemAdded>(payload),
        t if t == ItemRemoved::TYPE => parse::<ItemRemoved>(payload),
        t if t == NameChanged::TYPE => parse::<NameChanged>(payload),
        t if t == ShoppingListCreated::TYPE => parse::<ShoppingListCreated>(payload),
        other => panic!("unknown event type {other}"),
    }
}
