//! Changing an item's quantity: the item must be on the list, the quantity above 0.

use entities_runtime::{
    Action, Apply, Change, Context, Event, Events, Handle, Project, Projected, Tx,
};
use serde::{Deserialize, Serialize};

use super::{ShoppingList, valid_quantity};

#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct ChangeQuantity {
    pub item_id: String,
    pub quantity: i32,
}

#[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
pub struct QuantityChanged {
    pub item_id: String,
    pub quantity: i32,
}

impl Handle<ChangeQuantity> for ShoppingList {
    fn handle(&self, ctx: &Context, action: &ChangeQuantity) -> Events<Self> {
        self.open_to(ctx)?;
        let item = self.item(&action.item_id)?;
        let quantity = valid_quantity(action.quantity)?;
        if item.quantity == quantity {
            return Ok(vec![]);
        }
        Ok(vec![
            QuantityChanged {
                item_id: action.item_id.clone(),
                quantity,
            }
            .into(),
        ])
    }
}

impl Apply<QuantityChanged> for ShoppingList {
    fn apply(&mut self, event: &QuantityChanged) {
        if let Some(item) = self.item_mut(&event.item_id) {
            item.quantity = event.quantity;
        }
    }
}

impl Project<QuantityChanged> for ShoppingList {
    async fn project(
        tx: &mut Tx<'_>,
        change: Change<'_, Self, QuantityChanged>,
    ) -> Projected<Self> {
        let Change { event, .. } = change;
        tx.query("UPDATE shopping_list_items SET quantity = $2 WHERE id = $1")
            .bind(&event.item_id)
            .bind(event.quantity)
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

    fn change(item_id: &str, quantity: i32) -> ChangeQuantity {
        ChangeQuantity {
            item_id: item_id.to_owned(),
            quantity,
        }
    }

    #[test]
    fn a_quantity_is_changed() {
        let list = groceries_with_milk()
            .when(change("m", 5))
            .then([QuantityChanged {
                item_id: "m".into(),
                quantity: 5,
            }
            .into()]);
        assert_eq!(list.items[0].quantity, 5);
    }

    #[test]
    fn the_same_quantity_records_nothing() {
        groceries_with_milk().when(change("m", 2)).then([]);
    }

    #[test]
    fn an_unknown_item_or_a_quantity_below_one_is_refused() {
        groceries_with_milk()
            .when(change("x", 1))
            .then_refused(ShoppingListError::ItemNotFound("x".into()));
        groceries_with_milk()
            .when(change("m", -1))
            .then_refused(ShoppingListError::QuantityNotPositive(-1));
    }
}
