//! Reads of the read model the projections keep (`shopping_lists`, `shopping_list_items`).

use entities_runtime::sqlx;
use entities_runtime::{EntityId, Runtime};

use crate::shopping_list::Item;

/// Runs `query_as(sql)` with its binds on whichever backend the runtime uses.
macro_rules! fetch_all {
    ($runtime:expr, $sql:expr $(, $bind:expr)*) => {
        if let Some(pool) = $runtime.postgres_pool() {
            sqlx::query_as($sql)$(.bind($bind))*.fetch_all(pool).await
        } else if let Some(pool) = $runtime.sqlite_pool() {
            sqlx::query_as($sql)$(.bind($bind))*.fetch_all(pool).await
        } else {
            unreachable!("a runtime has a Postgres or a SQLite pool")
        }
    };
}

/// A row of `shopping_lists`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRow {
    pub id: EntityId,
    pub name: String,
}

/// A page of the lists, ordered by id.
pub async fn lists(
    runtime: &Runtime,
    limit: i64,
    offset: i64,
) -> Result<Vec<ListRow>, sqlx::Error> {
    let rows: Vec<(EntityId, String)> = fetch_all!(
        runtime,
        "SELECT id, name FROM shopping_lists ORDER BY id LIMIT $1 OFFSET $2",
        limit,
        offset
    )?;
    Ok(rows
        .into_iter()
        .map(|(id, name)| ListRow { id, name })
        .collect())
}

/// The items of a list, in the order they were added.
pub async fn items(runtime: &Runtime, list_id: EntityId) -> Result<Vec<Item>, sqlx::Error> {
    let rows: Vec<(String, String, i32)> = fetch_all!(
        runtime,
        "SELECT id, name, quantity FROM shopping_list_items \
         WHERE shopping_list_id = $1 ORDER BY added_in_version",
        list_id
    )?;
    Ok(rows
        .into_iter()
        .map(|(id, name, quantity)| Item { id, name, quantity })
        .collect())
}
