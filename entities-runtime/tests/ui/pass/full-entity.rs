//! Every key of `#[entity]`, `#[action]` and `#[event]`, with the runtime reached through a
//! re-export (`crate = ...`), as an application crate that wraps the runtime would.

mod runtime {
    pub use entities_runtime::*;
}

use runtime::{
    Action, Apply, Change, Context, Entity, EntityId, Event, Events, Handle, Project, Projected,
    Tagged, Tx, Version, entity,
};
use serde::{Deserialize, Serialize};

#[entity(
    type = "shopping_list",
    actions(SetName, AddItem, Clear),
    events(NameChanged, ItemAdded, events::Cleared),
    error = ShoppingListError,
    crate = crate::runtime,
)]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShoppingList {
    pub id: EntityId,
    pub version: Version,
    pub name: String,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ShoppingListError {
    #[error("the name `{0}` is taken")]
    NameTaken(String),
}

#[derive(Debug, Clone, Action, Serialize, Deserialize)]
#[action(crate = crate::runtime)]
pub struct SetName {
    pub name: String,
}

#[derive(Debug, Clone, Action, Serialize, Deserialize)]
#[action(rename = "add_item", alias = "AddItem", alias = "AddItemV0", crate = crate::runtime)]
pub struct AddItem(pub String);

#[derive(Debug, Clone, Action, Serialize, Deserialize)]
#[action(crate = crate::runtime)]
pub enum Clear {
    All,
    Matching { prefix: String },
}

#[derive(Debug, Clone, Event, Serialize, Deserialize)]
#[event(crate = crate::runtime)]
pub struct NameChanged {
    pub name: String,
}

#[derive(Debug, Clone, Event, Serialize, Deserialize)]
#[event(rename = "item_added", crate = crate::runtime)]
#[event(alias = "ItemAdded")]
pub struct ItemAdded {
    pub item: Item,
}

mod events {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, crate::runtime::Event, Serialize, Deserialize)]
    #[event(crate = crate::runtime)]
    pub struct Cleared;
}

impl Handle<SetName> for ShoppingList {
    fn handle(&self, _: &Context, action: &SetName) -> Events<Self> {
        if action.name == "taken" {
            return Err(ShoppingListError::NameTaken(action.name.clone()));
        }
        Ok(vec![
            NameChanged {
                name: action.name.clone(),
            }
            .into(),
        ])
    }
}

impl Handle<AddItem> for ShoppingList {
    fn handle(&self, _: &Context, action: &AddItem) -> Events<Self> {
        Ok(vec![
            ItemAdded {
                item: Item {
                    name: action.0.clone(),
                },
            }
            .into(),
        ])
    }
}

impl Handle<Clear> for ShoppingList {
    fn handle(&self, _: &Context, _: &Clear) -> Events<Self> {
        Ok(vec![events::Cleared.into()])
    }
}

impl Apply<NameChanged> for ShoppingList {
    fn apply(&mut self, event: &NameChanged) {
        self.name = event.name.clone();
    }
}

impl Apply<ItemAdded> for ShoppingList {
    fn apply(&mut self, event: &ItemAdded) {
        self.items.push(event.item.clone());
    }
}

impl Apply<events::Cleared> for ShoppingList {
    fn apply(&mut self, _: &events::Cleared) {
        self.items.clear();
    }
}

impl Project<NameChanged> for ShoppingList {
    async fn project(tx: &mut Tx<'_>, change: Change<'_, Self, NameChanged>) -> Projected<Self> {
        let Change { event, after, .. } = change;
        tx.query("UPDATE shopping_lists SET name = $1 WHERE id = $2")
            .bind(event.name.clone())
            .bind(after.id)
            .execute()
            .await?;
        Ok(())
    }
}

impl Project<events::Cleared> for ShoppingList {
    async fn project(_: &mut Tx<'_>, _: Change<'_, Self, events::Cleared>) -> Projected<Self> {
        Ok(())
    }
}

/// The generated `project` is `Send`, as the runtime's tasks need.
fn assert_send<T: Send>(_: T) {}

fn main() {
    let list = ShoppingList::new(7);
    assert_eq!((list.id(), list.version()), (7, 0));
    let action = ShoppingListAction::from(AddItem("milk".into()));
    assert_eq!(action.type_tag(), "add_item");
    assert!(matches!(
        ShoppingListAction::decode("AddItemV0", 1, "\"eggs\""),
        Ok(ShoppingListAction::AddItem(_))
    ));
    let event = ShoppingListEvent::from(events::Cleared);
    assert!(ShoppingList::is_projected(&event));
    assert!(!ShoppingList::is_projected(
        &ItemAdded {
            item: Item { name: "x".into() }
        }
        .into()
    ));
    assert_eq!(<ShoppingList as Entity>::TYPE, "shopping_list");
    assert_eq!(<SetName as Action>::TYPE, "SetName");
    assert_eq!(<ItemAdded as Event>::ALIASES, ["ItemAdded"]);
    let _ = Clear::Matching {
        prefix: String::new(),
    };
    let _ = Clear::All;
    let _ = |tx: &'static mut Tx<'static>, ctx: &'static Context, list: &'static ShoppingList| {
        assert_send(<ShoppingList as Entity>::project_event(
            tx, ctx, list, &event, list,
        ));
    };
}
