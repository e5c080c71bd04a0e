//! W1, long history: one list, `n` sequential AddItems from one client. Each action's latency,
//! so the report can compare the first actions with the last.

use std::time::{Duration, Instant};

use entities_runtime::Backend;
use example::ShoppingList;
use example::shopping_list::AddItem;

use super::{create_baseline_lists, create_lists, ctx, pool_size};
use crate::db::BenchDb;

const WARM_UP: usize = 5;

pub struct W1 {
    pub runtime: Vec<Duration>,
    pub baseline: Vec<Duration>,
    /// The runtime again, each action with an idempotency key of its own (on another list).
    pub keyed: Vec<Duration>,
}

pub async fn run(backend: Backend, n: usize) -> W1 {
    let db = BenchDb::new(backend).await;
    let ctx = ctx();

    let runtime = db.runtime(pool_size(1)).await;
    let ids = create_lists(&runtime, 3, "w1").await;
    // Untimed actions on another list first: the pool's connection and its prepared
    // statements are the same for every timed action.
    let warm_up = runtime.entity::<ShoppingList>(ids[1]);
    for i in 0..WARM_UP {
        warm_up
            .send_action(&ctx, AddItem::new(format!("warm-up {i}"), 1))
            .await
            .expect("AddItem");
    }
    let list = runtime.entity::<ShoppingList>(ids[0]);
    let mut ours = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        list.send_action(&ctx, AddItem::new(format!("item {i}"), 1))
            .await
            .expect("AddItem");
        ours.push(started.elapsed());
    }
    // The cost of a key: the same actions, each keyed (a lookup before, a key row with it).
    let list = runtime.entity::<ShoppingList>(ids[2]);
    let mut keyed = Vec::with_capacity(n);
    for i in 0..n {
        let ctx = ctx.clone().with_idempotency_key(format!("w1 {i}"));
        let started = Instant::now();
        list.send_action(&ctx, AddItem::new(format!("item {i}"), 1))
            .await
            .expect("AddItem");
        keyed.push(started.elapsed());
    }
    runtime.shutdown().await;

    let baseline = db.baseline(pool_size(1)).await;
    let mut lists = create_baseline_lists(&baseline, 2, "w1 baseline").await;
    for i in 0..WARM_UP {
        baseline
            .add_item(&ctx, &mut lists[1], AddItem::new(format!("warm-up {i}"), 1))
            .await;
    }
    let list = &mut lists[0];
    let mut theirs = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        baseline
            .add_item(&ctx, list, AddItem::new(format!("item {i}"), 1))
            .await;
        theirs.push(started.elapsed());
    }
    baseline.close().await;
    db.drop_database().await;
    W1 {
        runtime: ours,
        baseline: theirs,
        keyed,
    }
}
