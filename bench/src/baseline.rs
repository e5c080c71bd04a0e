//! The baseline: hand-written sqlx issuing per action the statements the runtime needs, in one
//! transaction (`BEGIN`, version check, action row, event row, read-model row, `COMMIT`), on the
//! runtime's own tables, with a pool of its own the same size as the runtime's.

use entities_runtime::{
    Action as _, Backend, Context, Database, EntityId, Event as _, Transaction,
};
use example::ShoppingList;
use example::shopping_list::{
    AddItem, ChangeQuantity, CreateShoppingList, Item, ItemAdded, ItemRemoved, NameChanged,
    QuantityChanged, RemoveItem, ShoppingListCreated, ShoppingListEvent,
};

/// A pool of its own on the measured database, used directly.
#[derive(Clone)]
pub struct Baseline {
    db: Database,
}

/// One entity as the baseline keeps it: its id and the version it last wrote.
pub struct Entity {
    pub id: EntityId,
    pub version: i64,
}

/// SQL in its two spellings: on Postgres the runtime's tables are in schema `entities` and
/// JSON goes in as `jsonb`.
struct Sql {
    postgres: &'static str,
    sqlite: &'static str,
}

const ACTION: Sql = Sql {
    postgres: "INSERT INTO entities.entity_actions (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id) \
     VALUES ($1, 'shopping_list', $2, $3, $4::jsonb, $5, $6, $7) RETURNING id",
    sqlite: "INSERT INTO entity_actions (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id) \
     VALUES ($1, 'shopping_list', $2, $3, $4, $5, $6, $7) RETURNING id",
};
const EVENT: Sql = Sql {
    postgres: "INSERT INTO entities.entity_events (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id) \
     VALUES ($1, 'shopping_list', $2, $3, $4::jsonb, $5, $6, $7, $8)",
    sqlite: "INSERT INTO entity_events (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id) \
     VALUES ($1, 'shopping_list', $2, $3, $4, $5, $6, $7, $8)",
};
const NEW_ENTITY: Sql = Sql {
    postgres: "INSERT INTO entities.entities (type, version) VALUES ('shopping_list', 1) RETURNING id",
    sqlite: "INSERT INTO entities (type, version) VALUES ('shopping_list', 1) RETURNING id",
};
const VERSION_CHECK: Sql = Sql {
    postgres: "UPDATE entities.entities SET version = $3, updated_at = now() WHERE id = $1 AND version = $2",
    sqlite: "UPDATE entities SET version = $3, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = $1 AND version = $2",
};
/// Both entities of a move, locked in id order (two movers of the same pair never deadlock).
/// SQLite has no row locks: its `BEGIN IMMEDIATE` already holds the one write lock.
const LOCK_TWO: Sql = Sql {
    postgres: "SELECT id, version FROM entities.entities WHERE id IN ($1, $2) ORDER BY id FOR UPDATE",
    sqlite: "SELECT id, version FROM entities WHERE id IN ($1, $2) ORDER BY id",
};
const BUMP: Sql = Sql {
    postgres: "UPDATE entities.entities SET version = $2, updated_at = now() WHERE id = $1",
    sqlite: "UPDATE entities SET version = $2, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = $1",
};
const ALL_EVENTS: Sql = Sql {
    postgres: "SELECT entity_version, type, payload::text FROM entities.entity_events WHERE entity_id = $1 ORDER BY entity_version",
    sqlite: "SELECT entity_version, type, payload FROM entity_events WHERE entity_id = $1 ORDER BY entity_version",
};
const SNAPSHOT: Sql = Sql {
    postgres: "SELECT snapshot::text, version FROM entities.entity_snapshots WHERE entity_id = $1",
    sqlite: "SELECT snapshot, version FROM entity_snapshots WHERE entity_id = $1",
};
const EVENTS_AFTER: Sql = Sql {
    postgres: "SELECT type, payload::text FROM entities.entity_events WHERE entity_id = $1 AND entity_version > $2 ORDER BY entity_version",
    sqlite: "SELECT type, payload FROM entity_events WHERE entity_id = $1 AND entity_version > $2 ORDER BY entity_version",
};

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("JSON")
}

