//! W6, two-entity transactions: `moves` `moveItem`s (the example's own `move_item`: both lists
//! taken, the item removed from one and added to the other, in one transaction) from `clients`
//! clients over `entities` lists, each list starting with one item. Each client moves the items
//! among its own share of the lists (every `clients`-th), so no move waits on another's item.
//! The baseline locks both rows in id order (`SELECT ... FOR UPDATE`) and writes the same rows.

use std::collections::VecDeque;
use std::time::Instant;

use entities_runtime::{Backend, EntityId, Runtime};
use example::ShoppingList;
use example::shopping_list::{AddItem, move_item};

use super::{
    Driven, collect, concurrently, create_baseline_lists, create_lists, ctx, histogram, pool_size,
    record,
};
use crate::baseline::Baseline;
use crate::db::BenchDb;
use crate::workloads::Sizes;

pub struct W6 {
    pub runtime: Driven,
    pub baseline: Driven,
}

/// One client's lists, each with the ids of the items on it, as the client moved them.
type Share = Vec<(EntityId, VecDeque<String>)>;

/// Splits `lists` (with their one item each) among `clients`.
fn shares(lists: Vec<(EntityId, String)>, clients: usize) -> Vec<Share> {
    let mut shares: Vec<Share> = (0..clients).map(|_| Vec::new()).collect();
    for (n, (id, item)) in lists.into_iter().enumerate() {
        shares[n % clients].push((id, VecDeque::from([item])));
    }
    shares
}

/// The next move of a share: the first item of the `n`-th list that has one, to the list
/// after it. `None` for a share of fewer than two lists.
fn next_move(share: &mut Share, n: usize) -> Option<(EntityId, EntityId, String)> {
    let len = share.len();
    if len < 2 {
        return None;
    }
    let from = (0..len)
        .map(|k| (n + k) % len)
        .find(|&i| !share[i].1.is_empty())?;
    let to = (from + 1) % len;
    let item = share[from].1.pop_front()?;
    share[to].1.push_back(item.clone());
    Some((share[from].0, share[to].0, item))
}

pub async fn run(backend: Backend, sizes: &Sizes) -> W6 {
    let db = BenchDb::new(backend).await;
    let clients = sizes.w6_clients;
    let pool = pool_size(clients);
    let per_client = sizes.w6_moves / clients;

    let runtime = db.runtime(pool).await;
    let ids = create_lists(&runtime, sizes.w6_entities, "w6").await;
    let lists = with_an_item(&runtime, ids).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut share in shares(lists, clients) {
        let runtime = runtime.clone();
        tasks.push(tokio::spawn(async move {
            let (ctx, mut latencies, mut moves) = (ctx(), histogram(), 0);
            for n in 0..per_client {
                let Some((from, to, item)) = next_move(&mut share, n) else {
                    break;
                };
                let (from, to) = (runtime.entity(from), runtime.entity(to));
                let at = Instant::now();
                move_item(&runtime, &ctx, &from, &to, &item)
                    .await
                    .expect("moveItem");
                record(&mut latencies, at.elapsed());
                moves += 1;
            }
            (moves, latencies)
        }));
    }
    let ours = collect(started, tasks).await;
    runtime.shutdown().await;

    let baseline = db.baseline(pool).await;
    let lists = create_baseline_lists(&baseline, sizes.w6_entities, "w6 baseline").await;
    let lists = with_an_item_by_hand(&baseline, lists).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut share in shares(lists, clients) {
        let baseline = baseline.clone();
        tasks.push(tokio::spawn(async move {
            let (ctx, mut latencies, mut moves) = (ctx(), histogram(), 0);
            for n in 0..per_client {
                let Some((from, to, item)) = next_move(&mut share, n) else {
                    break;
                };
                let at = Instant::now();
                baseline.move_item(&ctx, from, to, &item).await;
                record(&mut latencies, at.elapsed());
                moves += 1;
            }
            (moves, latencies)
        }));
    }
    let theirs = collect(started, tasks).await;
    baseline.close().await;
    db.drop_database().await;
    assert_eq!(ours.actions, theirs.actions, "both made every move");
    W6 {
        runtime: ours,
        baseline: theirs,
    }
}

/// Gives each list one item through the runtime (set-up, not timed).
async fn with_an_item(runtime: &Runtime, ids: Vec<EntityId>) -> Vec<(EntityId, String)> {
    let runtime = runtime.clone();
    let count = ids.len();
    concurrently(count, 32, move |n| {
        let (runtime, id) = (runtime.clone(), ids[n]);
        async move {
            let action = AddItem::new(format!("item of {id}"), 1);
            let item = action.id.clone();
            runtime
                .entity::<ShoppingList>(id)
                .send_action(&ctx(), action)
                .await
                .expect("AddItem");
            (id, item)
        }
    })
    .await
}

/// Gives each list one item by hand (set-up, not timed).
async fn with_an_item_by_hand(
    baseline: &Baseline,
    lists: Vec<crate::baseline::Entity>,
) -> Vec<(EntityId, String)> {
    let mut with_items = Vec::with_capacity(lists.len());
    for mut list in lists {
        let action = AddItem::new(format!("item of {}", list.id), 1);
        let item = action.id.clone();
        baseline.add_item(&ctx(), &mut list, action).await;
        with_items.push((list.id, item));
    }
    with_items
}
