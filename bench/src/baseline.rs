//! The baseline: hand-written sqlx issuing per action the statements the runtime needs, in one
//! transaction (version check, action row, event row, read-model row), on the runtime's own
//! tables, with a pool the same size as the runtime's.

use entities_runtime::sqlx::{self, PgPool, SqlitePool};
use entities_runtime::{Backend, Runtime};

/// A pool on the runtime's database, used directly.
#[derive(Clone)]
pub enum Baseline {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// One entity as the baseline keeps it: its id and the version it last wrote.
pub struct Entity {
    pub id: i64,
    pub version: i64,
}

impl Baseline {
    /// The runtime's pool: the same database, settings and size.
    pub fn of(runtime: &Runtime) -> Self {
        match runtime.backend() {
            Backend::Postgres => {
                Baseline::Postgres(runtime.postgres_pool().expect("postgres").clone())
            }
            Backend::Sqlite => Baseline::Sqlite(runtime.sqlite_pool().expect("sqlite").clone()),
        }
    }

    /// Creates a list: its entity row at version 1 and its read-model row, as the runtime's
    /// create does (without the action and event rows, which the measured actions do not need).
    pub async fn create(&self, name: &str) -> Entity {
        let id: i64 = match self {
            Baseline::Postgres(pool) => {
                let mut tx = pool.begin().await.expect("begin");
                let id = sqlx::query_scalar("INSERT INTO entities.entities (type, version) VALUES ('baseline', 1) RETURNING id")
                    .fetch_one(&mut *tx)
                    .await
                    .expect("entity row");
                sqlx::query("INSERT INTO shopping_lists (id, name) VALUES ($1, $2)")
                    .bind(id)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .expect("list row");
                tx.commit().await.expect("commit");
                id
            }
            Baseline::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("begin");
                let id = sqlx::query_scalar(
                    "INSERT INTO entities (type, version) VALUES ('baseline', 1) RETURNING id",
                )
                .fetch_one(&mut *tx)
                .await
                .expect("entity row");
                sqlx::query("INSERT INTO shopping_lists (id, name) VALUES ($1, $2)")
                    .bind(id)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .expect("list row");
                tx.commit().await.expect("commit");
                id
            }
        };
        Entity { id, version: 1 }
    }

