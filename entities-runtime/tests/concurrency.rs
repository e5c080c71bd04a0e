//! Concurrent writers to one entity lose nothing: actions are serialised by its task.

mod support;

use entities_runtime::Backend;
use entities_runtime::testing::TestDatabase;
use support::*;

on_both_backends!(fifty_writers_of_twenty_actions_lose_nothing);

async fn fifty_writers_of_twenty_actions_lose_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = new_counter(&runtime, "busy").await;
    let mut writers = Vec::new();
    for writer in 0..50i64 {
        let entity = runtime.entity::<Counter>(counter.id);
        writers.push(tokio::spawn(async move {
            for n in 0..20i64 {
                entity
                    .send_action(
                        &ctx(),
                        Add {
                            amount: writer * 100 + n + 1,
                        },
                    )
                    .await
                    .expect("every action commits");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer finished");
    }

    let live = runtime.entity::<Counter>(counter.id).get().await.unwrap();
    assert_eq!(live.version, 1001);
    let expected_total: i64 = (0..50i64)
        .flat_map(|w| (0..20i64).map(move |n| w * 100 + n + 1))
        .sum();
    assert_eq!(live.total, expected_total);
    let mut amounts = live.adds.clone();
    amounts.sort_unstable();
    let mut expected: Vec<i64> = (0..50i64)
        .flat_map(|w| (0..20i64).map(move |n| w * 100 + n + 1))
        .collect();
    expected.sort_unstable();
    assert_eq!(amounts, expected, "each action applied exactly once");

    let stored = stored(&runtime, counter.id).await;
    assert_eq!(stored.version, Some(1001));
    assert_eq!(
        stored.event_versions,
        (1..=1001).collect::<Vec<_>>(),
        "contiguous, none lost or doubled"
    );
    assert_eq!(stored.actions, Some(1001));
    assert_eq!(
        stored.read_model,
        Some(("busy".to_owned(), expected_total, 1001))
    );

    runtime.shutdown().await;
    exec(
        &runtime_with(&db, |b| b.migrate(false)).await,
        "DELETE FROM {entities}entity_snapshots",
    )
    .await;
    assert_eq!(
        cold_load(&db, counter.id).await,
        *live,
        "a full replay gives the live state"
    );
}
