//! Renaming a list (the seed's SetName): the new name must not be blank nor taken.

use entities_runtime::{Action, Apply, Context, Event, Handle, Project, ProjectionError, Tx};
use serde::{Deserialize, Serialize};

use super::{ShoppingList, ShoppingListError, ShoppingListEvent, name_taken, valid_name};

#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct SetName {
    pub name: String,
}

#[derive(Debug, Clone, Event, Serialize, Deserialize)]
pub struct NameChanged {
    pub name: String,
}

impl Handle<SetName> for ShoppingList {
    fn handle(
        &self,
        _ctx: &Context,
        action: &SetName,
    ) -> Result<Vec<ShoppingListEvent>, ShoppingListError> {
        let name = valid_name(&action.name)?;
        if name == self.name {
            return Ok(vec![]);
        }
        Ok(vec![NameChanged { name }.into()])
    }
}

impl Apply<NameChanged> for ShoppingList {
    fn apply(&mut self, event: &NameChanged) {
        self.name = event.name.clone();
    }
}

impl Project<NameChanged> for ShoppingList {
    async fn project(
        tx: &mut Tx<'_>,
        _ctx: &Context,
        _before: &Self,
        event: &NameChanged,
        after: &Self,
    ) -> Result<(), ProjectionError<ShoppingListError>> {
        tx.query("UPDATE shopping_lists SET name = $2 WHERE id = $1")
            .bind(after.id)
            .bind(&event.name)
            .execute()
            .await
            .map_err(name_taken(&event.name))?;
        Ok(())
    }
}