    /// One AddItem, as hand-written SQL: `BEGIN`, the version check, the action row, the event
    /// row, the read-model row, `COMMIT`.
    pub async fn add_item(&self, entity: &mut Entity, name: &str, quantity: i32) {
        let item_id = uuid::Uuid::new_v4().to_string();
        let payload =
            serde_json::json!({ "id": item_id, "name": name, "quantity": quantity }).to_string();
        let (expected, new) = (entity.version, entity.version + 1);
        match self {
            Baseline::Postgres(pool) => {
                let mut tx = pool.begin().await.expect("begin");
                let checked = sqlx::query("UPDATE entities.entities SET version = $3, updated_at = now() WHERE id = $1 AND version = $2")
                    .bind(entity.id)
                    .bind(expected)
                    .bind(new)
                    .execute(&mut *tx)
                    .await
                    .expect("version check");
                assert_eq!(checked.rows_affected(), 1, "the baseline's version check");
                let action_id: i64 = sqlx::query_scalar(
                    "INSERT INTO entities.entity_actions (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id) \
                     VALUES ($1, 'baseline', $2, 'AddItem', $3::jsonb, 'bench', 'r', 'c') RETURNING id",
                )
                .bind(entity.id)
                .bind(new)
                .bind(&payload)
                .fetch_one(&mut *tx)
                .await
                .expect("action row");
                sqlx::query(
                    "INSERT INTO entities.entity_events (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id) \
                     VALUES ($1, 'baseline', $2, 'ItemAdded', $3::jsonb, $4, 'bench', 'r', 'c')",
                )
                .bind(entity.id)
                .bind(new)
                .bind(&payload)
                .bind(action_id)
                .execute(&mut *tx)
                .await
                .expect("event row");
                sqlx::query("INSERT INTO shopping_list_items (id, shopping_list_id, name, quantity, added_in_version) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&item_id)
                    .bind(entity.id)
                    .bind(name)
                    .bind(quantity)
                    .bind(new)
                    .execute(&mut *tx)
                    .await
                    .expect("read-model row");
                tx.commit().await.expect("commit");
            }
            Baseline::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("begin");
                let checked =
                    sqlx::query("UPDATE entities SET version = $3 WHERE id = $1 AND version = $2")
                        .bind(entity.id)
                        .bind(expected)
                        .bind(new)
                        .execute(&mut *tx)
                        .await
                        .expect("version check");
                assert_eq!(checked.rows_affected(), 1, "the baseline's version check");
                let action_id: i64 = sqlx::query_scalar(
                    "INSERT INTO entity_actions (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id) \
                     VALUES ($1, 'baseline', $2, 'AddItem', $3, 'bench', 'r', 'c') RETURNING id",
                )
                .bind(entity.id)
                .bind(new)
                .bind(&payload)
                .fetch_one(&mut *tx)
                .await
                .expect("action row");
                sqlx::query(
                    "INSERT INTO entity_events (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id) \
                     VALUES ($1, 'baseline', $2, 'ItemAdded', $3, $4, 'bench', 'r', 'c')",
                )
                .bind(entity.id)
                .bind(new)
                .bind(&payload)
                .bind(action_id)
                .execute(&mut *tx)
                .await
                .expect("event row");
                sqlx::query("INSERT INTO shopping_list_items (id, shopping_list_id, name, quantity, added_in_version) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&item_id)
                    .bind(entity.id)
                    .bind(name)
                    .bind(quantity)
                    .bind(new)
                    .execute(&mut *tx)
                    .await
                    .expect("read-model row");
                tx.commit().await.expect("commit");
            }
        }
        entity.version = new;
    }

    /// A list read by hand: its row and its items.
    pub async fn read(&self, id: i64) -> usize {
        const LIST: &str = "SELECT id, name FROM shopping_lists WHERE id = $1";
        const ITEMS: &str =
            "SELECT id, name, quantity FROM shopping_list_items WHERE shopping_list_id = $1";
        match self {
            Baseline::Postgres(pool) => {
                let _: (i64, String) = sqlx::query_as(LIST)
                    .bind(id)
                    .fetch_one(pool)
                    .await
                    .expect("list");
                let items: Vec<(String, String, i32)> = sqlx::query_as(ITEMS)
                    .bind(id)
                    .fetch_all(pool)
                    .await
                    .expect("items");
                items.len()
            }
            Baseline::Sqlite(pool) => {
                let _: (i64, String) = sqlx::query_as(LIST)
                    .bind(id)
                    .fetch_one(pool)
                    .await
                    .expect("list");
                let items: Vec<(String, String, i32)> = sqlx::query_as(ITEMS)
                    .bind(id)
                    .fetch_all(pool)
                    .await
                    .expect("items");
                items.len()
            }
        }
    }

    /// Runs raw SQL (set-up only).
    pub async fn exec(&self, sql: String) {
        match self {
            Baseline::Postgres(pool) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(pool)
                .await
                .map(drop),
            Baseline::Sqlite(pool) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(pool)
                .await
                .map(drop),
        }
        .expect("set-up SQL");
    }

    /// Every event of entity `id` read and decoded by hand: W4's baseline.
    pub async fn read_events(&self, id: i64) -> usize {
        let rows: Vec<(i64, String, String)> = match self {
            Baseline::Postgres(pool) => sqlx::query_as(
                "SELECT entity_version, type, payload::text FROM entities.entity_events WHERE entity_id = $1 ORDER BY entity_version",
            )
            .bind(id)
            .fetch_all(pool)
            .await,
            Baseline::Sqlite(pool) => sqlx::query_as(
                "SELECT entity_version, type, payload FROM entity_events WHERE entity_id = $1 ORDER BY entity_version",
            )
            .bind(id)
            .fetch_all(pool)
            .await,
        }
        .expect("events");
        let mut decoded = Vec::with_capacity(rows.len());
        for (_, _, payload) in &rows {
            decoded.push(serde_json::from_str::<serde_json::Value>(payload).expect("JSON"));
        }
        decoded.len()
    }
}
