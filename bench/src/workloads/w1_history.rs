//! W1, long history: one list, `n` sequential actions from one client; each action's latency,
//! so the report can compare the first actions with the last.
//!
//! The list is full first (set-up, untimed: [`ITEM_LIMIT`] items, as a list holds at most that
//! many), then each action changes one of its items' quantity, round the items: the history
//! grows by `n` events while the state stays a full list.

use std::time::{Duration, Instant};

use entities_runtime::{Backend, Context, EntityId, Runtime};
use example::ShoppingList;
use example::shopping_list::{AddItem, ChangeQuantity, ITEM_LIMIT};

use super::{create_baseline_lists, create_lists, ctx, pool_size};
use crate::baseline::{Baseline, Entity};
use crate::db::BenchDb;

const WARM_UP: usize = 5;

pub struct W1 {
    pub runtime: Vec<Duration>,
    pub baseline: Vec<Duration>,
    /// The runtime again, each action with an idempotency key of its own (on another list).
    pub keyed: Vec<Duration>,
    /// On Postgres, pgbench's rate for the same actions by hand (see [`crate::pgbench`]).
    pub pgbench: Option<f64>,
}

/// The `i`th timed action: the next item round the list, to a quantity it never had.
fn action(items: &[String], i: usize) -> ChangeQuantity {
    ChangeQuantity {
        item_id: items[i % items.len()].clone(),
        quantity: i32::try_from(i / items.len()).expect("a quantity") + 2,
    }
}

/// Fills list `id` with [`ITEM_LIMIT`] items of quantity 1; returns their ids.
async fn fill(runtime: &Runtime, ctx: &Context, id: EntityId) -> Vec<String> {
    let list = runtime.entity::<ShoppingList>(id);
    let items: Vec<AddItem> = (0..ITEM_LIMIT)
        .map(|i| AddItem::new(format!("item {i}"), 1))
        .collect();
    for chunk in items.chunks(100) {
        list.send_actions(ctx, chunk.to_vec())
            .await
            .expect("AddItems");
    }
    items.into_iter().map(|item| item.id).collect()
}

async fn fill_baseline(baseline: &Baseline, ctx: &Context, list: &mut Entity) -> Vec<String> {
    let mut ids = Vec::with_capacity(ITEM_LIMIT);
    for i in 0..ITEM_LIMIT {
        let item = AddItem::new(format!("item {i}"), 1);
        ids.push(item.id.clone());
        baseline.add_item(ctx, list, item).await;
    }
    ids
}

pub async fn run(backend: Backend, n: usize) -> W1 {
    let db = BenchDb::new(backend).await;
    let ctx = ctx();

    let runtime = db.runtime(pool_size(1)).await;
    let ids = create_lists(&runtime, 3, "w1").await;
    let (items, warm_up_items, keyed_items) = (
        fill(&runtime, &ctx, ids[0]).await,
        fill(&runtime, &ctx, ids[1]).await,
        fill(&runtime, &ctx, ids[2]).await,
    );
    // Untimed actions on another list first: the pool's connection and its prepared
    // statements are the same for every timed action.
    let warm_up = runtime.entity::<ShoppingList>(ids[1]);
    for i in 0..WARM_UP {
        warm_up
            .send_action(&ctx, action(&warm_up_items, i))
            .await
            .expect("ChangeQuantity");
    }
    let list = runtime.entity::<ShoppingList>(ids[0]);
    let mut ours = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        list.send_action(&ctx, action(&items, i))
            .await
            .expect("ChangeQuantity");
        ours.push(started.elapsed());
    }
    // The cost of a key: the same actions, each keyed (a lookup before, a key row with it).
    let list = runtime.entity::<ShoppingList>(ids[2]);
    let mut keyed = Vec::with_capacity(n);
    for i in 0..n {
        let ctx = ctx.clone().with_idempotency_key(format!("w1 {i}"));
        let started = Instant::now();
        list.send_action(&ctx, action(&keyed_items, i))
            .await
            .expect("ChangeQuantity");
        keyed.push(started.elapsed());
    }
    runtime.shutdown().await;

    let baseline = db.baseline(pool_size(1)).await;
    let mut lists = create_baseline_lists(&baseline, 2, "w1 baseline").await;
    let items = fill_baseline(&baseline, &ctx, &mut lists[0]).await;
    let warm_up_items = fill_baseline(&baseline, &ctx, &mut lists[1]).await;
    for i in 0..WARM_UP {
        baseline
            .change_quantity(&ctx, &mut lists[1], action(&warm_up_items, i))
            .await;
    }
    let list = &mut lists[0];
    let mut theirs = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        baseline
            .change_quantity(&ctx, list, action(&items, i))
            .await;
        theirs.push(started.elapsed());
    }
    let pgbench = match backend {
        Backend::Postgres => {
            Some(crate::pgbench::change_quantity(&db.url, list.id, &items[0], n).await)
        }
        Backend::Sqlite => None,
    };
    baseline.close().await;
    db.drop_database().await;
    W1 {
        runtime: ours,
        baseline: theirs,
        keyed,
        pgbench,
    }
}
