//! The ShoppingList entity: its state, its errors, and the features that change it.

mod add_item;
mod change_quantity;
mod create;
mod move_item;
mod remove_item;
mod set_name;
mod share;

pub use add_item::{AddItem, ItemAdded};
pub use change_quantity::{ChangeQuantity, QuantityChanged};
pub use create::{CreateShoppingList, ShoppingListCreated};
pub use move_item::{Moved, move_item};
pub use remove_item::{ItemRemoved, RemoveItem};
pub use set_name::{NameChanged, SetName};
pub use share::{ListShared, ShareList};

use entities_runtime::{
    Context, Create, EntityId, ProjectionError, Version, entity, is_unique_violation, sqlx,
};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

#[entity(
    type = "shopping_list",
    actions(CreateShoppingList, SetName, AddItem, RemoveItem, ChangeQuantity, ShareList),
    events(ShoppingListCreated, NameChanged, ItemAdded, ItemRemoved, QuantityChanged, ListShared),
    error = ShoppingListError,
    derive(PartialEq)
)]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShoppingList {
    pub id: EntityId,
    pub version: Version,
    pub name: String,
    pub items: Vec<Item>,
    /// The user who created it: it may read, change and share it.
    #[serde(default = "anonymous")]
    pub owner: String,
    /// The users it is shared with: they may read and change it, not share it.
    #[serde(default)]
    pub shared_with: Vec<String>,
}

/// The owner of a list made before lists had owners: their events name none.
pub(crate) fn anonymous() -> String {
    Context::ANONYMOUS.to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub name: String,
    pub quantity: i32,
}

/// What the ShoppingList refuses, in words a person understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShoppingListError {
    #[error("shopping list {0} already exists")]
    AlreadyExists(EntityId),
    #[error("the name must not be blank")]
    BlankName,
    #[error("a shopping list named `{0}` already exists")]
    NameTaken(String),
    #[error("the quantity must be greater than 0, not {0}")]
    QuantityNotPositive(i32),
    #[error("no item `{0}` on this list")]
    ItemNotFound(String),
    #[error("item `{0}` is on this list already")]
    ItemExists(String),
    #[error("a name must be at most {NAME_LIMIT} characters, not {0}")]
    NameTooLong(usize),
    #[error("a name must be one line of text, without control characters (U+{0:04X})")]
    ControlCharacter(u32),
    #[error("a list holds at most {ITEM_LIMIT} items")]
    ListFull,
    #[error("shopping list {0} is not yours, nor shared with you")]
    Forbidden(EntityId),
    #[error("only the owner of shopping list {0} may share it")]
    NotOwner(EntityId),
    #[error("a user id must be 1 to 200 printable ASCII characters")]
    BadUserId,
}

/// The longest name of a list or an item, in characters (after normalisation).
pub const NAME_LIMIT: usize = 200;
/// The most items on one list.
pub const ITEM_LIMIT: usize = 200;

impl Create for ShoppingList {
    /// The new list's name.
    type Args = String;

    fn create(
        ctx: &Context,
        id: EntityId,
        name: String,
    ) -> Result<ShoppingListAction, ShoppingListError> {
        Ok(CreateShoppingList {
            id,
            name,
            owner: ctx.user_id().to_owned(),
        }
        .into())
    }
}

impl ShoppingList {
    /// Whether `user` may read and change the list: its owner, or a user it is shared with.
    pub fn is_open_to(&self, user: &str) -> bool {
        self.owner == user || self.shared_with.iter().any(|shared| shared == user)
    }

    /// `Forbidden` unless the caller may change the list: checked as each action is decided, so
    /// no read-then-act race can let another user in.
    fn open_to(&self, ctx: &Context) -> Result<(), ShoppingListError> {
        if self.is_open_to(ctx.user_id()) {
            Ok(())
        } else {
            Err(ShoppingListError::Forbidden(self.id))
        }
    }

