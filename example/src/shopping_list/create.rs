//! Creating a list (the seed's CreateShoppingList): rejected if the list exists.

use entities_runtime::{
    Action, Apply, Change, Context, EntityId, Event, Events, Handle, Project, Projected, Tx,
};
use serde::{Deserialize, Serialize};

use super::{ShoppingList, ShoppingListError, name_taken, valid_name};

#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct CreateShoppingList {
    pub id: EntityId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
pub struct ShoppingListCreated {
    pub id: EntityId,
    pub name: String,
}

impl Handle<CreateShoppingList> for ShoppingList {
    fn handle(&self, _ctx: &Context, action: &CreateShoppingList) -> Events<Self> {
        if self.version > 0 {
            return Err(ShoppingListError::AlreadyExists(self.id));
        }
        let name = valid_name(&action.name)?;
        Ok(vec![
            ShoppingListCreated {
                id: action.id,
                name,
            }
            .into(),
        ])
    }
}

impl Apply<ShoppingListCreated> for ShoppingList {
    fn apply(&mut self, event: &ShoppingListCreated) {
        self.id = event.id;
        self.name = event.name.clone();
    }
}

impl Project<ShoppingListCreated> for ShoppingList {
    async fn project(
        tx: &mut Tx<'_>,
        change: Change<'_, Self, ShoppingListCreated>,
    ) -> Projected<Self> {
        let Change { event, .. } = change;
        tx.query("INSERT INTO shopping_lists (id, name) VALUES ($1, $2)")
            .bind(event.id)
            .bind(&event.name)
            .execute()
            .await
            .map_err(name_taken(&event.name))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use entities_runtime::testing::given;

    use super::super::given::created;
    use super::*;

    #[test]
    fn a_list_is_created_with_its_trimmed_name() {
        let list = given::<ShoppingList>([])
            .when_created("  Groceries ".into())
            .then([created("Groceries").into()]);
        assert_eq!(
            (list.id, list.name.as_str(), list.version),
            (1, "Groceries", 1)
        );
    }

    #[test]
    fn a_blank_name_is_refused() {
        given::<ShoppingList>([])
            .when_created(" ".into())
            .then_refused(ShoppingListError::BlankName);
    }

    #[test]
    fn a_list_is_not_created_twice() {
        given::<ShoppingList>([created("Groceries").into()])
            .when(CreateShoppingList {
                id: 1,
                name: "Again".into(),
            })
            .then_refused(ShoppingListError::AlreadyExists(1));
    }
}
