//! Creating a list (the seed's CreateShoppingList): rejected if the list exists.

use entities_runtime::{
    Action, Apply, Change, Context, EntityId, Event, Events, Handle, Project, Projected, Tx,
};
use serde::{Deserialize, Serialize};

use super::{ShoppingList, ShoppingListError, anonymous, name_taken, valid_name};

#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct CreateShoppingList {
    pub id: EntityId,
    pub name: String,
    /// The caller: it owns the list.
    #[serde(default = "anonymous")]
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
pub struct ShoppingListCreated {
    pub id: EntityId,
    pub name: String,
    /// Lists made before lists had owners belong to `anonymous`.
    #[serde(default = "anonymous")]
    pub owner: String,
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
                owner: action.owner.clone(),
            }
            .into(),
        ])
    }
}

impl Apply<ShoppingListCreated> for ShoppingList {
    fn apply(&mut self, event: &ShoppingListCreated) {
        self.id = event.id;
        self.name = event.name.clone();
        self.owner = event.owner.clone();
    }
}

impl Project<ShoppingListCreated> for ShoppingList {
    async fn project(
        tx: &mut Tx<'_>,
        change: Change<'_, Self, ShoppingListCreated>,
    ) -> Projected<Self> {
        let Change { event, .. } = change;
        tx.query("INSERT INTO shopping_lists (id, name, owner) VALUES ($1, $2, $3)")
            .bind(event.id)
            .bind(&event.name)
            .bind(&event.owner)
            .execute()
            .await
            .map_err(name_taken(&event.name))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use entities_runtime::testing::given;

    use super::super::NAME_LIMIT;
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
        for blank in [
            " ",
            "\u{200B}",
            " \u{FEFF}\u{00A0}\u{2060} ",
            "\u{3164}",
            "\u{0301}",
        ] {
            given::<ShoppingList>([])
                .when_created(blank.into())
                .then_refused(ShoppingListError::BlankName);
        }
    }

    #[test]
    fn invisible_characters_at_the_edges_are_trimmed() {
        given::<ShoppingList>([])
            .when_created("\u{200B}Milk\u{FEFF} ".into())
            .then([created("Milk").into()]);
    }

    #[test]
    fn a_name_is_stored_nfc_normalised() {
        let decomposed = "Cafe\u{0301}";
        let list = given::<ShoppingList>([])
            .when_created(decomposed.into())
            .then([created("Caf\u{00E9}").into()]);
        assert_eq!(list.name, "Caf\u{00E9}");
        // Joiners inside a name that shows are kept (an emoji sequence).
        given::<ShoppingList>([])
            .when_created("family \u{1F468}\u{200D}\u{1F467}".into())
            .then([created("family \u{1F468}\u{200D}\u{1F467}").into()]);
    }

    #[test]
    fn control_characters_and_long_names_are_refused() {
        for (name, control) in [
            ("a\u{0}b", 0),
            ("two\nlines", 10),
            ("tab\t", 9),
            ("line\u{2028}separated", 0x2028),
            ("\u{202E}reversed", 0x202E),
        ] {
            given::<ShoppingList>([])
                .when_created(name.into())
                .then_refused(ShoppingListError::ControlCharacter(control));
        }
        // Counted in characters after normalisation: 200 é typed decomposed fit.
        given::<ShoppingList>([])
            .when_created("e\u{0301}".repeat(NAME_LIMIT))
            .then([created(&"\u{00E9}".repeat(NAME_LIMIT)).into()]);
        given::<ShoppingList>([])
            .when_created("x".repeat(NAME_LIMIT + 1))
            .then_refused(ShoppingListError::NameTooLong(NAME_LIMIT + 1));
    }

    #[test]
    fn a_list_is_not_created_twice() {
        given::<ShoppingList>([created("Groceries").into()])
            .when(CreateShoppingList {
                id: 1,
                name: "Again".into(),
                owner: "test".into(),
            })
            .then_refused(ShoppingListError::AlreadyExists(1));
    }
}
