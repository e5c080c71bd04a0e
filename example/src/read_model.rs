//! Reads of the read model the projections keep (`shopping_lists`, `shopping_list_items`).

use entities_runtime::sqlx;
use entities_runtime::{EntityId, Runtime};

use crate::shopping_list::Item;

/// A row of `shopping_lists`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRow {
    pub id: EntityId,
    pub name: String,
}

/// A page of the lists `user` owns or is shared, ordered by id.
pub async fn lists(
    runtime: &Runtime,
    user: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<ListRow>, sqlx::Error> {
    let rows: Vec<(EntityId, String)> = runtime
        .database()
        .query(
            "SELECT id, name FROM shopping_lists WHERE owner = $3 \
             OR id IN (SELECT shopping_list_id FROM shopping_list_shares WHERE user_id = $3) \
             ORDER BY id LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .bind(user)
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name)| ListRow { id, name })
        .collect())
}

/// The items of a list, in the order they were added.
pub async fn items(runtime: &Runtime, list_id: EntityId) -> Result<Vec<Item>, sqlx::Error> {
    let rows: Vec<(String, String, i32)> = runtime
        .database()
        .query(
            "SELECT id, name, quantity FROM shopping_list_items \
             WHERE shopping_list_id = $1 ORDER BY added_in_version",
        )
        .bind(list_id)
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, quantity)| Item { id, name, quantity })
        .collect())
}
