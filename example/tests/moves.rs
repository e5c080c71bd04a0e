//! `moveItem` under concurrency, over real HTTP: 16 clients move items at random among 10
//! lists while a reader counts the read model's items in single SQL statements. The count never
//! changes (no moment where an item is on two lists or none); afterwards every item is on
//! exactly one list, and memory, a replay and the read model agree, versions contiguous.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use entities_runtime::{Backend, Runtime};
use example::ShoppingList;
use serde_json::Value;
use support::{Server, on_both_backends};

on_both_backends!(items_moved_concurrently_are_never_lost_or_doubled);

const LISTS: usize = 10;
const ITEMS_PER_LIST: usize = 3;
const CLIENTS: u64 = 16;
const MOVES_PER_CLIENT: usize = 20;

/// A small deterministic generator: each client its own sequence, no dependency.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Every list's items, by list id, as the API answers from memory.
async fn lists(server: &Server) -> BTreeMap<i64, Vec<String>> {
    let (_, body) = server
        .graphql("{ shoppingLists(limit: 100) { id items { id } } }", &[])
        .await;
    body["data"]["shoppingLists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|list| {
            let items = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_owned())
                .collect();
            (list["id"].as_i64().unwrap(), items)
        })
        .collect()
}

async fn items_moved_concurrently_are_never_lost_or_doubled(backend: Backend) {
    let server = Arc::new(Server::start(backend).await);
    for n in 0..LISTS {
        let (_, created) = server
            .graphql(
                &format!(r#"mutation {{ createShoppingList(name: "list {n}") {{ id }} }}"#),
                &[],
            )
            .await;
        let id = created["data"]["createShoppingList"]["id"]
            .as_i64()
            .unwrap();
        let items: Vec<String> = (0..ITEMS_PER_LIST)
            .map(|i| format!(r#"{{name: "item {n}.{i}", quantity: {}}}"#, i + 1))
            .collect();
        let (_, added) = server
            .graphql(
                &format!(
                    "mutation {{ addItems(shoppingListId: {id}, items: [{}]) {{ version }} }}",
                    items.join(", ")
                ),
                &[],
            )
            .await;
        assert!(added["data"]["addItems"]["version"].is_i64(), "{added}");
    }
    const TOTAL: i64 = (LISTS * ITEMS_PER_LIST) as i64;

    let writing = Arc::new(AtomicBool::new(true));
    let reader = {
        let (server, writing) = (server.clone(), writing.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while writing.load(Ordering::SeqCst) {
                let (count,): (i64,) = server
                    .runtime
                    .database()
                    .query("SELECT count(*) FROM shopping_list_items")
                    .fetch_one()
                    .await
                    .unwrap();
                assert_eq!(count, TOTAL, "read {reads}: an item lost or doubled");
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        })
    };
    let clients = (0..CLIENTS).map(|client| {
        let server = server.clone();
        tokio::spawn(async move {
            let mut random = XorShift(0x9E37_79B9_7F4A_7C15 ^ ((client + 1) * 0x2545_F491));
            let mut moved = 0;
            for _ in 0..MOVES_PER_CLIENT {
                let lists = lists(&server).await;
                let ids: Vec<i64> = lists.keys().copied().collect();
                let from = ids[random.below(ids.len())];
                let Some(item) = lists[&from].get(random.below(lists[&from].len().max(1))) else {
                    continue;
                };
                let to = ids[(ids.iter().position(|&id| id == from).unwrap() + 1 + random.below(ids.len() - 1)) % ids.len()];
                let (status, body) = server
                    .graphql(&format!(r#"mutation {{ moveItem(fromListId: {from}, toListId: {to}, itemId: "{item}") {{ to {{ id }} }} }}"#), &[])
                    .await;
                assert_eq!(status, 200);
                match &body["errors"][0]["extensions"]["code"] {
                    Value::Null => moved += 1,
                    // Another client moved it away since this one read the lists.
                    code if code == "NOT_FOUND" => {}
                    _ => panic!("{body}"),
                }
            }
            moved
        })
    });
    let mut moved = 0;
    for client in futures::future::join_all(clients).await {
        moved += client.unwrap();
    }
    writing.store(false, Ordering::SeqCst);
    let reads = reader.await.unwrap();
    assert!(moved >= CLIENTS as usize, "moves made: {moved}");
    assert!(reads > 0, "the reader read while the clients wrote");

    // Every item on exactly one list, in memory.
    let live = lists(&server).await;
    let mut all: Vec<&String> = live.values().flatten().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len() as i64, TOTAL);
    assert_eq!(live.values().map(Vec::len).sum::<usize>() as i64, TOTAL);

    // Memory, a replay by a runtime that never saw the lists, and the read model agree.
    let fresh = Runtime::builder(server.database_url())
        .migrate(false)
        .build()
        .await
        .unwrap();
    for (&id, items) in &live {
        let in_memory = server
            .runtime
            .entity::<ShoppingList>(id)
            .get()
            .await
            .unwrap();
        let replayed = fresh.entity::<ShoppingList>(id).get().await.unwrap();
        assert_eq!(*replayed, *in_memory);
        let mut read_model: Vec<(String,)> = server
            .runtime
            .database()
            .query("SELECT id FROM shopping_list_items WHERE shopping_list_id = $1")
            .bind(id)
            .fetch_all()
            .await
            .unwrap();
        read_model.sort();
        let mut expected = items.clone();
        expected.sort();
        assert_eq!(
            read_model.into_iter().map(|(id,)| id).collect::<Vec<_>>(),
            expected
        );
        let versions: Vec<i64> = server
            .runtime
            .history::<ShoppingList>(id)
            .await
            .unwrap()
            .iter()
            .map(|event| event.version)
            .collect();
        assert_eq!(versions, (1..=in_memory.version).collect::<Vec<_>>());
    }
    fresh.shutdown().await;
}
