//! Removing an item: it must be on the list.

use entities_runtime::{
    Action, Apply, Change, Context, Event, Events, Handle, Project, Projected, Tx,
};
use serde::{Deserialize, Serialize};

use super::ShoppingList;

#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct RemoveItem {
    pub item_id: String,
}

#[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
pub struct ItemRemoved {
    pub item_id: String,
}

impl Handle<RemoveItem> for ShoppingList {
    fn handle(&self, ctx: &Context, action: &RemoveItem) -> Events<Self> {
        self.open_to(ctx)?;
        self.item(&action.item_id)?;
        Ok(vec![
            ItemRemoved {
                item_id: action.item_id.clone(),
            }
            .into(),
        ])
    }
}

impl Apply<ItemRemoved> for ShoppingList {
    fn apply(&mut self, event: &ItemRemoved) {
        self.items.retain(|item| item.id != event.item_id);
    }
}

impl Project<ItemRemoved> for ShoppingList {
    async fn project(tx: &mut Tx<'_>, change: Change<'_, Self, ItemRemoved>) -> Projected<Self> {
        let Change { event, .. } = change;
        tx.query("DELETE FROM shopping_list_items WHERE id = $1")
            .bind(&event.item_id)
            .execute()
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ShoppingListError;
    use super::super::given::groceries_with_milk;
    use super::*;

    #[test]
    fn an_item_is_removed() {
        let list = groceries_with_milk()
            .when(RemoveItem {
                item_id: "m".into(),
            })
            .then([ItemRemoved {
                item_id: "m".into(),
            }
            .into()]);
        assert!(list.items.is_empty());
    }

    #[test]
    fn an_item_not_on_the_list_is_refused() {
        groceries_with_milk()
            .when(RemoveItem {
                item_id: "x".into(),
            })
            .then_refused(ShoppingListError::ItemNotFound("x".into()));
    }
}
