//! Moving an item from one list to another: a transaction over both lists. The item (its id,
//! name and quantity) leaves the one and joins the other, read model included, or nothing
//! changes.

use std::sync::Arc;

use entities_runtime::{Context, EntityRef, Error, Runtime, Unit};

use super::{AddItem, RemoveItem, ShoppingList, ShoppingListError};

/// Both lists as a move left them.
pub type Moved = (Arc<ShoppingList>, Arc<ShoppingList>);

/// Moves item `item_id` from `from` to `to` in one transaction; returns both lists after it.
/// `ItemNotFound` when the item is not on `from`; `NotFound` for an unknown list.
pub async fn move_item(
    runtime: &Runtime,
    ctx: &Context,
    from: &EntityRef<ShoppingList>,
    to: &EntityRef<ShoppingList>,
    item_id: &str,
) -> Result<Moved, Error<ShoppingListError>> {
    runtime
        .transaction(ctx, |tx: Unit<ShoppingListError>| async move {
            // Both lists first, in the order the unit takes them (by id), so that it never runs
            // again to take them in order.
            let (first, second) = if from.id() < to.id() {
                (from, to)
            } else {
                (to, from)
            };
            // Both lists must be the caller's (or shared) before anything of them is told, even
            // whether the item is there.
            for list in [tx.get(first).await?, tx.get(second).await?] {
                if !list.is_open_to(ctx.user_id()) {
                    return Err(Error::Rejected(ShoppingListError::Forbidden(list.id)));
                }
            }
            let item = tx
                .get(from)
                .await?
                .item(item_id)
                .map_err(Error::Rejected)?
                .clone();
            let from = tx
                .send_action(
                    from,
                    RemoveItem {
                        item_id: item.id.clone(),
                    },
                )
                .await?;
            let to = tx
                .send_action(
                    to,
                    AddItem {
                        id: item.id,
                        name: item.name,
                        quantity: item.quantity,
                    },
                )
                .await?;
            Ok((from, to))
        })
        .await
}
