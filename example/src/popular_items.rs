//! Item popularity: on how many lists each item name is now. An eventually consistent read
//! model, kept by a projector that follows the event log (not in the actions' transactions: a
//! list's write never waits for it). Its tables change with its checkpoint, in one transaction,
//! so a crash never counts an event twice nor loses one.
//!
//! A page of events is projected with four statements whatever its size: the net effect of the
//! page on each (list, item) it touches, then a recount of the names it touched. That is what
//! lets a rebuild replay a long log quickly.

use std::collections::{BTreeMap, BTreeSet};

use entities_runtime::{Backend, BoxError, EntityId, Logged, Projector, Runtime, Tx, sqlx};
use serde_json::json;

use crate::ShoppingList;
use crate::shopping_list::{ItemAdded, ItemRemoved, ShoppingListEvent};

/// The projector's subscription name (its checkpoint's).
pub const NAME: &str = "popular_items";

/// An item name and on how many lists it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopularItem {
    pub name: String,
    pub lists: i64,
}

/// The `popular_items` projector.
pub struct PopularItems;

/// The statements of a page, per backend: entries in and out, then the touched names' counts.
struct Statements {
    delete_entries: &'static str,
    insert_entries: &'static str,
    delete_counts: &'static str,
    insert_counts: &'static str,
}

const POSTGRES: Statements = Statements {
    delete_entries: "DELETE FROM popular_item_entries e \
         USING jsonb_to_recordset($1::jsonb) AS t(list_id bigint, item_id text) \
         WHERE e.list_id = t.list_id AND e.item_id = t.item_id RETURNING e.name",
    insert_entries: "INSERT INTO popular_item_entries (list_id, item_id, name) \
         SELECT list_id, item_id, name FROM jsonb_to_recordset($1::jsonb) AS t(list_id bigint, item_id text, name text)",
    delete_counts: "DELETE FROM popular_items WHERE name IN (SELECT jsonb_array_elements_text($1::jsonb))",
    insert_counts: "INSERT INTO popular_items (name, lists) \
         SELECT name, count(DISTINCT list_id) FROM popular_item_entries \
         WHERE name IN (SELECT jsonb_array_elements_text($1::jsonb)) GROUP BY name",
};

const SQLITE: Statements = Statements {
    delete_entries: "DELETE FROM popular_item_entries WHERE (list_id, item_id) IN \
         (SELECT json_extract(value, '$.list_id'), json_extract(value, '$.item_id') FROM json_each($1)) \
         RETURNING name",
    insert_entries: "INSERT INTO popular_item_entries (list_id, item_id, name) \
         SELECT json_extract(value, '$.list_id'), json_extract(value, '$.item_id'), json_extract(value, '$.name') \
         FROM json_each($1)",
    delete_counts: "DELETE FROM popular_items WHERE name IN (SELECT value FROM json_each($1))",
    insert_counts: "INSERT INTO popular_items (name, lists) \
         SELECT name, count(DISTINCT list_id) FROM popular_item_entries \
         WHERE name IN (SELECT value FROM json_each($1)) GROUP BY name",
};

impl Projector<Logged<ShoppingList>> for PopularItems {
    async fn project(
        &mut self,
        tx: &mut Tx<'_>,
        events: &[Logged<ShoppingList>],
    ) -> Result<(), BoxError> {
        // Where the page leaves each (list, item) it touches: on the list under a name, or gone.
        let mut touched: BTreeMap<(EntityId, &str), Option<&str>> = BTreeMap::new();
        for event in events {
            match &event.event {
                ShoppingListEvent::ItemAdded(ItemAdded { id, name, .. }) => {
                    touched.insert((event.entity_id, id), Some(name));
                }
                ShoppingListEvent::ItemRemoved(ItemRemoved { item_id }) => {
                    touched.insert((event.entity_id, item_id), None);
                }
                _ => {}
            }
        }
        if touched.is_empty() {
            return Ok(());
        }
        let sql = match tx.backend() {
            Backend::Postgres => &POSTGRES,
            Backend::Sqlite => &SQLITE,
        };
        let keys: Vec<_> = touched
            .keys()
            .map(|(list_id, item_id)| json!({ "list_id": list_id, "item_id": item_id }))
            .collect();
        let removed: Vec<(String,)> = tx
            .query(sql.delete_entries)
            .bind(serde_json::to_string(&keys)?)
            .fetch_all()
            .await?;
        let added: Vec<_> = touched
            .iter()
            .filter_map(|((list_id, item_id), name)| {
                name.map(|name| json!({ "list_id": list_id, "item_id": item_id, "name": name }))
            })
            .collect();
        if !added.is_empty() {
            tx.query(sql.insert_entries)
                .bind(serde_json::to_string(&added)?)
                .execute()
                .await?;
        }
        let names: BTreeSet<&str> = removed
            .iter()
            .map(|(name,)| name.as_str())
            .chain(touched.values().flatten().copied())
            .collect();
        let names = serde_json::to_string(&names)?;
        tx.query(sql.delete_counts).bind(&names).execute().await?;
        tx.query(sql.insert_counts).bind(&names).execute().await?;
        Ok(())
    }

    async fn clear(&mut self, tx: &mut Tx<'_>) -> Result<(), BoxError> {
        tx.query("DELETE FROM popular_item_entries")
            .execute()
            .await?;
        tx.query("DELETE FROM popular_items").execute().await?;
        Ok(())
    }
}

/// The `limit` item names on the most lists, most first (ties by name).
pub async fn top(runtime: &Runtime, limit: i64) -> Result<Vec<PopularItem>, sqlx::Error> {
    let rows: Vec<(String, i64)> = runtime
        .database()
        .query("SELECT name, lists FROM popular_items ORDER BY lists DESC, name LIMIT $1")
        .bind(limit)
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .map(|(name, lists)| PopularItem { name, lists })
        .collect())
}
