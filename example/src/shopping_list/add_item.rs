//! Adding an item (the seed's AddItem): a name, a quantity above 0, and an id of its own.

use entities_runtime::{
    Action, Apply, Backend, Change, Context, Event, Events, Handle, Project, Projected, Tx,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ITEM_LIMIT, Item, ShoppingList, ShoppingListError, valid_name, valid_quantity};

#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct AddItem {
    /// A UUID, chosen by the caller so a retried request adds nothing twice.
    pub id: String,
    pub name: String,
    pub quantity: i32,
}

impl AddItem {
    /// An item with a fresh UUID.
    pub fn new(name: impl Into<String>, quantity: i32) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.into(),
            quantity,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
pub struct ItemAdded {
    pub id: String,
    pub name: String,
    pub quantity: i32,
}

impl Handle<AddItem> for ShoppingList {
    fn handle(&self, ctx: &Context, action: &AddItem) -> Events<Self> {
        self.open_to(ctx)?;
        if self.item(&action.id).is_ok() {
            return Err(ShoppingListError::ItemExists(action.id.clone()));
        }
        if self.items.len() >= ITEM_LIMIT {
            return Err(ShoppingListError::ListFull);
        }
        Ok(vec![
            ItemAdded {
                id: action.id.clone(),
                name: valid_name(&action.name)?,
                quantity: valid_quantity(action.quantity)?,
            }
            .into(),
        ])
    }
}

impl Apply<ItemAdded> for ShoppingList {
    fn apply(&mut self, event: &ItemAdded) {
        self.items.push(Item {
            id: event.id.clone(),
            name: event.name.clone(),
            quantity: event.quantity,
        });
    }
}

impl Project<ItemAdded> for ShoppingList {
    async fn project(tx: &mut Tx<'_>, change: Change<'_, Self, ItemAdded>) -> Projected<Self> {
        let Change { event, after, .. } = change;
        tx.query(
            "INSERT INTO shopping_list_items (id, shopping_list_id, name, quantity, added_in_version) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&event.id)
        .bind(after.id)
        .bind(&event.name)
        .bind(event.quantity)
        .bind(after.version)
        .execute()
        .await?;
        Ok(())
    }

    /// Items added by neighbouring actions of one batch, in one statement: one row per item
    /// from a JSON array (Postgres `jsonb_to_recordset`, SQLite `json_each`).
    async fn project_all(
        tx: &mut Tx<'_>,
        changes: &[Change<'_, Self, ItemAdded>],
    ) -> Projected<Self> {
        if let [change] = changes {
            return Self::project(tx, *change).await;
        }
        let rows: Vec<_> = changes
            .iter()
            .map(|Change { event, after, .. }| {
                json!({
                    "id": event.id,
                    "shopping_list_id": after.id,
                    "name": event.name,
                    "quantity": event.quantity,
                    "added_in_version": after.version,
                })
            })
            .collect();
        let sql = match tx.backend() {
            Backend::Postgres => {
                "INSERT INTO shopping_list_items (id, shopping_list_id, name, quantity, added_in_version) \
                 SELECT id, shopping_list_id, name, quantity, added_in_version \
                 FROM jsonb_to_recordset($1::jsonb) \
                   AS item(id TEXT, shopping_list_id BIGINT, name TEXT, quantity INTEGER, added_in_version BIGINT)"
            }
            Backend::Sqlite => {
                "INSERT INTO shopping_list_items (id, shopping_list_id, name, quantity, added_in_version) \
                 SELECT value ->> 'id', value ->> 'shopping_list_id', value ->> 'name', \
                        value ->> 'quantity', value ->> 'added_in_version' \
                 FROM json_each($1) ORDER BY key"
            }
        };
        tx.query(sql)
            .bind(serde_json::Value::Array(rows).to_string())
            .execute()
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use entities_runtime::testing::given;

    use super::super::ShoppingListEvent;
    use super::super::given::{created, groceries_with_milk, item};
    use super::*;

    fn add(id: &str, name: &str, quantity: i32) -> AddItem {
        AddItem {
            id: id.to_owned(),
            name: name.to_owned(),
            quantity,
        }
    }

    #[test]
    fn an_item_is_added_with_its_trimmed_name() {
        let list = given::<ShoppingList>([created("Groceries").into()])
            .when(add("e", " eggs ", 12))
            .then([item("e", "eggs", 12).into()]);
        assert_eq!(
            list.items,
            [Item {
                id: "e".into(),
                name: "eggs".into(),
                quantity: 12
            }]
        );
    }

    #[test]
    fn an_item_id_is_added_once() {
        groceries_with_milk()
            .when(add("m", "more milk", 1))
            .then_refused(ShoppingListError::ItemExists("m".into()));
    }

    #[test]
    fn a_quantity_below_one_or_a_blank_name_is_refused() {
        groceries_with_milk()
            .when(add("e", "eggs", 0))
            .then_refused(ShoppingListError::QuantityNotPositive(0));
        groceries_with_milk()
            .when(add("e", "  ", 1))
            .then_refused(ShoppingListError::BlankName);
    }

    #[test]
    fn a_full_list_takes_no_more_items() {
        let full: Vec<ShoppingListEvent> = std::iter::once(created("Groceries").into())
            .chain((0..ITEM_LIMIT).map(|n| item(&n.to_string(), "thing", 1).into()))
            .collect();
        given::<ShoppingList>(full)
            .when(add("last", "one more", 1))
            .then_refused(ShoppingListError::ListFull);
    }

    #[test]
    fn new_items_get_a_fresh_id() {
        assert_ne!(AddItem::new("a", 1).id, AddItem::new("a", 1).id);
    }
}
