//! The ShoppingList of the original library, on `entities`: one module per feature, and the
//! read model its projections keep.

pub mod api;
pub mod outbox;
pub mod popular_items;
pub mod read_model;
pub mod server;
pub mod shopping_list;
pub mod streams;

pub use shopping_list::{ShoppingList, ShoppingListError};

/// The read-model tables, for `RuntimeBuilder::migrations`.
pub const MIGRATIONS: &[entities_runtime::Migration] = &[
    entities_runtime::Migration {
        version: 1,
        description: "shopping list read model",
        postgres: include_str!("../migrations/postgres/0001_read_model.sql"),
        sqlite: include_str!("../migrations/sqlite/0001_read_model.sql"),
    },
    entities_runtime::Migration {
        version: 2,
        description: "read models of the event log's subscriptions",
        postgres: include_str!("../migrations/postgres/0002_streams.sql"),
        sqlite: include_str!("../migrations/sqlite/0002_streams.sql"),
    },
    entities_runtime::Migration {
        version: 3,
        description: "owners of lists, and shares",
        postgres: include_str!("../migrations/postgres/0003_ownership.sql"),
        sqlite: include_str!("../migrations/sqlite/0003_ownership.sql"),
    },
];
