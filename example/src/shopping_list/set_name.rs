//! Renaming a list (the seed's SetName): the new name must not be blank nor taken.

use entities_runtime::{
    Action, Apply, Change, Context, Event, Events, Handle, Project, Projected, Tx,
};
use serde::{Deserialize, Serialize};

use super::{ShoppingList, name_taken, valid_name};

#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct SetName {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
pub struct NameChanged {
    pub name: String,
}

impl Handle<SetName> for ShoppingList {
    fn handle(&self, ctx: &Context, action: &SetName) -> Events<Self> {
        self.open_to(ctx)?;
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
    async fn project(tx: &mut Tx<'_>, change: Change<'_, Self, NameChanged>) -> Projected<Self> {
        let Change { event, after, .. } = change;
        tx.query("UPDATE shopping_lists SET name = $2 WHERE id = $1")
            .bind(after.id)
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

    use super::super::ShoppingListError;
    use super::super::given::created;
    use super::*;

    #[test]
    fn a_list_is_renamed_to_the_trimmed_name() {
        let list = given::<ShoppingList>([created("Groceries").into()])
            .when(SetName {
                name: " Market ".into(),
            })
            .then([NameChanged {
                name: "Market".into(),
            }
            .into()]);
        assert_eq!((list.name.as_str(), list.version), ("Market", 2));
    }

    #[test]
    fn the_same_name_records_nothing() {
        given::<ShoppingList>([created("Groceries").into()])
            .when(SetName {
                name: "Groceries".into(),
            })
            .then([]);
    }

    #[test]
    fn a_blank_name_is_refused() {
        given::<ShoppingList>([created("Groceries").into()])
            .when(SetName { name: "".into() })
            .then_refused(ShoppingListError::BlankName);
    }
}
