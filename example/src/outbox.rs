//! A side effect of renaming a list: a row in the `renamed_lists_outbox` table (and a log line),
//! written by a subscriber of the event log, where a mailer or webhook sender would pick it up.
//!
//! Delivery is at least once: a crash between handling an event and moving the checkpoint hands
//! the event over again. The handler is idempotent: its row is keyed by the event's place in the
//! log, so a second delivery inserts nothing (the log line does repeat: that is the contract).

use entities_runtime::{BoxError, Database, Logged};

use crate::ShoppingList;
use crate::shopping_list::{NameChanged, ShoppingListEvent};

/// The subscriber's name (its checkpoint's).
pub const NAME: &str = "renamed_lists_outbox";

/// Handles one event: a rename becomes an outbox row; other events are passed.
pub async fn handle(database: &Database, event: Logged<ShoppingList>) -> Result<(), BoxError> {
    let ShoppingListEvent::NameChanged(NameChanged { name }) = &event.event else {
        return Ok(());
    };
    let key = format!("{}:{}", event.at.transaction, event.at.position);
    let inserted = database
        .query(
            "INSERT INTO renamed_lists_outbox (log_position, list_id, name, renamed_by) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (log_position) DO NOTHING",
        )
        .bind(&key)
        .bind(event.entity_id)
        .bind(name)
        .bind(&event.created_by)
        .execute()
        .await?;
    tracing::info!(
        list_id = event.entity_id,
        name,
        redelivered = inserted == 0,
        "shopping list renamed: outbox row written"
    );
    Ok(())
}
