//! Sharing a list: its owner lets another user read and change it. Sharing cannot be taken
//! back (no unshare yet), so access only ever grows: a check made before an action stays true.

use entities_runtime::{
    Action, Apply, Change, Context, Event, Events, Handle, Project, Projected, Tx,
};
use serde::{Deserialize, Serialize};

use super::{ShoppingList, ShoppingListError};

#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct ShareList {
    pub user_id: String,
}

#[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
pub struct ListShared {
    pub user_id: String,
}

/// The longest user id, as the API takes them (`x-user-id`, a token's `sub`).
const MAX_USER_ID: usize = 200;

impl Handle<ShareList> for ShoppingList {
    fn handle(&self, ctx: &Context, action: &ShareList) -> Events<Self> {
        self.open_to(ctx)?;
        if self.owner != ctx.user_id() {
            return Err(ShoppingListError::NotOwner(self.id));
        }
        let user_id = action.user_id.trim();
        if user_id.is_empty()
            || user_id.len() > MAX_USER_ID
            || !user_id.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(ShoppingListError::BadUserId);
        }
        if self.is_open_to(user_id) {
            // The owner, or shared already: nothing changes.
            return Ok(vec![]);
        }
        Ok(vec![
            ListShared {
                user_id: user_id.to_owned(),
            }
            .into(),
        ])
    }
}

impl Apply<ListShared> for ShoppingList {
    fn apply(&mut self, event: &ListShared) {
        self.shared_with.push(event.user_id.clone());
    }
}

impl Project<ListShared> for ShoppingList {
    async fn project(tx: &mut Tx<'_>, change: Change<'_, Self, ListShared>) -> Projected<Self> {
        let Change { event, after, .. } = change;
        tx.query("INSERT INTO shopping_list_shares (shopping_list_id, user_id) VALUES ($1, $2)")
            .bind(after.id)
            .bind(&event.user_id)
            .execute()
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use entities_runtime::testing::given;

    use super::super::given::{created, groceries_with_milk, item};
    use super::super::{AddItem, SetName};
    use super::*;

    fn as_user(user: &str) -> Context {
        Context::new(user)
    }

    fn shared_with_bob() -> entities_runtime::testing::Scenario<ShoppingList> {
        given([
            created("Groceries").into(),
            ListShared {
                user_id: "bob".into(),
            }
            .into(),
        ])
    }

    #[test]
    fn the_owner_shares_and_the_other_user_may_then_change_the_list() {
        let list = groceries_with_milk()
            .when(ShareList {
                user_id: " bob ".into(),
            })
            .then([ListShared {
                user_id: "bob".into(),
            }
            .into()]);
        assert!(list.is_open_to("bob"));
        shared_with_bob()
            .with_context(as_user("bob"))
            .when(AddItem {
                id: "e".into(),
                name: "eggs".into(),
                quantity: 6,
            })
            .then([item("e", "eggs", 6).into()]);
    }

    #[test]
    fn others_may_neither_change_nor_share_a_list_and_sharing_twice_changes_nothing() {
        groceries_with_milk()
            .with_context(as_user("mallory"))
            .when(SetName {
                name: "mine now".into(),
            })
            .then_refused(ShoppingListError::Forbidden(1));
        groceries_with_milk()
            .with_context(as_user("mallory"))
            .when(ShareList {
                user_id: "mallory".into(),
            })
            .then_refused(ShoppingListError::Forbidden(1));
        shared_with_bob()
            .with_context(as_user("bob"))
            .when(ShareList {
                user_id: "carol".into(),
            })
            .then_refused(ShoppingListError::NotOwner(1));
        // The owner, or a user shared with already: nothing changes.
        for user_id in ["test", "bob"] {
            shared_with_bob()
                .when(ShareList {
                    user_id: user_id.into(),
                })
                .then([]);
        }
        for user_id in ["", "caf\u{e9}"] {
            groceries_with_milk()
                .when(ShareList {
                    user_id: user_id.into(),
                })
                .then_refused(ShoppingListError::BadUserId);
        }
    }
}