impl Baseline {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn sql(&self, sql: Sql) -> &'static str {
        match self.db.backend() {
            Backend::Postgres => sql.postgres,
            Backend::Sqlite => sql.sqlite,
        }
    }

    /// Writes the action row and its one event row in `tx`.
    async fn action_and_event(
        &self,
        tx: &mut Transaction,
        ctx: &Context,
        (id, version): (EntityId, i64),
        (action_type, action_payload): (&str, String),
        (event_type, event_payload): (&str, String),
    ) {
        // As the runtime does: a call whose context names no request id gets one of its own.
        let request_id = ctx
            .request_id()
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        let correlation_id = ctx.correlation_id().unwrap_or(&request_id);
        let (action_id,): (i64,) = tx
            .query(self.sql(ACTION))
            .bind(id)
            .bind(version)
            .bind(action_type)
            .bind(&action_payload)
            .bind(ctx.user_id())
            .bind(&request_id)
            .bind(correlation_id)
            .fetch_one()
            .await
            .expect("action row");
        tx.query(self.sql(EVENT))
            .bind(id)
            .bind(version)
            .bind(event_type)
            .bind(&event_payload)
            .bind(action_id)
            .bind(ctx.user_id())
            .bind(&request_id)
            .bind(correlation_id)
            .execute()
            .await
            .expect("event row");
    }

    /// Creates a list as the runtime's create does, in one transaction: its entity row at
    /// version 1, the create action and event rows, and its read-model row. (Set-up, not timed.)
    pub async fn create(&self, ctx: &Context, name: &str) -> Entity {
        let mut tx = self.db.begin().await.expect("BEGIN");
        let (id,): (EntityId,) = tx
            .query(self.sql(NEW_ENTITY))
            .fetch_one()
            .await
            .expect("entity row");
        let name = name.to_owned();
        let owner = ctx.user_id().to_owned();
        let action = CreateShoppingList {
            id,
            name: name.clone(),
            owner: owner.clone(),
        };
        let event = ShoppingListCreated {
            id,
            name: name.clone(),
            owner: owner.clone(),
        };
        self.action_and_event(
            &mut tx,
            ctx,
            (id, 1),
            (CreateShoppingList::TYPE, json(&action)),
            (ShoppingListCreated::TYPE, json(&event)),
        )
        .await;
        tx.query("INSERT INTO shopping_lists (id, name, owner) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(&name)
            .bind(&owner)
            .execute()
            .await
            .expect("list row");
        tx.commit().await.expect("COMMIT");
        Entity { id, version: 1 }
    }

    /// `BEGIN` and the version check of an action on `entity` (`UPDATE ... WHERE version =
    /// $old`, one row affected); returns the transaction and the version the action writes.
    async fn begin_action(&self, entity: &Entity) -> (Transaction, i64) {
        let (expected, new) = (entity.version, entity.version + 1);
        let mut tx = self.db.begin().await.expect("BEGIN");
        let checked = tx
            .query(self.sql(VERSION_CHECK))
            .bind(entity.id)
            .bind(expected)
            .bind(new)
            .execute()
            .await
            .expect("version check");
        assert_eq!(checked, 1, "the baseline's version check");
        (tx, new)
    }

    /// One AddItem, by hand: `BEGIN`, the version check, the action row (`RETURNING id`), the
    /// event row, the read-model row, `COMMIT`. Payloads are the same JSON the runtime stores.
    pub async fn add_item(&self, ctx: &Context, entity: &mut Entity, action: AddItem) {
        let event = ItemAdded {
            id: action.id.clone(),
            name: action.name.clone(),
            quantity: action.quantity,
        };
        let (mut tx, new) = self.begin_action(entity).await;
        self.action_and_event(
            &mut tx,
            ctx,
            (entity.id, new),
            (AddItem::TYPE, json(&action)),
            (ItemAdded::TYPE, json(&event)),
        )
        .await;
        tx.query(
            "INSERT INTO shopping_list_items (id, shopping_list_id, name, quantity, added_in_version) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&event.id)
        .bind(entity.id)
        .bind(&event.name)
        .bind(event.quantity)
        .bind(new)
        .execute()
        .await
        .expect("read-model row");
        tx.commit().await.expect("COMMIT");
        entity.version = new;
    }

    /// One ChangeQuantity, by hand: as [`add_item`](Self::add_item), the read-model row updated.
    pub async fn change_quantity(
        &self,
        ctx: &Context,
        entity: &mut Entity,
        action: ChangeQuantity,
    ) {
        let event = QuantityChanged {
            item_id: action.item_id.clone(),
            quantity: action.quantity,
        };
        let (mut tx, new) = self.begin_action(entity).await;
        self.action_and_event(
            &mut tx,
            ctx,
            (entity.id, new),
            (ChangeQuantity::TYPE, json(&action)),
            (QuantityChanged::TYPE, json(&event)),
        )
        .await;
        tx.query("UPDATE shopping_list_items SET quantity = $2 WHERE id = $1")
            .bind(&event.item_id)
            .bind(event.quantity)
            .execute()
            .await
            .expect("read-model row");
        tx.commit().await.expect("COMMIT");
        entity.version = new;
    }

    /// Moves item `item_id` from list `from` to list `to` by hand, in one transaction: both
    /// entity rows locked in id order (`SELECT ... FOR UPDATE`), the item read from the read
    /// model, both versions bumped, an action and an event row on each (RemoveItem/ItemRemoved,
    /// AddItem/ItemAdded), the item's read-model row deleted and inserted on the other list:
    /// the rows the runtime writes for `moveItem`.
    pub async fn move_item(&self, ctx: &Context, from: EntityId, to: EntityId, item_id: &str) {
        let mut tx = self.db.begin().await.expect("BEGIN");
        let locked: Vec<(EntityId, i64)> = tx
            .query(self.sql(LOCK_TWO))
            .bind(from)
            .bind(to)
            .fetch_all()
            .await
            .expect("both entities");
        let next_version = |id: EntityId| {
            locked
                .iter()
                .find(|(locked, _)| *locked == id)
                .map(|(_, version)| version + 1)
                .expect("the entity is there")
        };
        let (from_version, to_version) = (next_version(from), next_version(to));
        let (name, quantity): (String, i32) = tx
            .query("SELECT name, quantity FROM shopping_list_items WHERE id = $1 AND shopping_list_id = $2")
            .bind(item_id)
            .bind(from)
            .fetch_one()
            .await
            .expect("the item is on the list");
        for (id, version) in [(from, from_version), (to, to_version)] {
            tx.query(self.sql(BUMP))
                .bind(id)
                .bind(version)
                .execute()
                .await
                .expect("version bump");
        }
        let remove = RemoveItem {
            item_id: item_id.to_owned(),
        };
        let removed = ItemRemoved {
            item_id: item_id.to_owned(),
        };
        self.action_and_event(
            &mut tx,
            ctx,
            (from, from_version),
            (RemoveItem::TYPE, json(&remove)),
            (ItemRemoved::TYPE, json(&removed)),
        )
        .await;
        let add = AddItem {
            id: item_id.to_owned(),
            name: name.clone(),
            quantity,
        };
        let added = ItemAdded {
            id: item_id.to_owned(),
            name: name.clone(),
            quantity,
        };
        self.action_and_event(
            &mut tx,
            ctx,
            (to, to_version),
            (AddItem::TYPE, json(&add)),
            (ItemAdded::TYPE, json(&added)),
        )
        .await;
        tx.query("DELETE FROM shopping_list_items WHERE id = $1")
            .bind(item_id)
            .execute()
            .await
            .expect("read-model row out");
        tx.query(
            "INSERT INTO shopping_list_items (id, shopping_list_id, name, quantity, added_in_version) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(item_id)
        .bind(to)
        .bind(&name)
        .bind(quantity)
        .bind(to_version)
        .execute()
        .await
        .expect("read-model row in");
        tx.commit().await.expect("COMMIT");
    }

    /// A list read by hand from the read model: its row, then its items, on one connection.
    pub async fn read(&self, id: EntityId) -> ShoppingList {
        let mut conn = self.db.acquire().await.expect("connection");
        let (name, owner): (String, String) = conn
            .query("SELECT name, owner FROM shopping_lists WHERE id = $1")
            .bind(id)
            .fetch_one()
            .await
            .expect("list row");
        let items: Vec<(String, String, i32)> = conn
            .query(
                "SELECT id, name, quantity FROM shopping_list_items \
                 WHERE shopping_list_id = $1 ORDER BY added_in_version",
            )
            .bind(id)
            .fetch_all()
            .await
            .expect("item rows");
        ShoppingList {
            id,
            version: 0,
            name,
            owner,
            // No list of the benchmark is shared.
            shared_with: Vec::new(),
            items: items
                .into_iter()
                .map(|(id, name, quantity)| Item { id, name, quantity })
                .collect(),
        }
    }

    /// Every event of entity `id`, selected and decoded by hand: W4's baseline for a load
    /// without a snapshot. Returns how many.
    pub async fn read_events(&self, id: EntityId) -> usize {
        let rows: Vec<(i64, String, String)> = self
            .db
            .query(self.sql(ALL_EVENTS))
            .bind(id)
            .fetch_all()
            .await
            .expect("event rows");
        for (_, event_type, payload) in &rows {
            std::hint::black_box(decode(event_type, payload));
        }
        rows.len()
    }

    /// The snapshot of entity `id` and the events after it, selected and decoded by hand: W4's
    /// baseline for a load from a snapshot.
    pub async fn read_snapshot(&self, id: EntityId) -> ShoppingList {
        let (snapshot, version): (String, i64) = self
            .db
            .query(self.sql(SNAPSHOT))
            .bind(id)
            .fetch_one()
            .await
            .expect("snapshot row");
        let rows: Vec<(String, String)> = self
            .db
            .query(self.sql(EVENTS_AFTER))
            .bind(id)
            .bind(version)
            .fetch_all()
            .await
            .expect("event rows");
        let list: ShoppingList = serde_json::from_str(&snapshot).expect("snapshot JSON");
        for (event_type, payload) in &rows {
            std::hint::black_box(decode(event_type, payload));
        }
        list
    }

    /// Runs raw SQL (set-up only).
    pub async fn exec(&self, sql: String) {
        self.db
            .execute_script(entities_runtime::sqlx::AssertSqlSafe(sql))
            .await
            .expect("set-up SQL");
    }

    /// One number from SQL (set-up checks only).
    pub async fn scalar(&self, sql: &str) -> Option<i64> {
        let (value,): (Option<i64>,) = self
            .db
            .query(entities_runtime::sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one()
            .await
            .expect("set-up query");
        value
    }

    /// The server's version: `PostgreSQL 15.x` or `SQLite 3.x`.
    pub async fn server_version(&self) -> Result<String, entities_runtime::sqlx::Error> {
        let (query, name) = match self.db.backend() {
            Backend::Postgres => ("SHOW server_version", "PostgreSQL"),
            Backend::Sqlite => ("SELECT sqlite_version()", "SQLite"),
        };
        let (version,): (String,) = self.db.query(query).fetch_one().await?;
        Ok(format!("{name} {version}"))
    }

    pub async fn close(&self) {
        self.db.close().await;
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
