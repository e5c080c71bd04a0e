//! Adding an item (the seed's AddItem): a name, a quantity above 0, and an id of its own.

use entities_runtime::{
    Action, Apply, Change, Context, Event, Events, Handle, Project, Projected, Tx,
};
use serde::{Deserialize, Serialize};

use super::{Item, ShoppingList, ShoppingListError, valid_name, valid_quantity};

#[derive(Debug, Clone, Action, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Event, Serialize, Deserialize)]
pub struct ItemAdded {
    pub id: String,
    pub name: String,
    pub quantity: i32,
}

impl Handle<AddItem> for ShoppingList {
    fn handle(&self, _ctx: &Context, action: &AddItem) -> Events<Self> {
        if self.item(&action.id).is_ok() {
            return Err(ShoppingListError::ItemExists(action.id.clone()));
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
}