    /// The item `item_id`; `ItemNotFound` when it is not on the list.
    pub fn item(&self, item_id: &str) -> Result<&Item, ShoppingListError> {
        self.items
            .iter()
            .find(|item| item.id == item_id)
            .ok_or_else(|| ShoppingListError::ItemNotFound(item_id.to_owned()))
    }

    fn item_mut(&mut self, item_id: &str) -> Option<&mut Item> {
        self.items.iter_mut().find(|item| item.id == item_id)
    }
}

/// A name as stored: NFC-normalised (so "Café" typed precomposed or decomposed is one name,
/// and one taken name), trimmed, one line, at most [`NAME_LIMIT`] characters, and showing
/// something: a name of spaces, zero-width or other invisible characters is blank.
fn valid_name(name: &str) -> Result<String, ShoppingListError> {
    // One line, read in one direction: line and paragraph separators and the bidirectional
    // overrides and isolates (which can make a name display as another) are refused too.
    if let Some(control) = name.chars().find(|&c| {
        c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }) {
        return Err(ShoppingListError::ControlCharacter(control.into()));
    }
    let name: String = name.nfc().collect();
    // Spaces and invisible format characters (zero-width space, BOM, joiners) at the edges are
    // trimmed: "\u{200B}Milk" is "Milk", and taken if "Milk" is.
    let name = name.trim_matches(|c: char| c.is_whitespace() || is_format(c));
    if !name.chars().any(shows) {
        return Err(ShoppingListError::BlankName);
    }
    let length = name.chars().count();
    if length > NAME_LIMIT {
        return Err(ShoppingListError::NameTooLong(length));
    }
    Ok(name.to_owned())
}

/// Whether `c` is a format character (general category Cf): zero-width, joiners, BOM.
fn is_format(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.general_category() == GeneralCategory::Format
}

/// Whether a character shows on its own: not a space or separator, not a format character
/// (zero-width space and joiners, the byte-order mark, soft hyphen), not private-use or
/// unassigned, not a combining mark, and not one of the letters Unicode draws blank (Hangul
/// fillers, the blank Braille pattern).
fn shows(c: char) -> bool {
    use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};
    let invisible_group = matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Separator | GeneralCategoryGroup::Other | GeneralCategoryGroup::Mark
    );
    !(invisible_group
        || c.is_whitespace()
        || matches!(
            c,
            '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}'
        ))
}

fn valid_quantity(quantity: i32) -> Result<i32, ShoppingListError> {
    if quantity > 0 {
        Ok(quantity)
    } else {
        Err(ShoppingListError::QuantityNotPositive(quantity))
    }
}

/// The read model's unique index on names is what makes names unique across lists: its
/// violation is a taken name, in the domain's own words.
fn name_taken(name: &str) -> impl FnOnce(sqlx::Error) -> ProjectionError<ShoppingListError> + '_ {
    move |error| {
        if is_unique_violation(&error) {
            ProjectionError::Rejected(ShoppingListError::NameTaken(name.to_owned()))
        } else {
            ProjectionError::Database(error)
        }
    }
}

/// What the features' unit tests share: lists as their events leave them.
#[cfg(test)]
mod given {
    use entities_runtime::testing::{Scenario, given};

    use super::{ItemAdded, ShoppingList, ShoppingListCreated};

    /// The list with id 1, named `name`.
    /// Owned by `test`, the user scenarios send actions as.
    pub fn created(name: &str) -> ShoppingListCreated {
        ShoppingListCreated {
            id: 1,
            name: name.to_owned(),
            owner: "test".to_owned(),
        }
    }

    pub fn item(id: &str, name: &str, quantity: i32) -> ItemAdded {
        ItemAdded {
            id: id.to_owned(),
            name: name.to_owned(),
            quantity,
        }
    }

    /// List 1, "Groceries", with 2 `milk` (item `m`).
    pub fn groceries_with_milk() -> Scenario<ShoppingList> {
        given([created("Groceries").into(), item("m", "milk", 2).into()])
    }
}
