//! Two runtimes on one database: every write checks the version, a conflict catches up and
//! retries, and nothing is lost.

mod support;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Error, RuntimeBuilder};
use support::*;

on_both_backends!(
    two_runtimes_writing_the_same_entities_lose_no_update,
    a_conflict_catches_up_with_the_other_writer,
    conflicts_past_the_retry_bound_are_an_error_and_write_nothing,
);

/// The writers of two runtimes race on the same entities. Each runtime holds every entity at
/// version 1 before they start, so each entity's first write from the runtime that is second
/// to it conflicts: at least one conflict per entity, counted.
///
/// The retry bound is the most conflicts an action can meet here: each conflict is a commit of
/// the other runtime to that entity, holding at least one of its 45 actions there. (Sustained
/// contention from two nodes on one entity starves the one that must catch up: up to 17
/// conflicts in a row were seen, so the default of 5 is too few for this test.)
async fn two_runtimes_writing_the_same_entities_lose_no_update(backend: Backend) {
    const ACTIONS_OF_THE_OTHER_RUNTIME_PER_ENTITY: u32 = 3 * 15;
    let db = TestDatabase::new(backend).await;
    let bound = |b: RuntimeBuilder| b.max_attempts(ACTIONS_OF_THE_OTHER_RUNTIME_PER_ENTITY + 1);
    let first = runtime_with(&db, bound).await;
    let second = runtime_with(&db, |b| bound(b).migrate(false)).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let id = new_counter(&first, &format!("shared {n}")).await.id;
        assert_eq!(second.entity::<Counter>(id).get().await.unwrap().version, 1);
        ids.push(id);
    }
    let mut writers = Vec::new();
    for (r, runtime) in [first.clone(), second.clone()].into_iter().enumerate() {
        for &id in &ids {
            for w in 0..3 {
                let entity = runtime.entity::<Counter>(id);
                writers.push(tokio::spawn(async move {
                    for n in 0..15 {
                        let amount = 1 + (r * 1000 + w * 100 + n) as i64;
                        entity
                            .send_action(&ctx(), Add { amount })
                            .await
                            .expect("retried until it commits");
                    }
                }));
            }
        }
    }
    for writer in writers {
        writer.await.expect("writer finished");
    }
    let conflicts = first.metrics().conflicts + second.metrics().conflicts;
    let catch_ups = first.metrics().catch_ups + second.metrics().catch_ups;
    assert!(
        conflicts >= 4,
        "a conflict on each entity at least: {conflicts}"
    );
    assert!(catch_ups >= 4, "each conflict caught up: {catch_ups}");
    for &id in &ids {
        let stored = stored(&first, id).await;
        // 1 create + 2 runtimes x 3 writers x 15 actions
        assert_eq!(stored.version, Some(91));
        assert_eq!(stored.event_versions, (1..=91).collect::<Vec<_>>());
        let expected: i64 = (0..2)
            .flat_map(|r| {
                (0..3).flat_map(move |w| (0..15).map(move |n| 1 + (r * 1000 + w * 100 + n) as i64))
            })
            .sum();
        assert_eq!(stored.read_model.map(|row| row.1), Some(expected));
        let cold = cold_load(&db, id).await;
        assert_eq!((cold.version, cold.total), (91, expected));
    }
    first.shutdown().await;
    second.shutdown().await;
}

async fn a_conflict_catches_up_with_the_other_writer(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let first = runtime(&db).await;
    let second = runtime_with(&db, |b| b.migrate(false)).await;
    let id = new_counter(&first, "stale").await.id;
    assert_eq!(first.entity::<Counter>(id).get().await.unwrap().version, 1);

    second
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount: 5 })
        .await
        .unwrap();
    // `first` still holds version 1: its write conflicts, catches up, and is decided again.
    let after = first
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount: 7 })
        .await
        .unwrap();
    assert_eq!(
        (after.version, after.total, after.adds.clone()),
        (3, 12, vec![5, 7])
    );
    assert_eq!(stored(&first, id).await.event_versions, vec![1, 2, 3]);
    first.shutdown().await;
    second.shutdown().await;
}

async fn conflicts_past_the_retry_bound_are_an_error_and_write_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let first = runtime_with(&db, |b| b.max_attempts(1)).await;
    let second = runtime_with(&db, |b| b.migrate(false)).await;
    let id = new_counter(&first, "contested").await.id;
    second
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount: 5 })
        .await
        .unwrap();
    let before = stored(&first, id).await;

    let result = first
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount: 7 })
        .await;
    assert!(
        matches!(result, Err(Error::Conflict { entity_type: "counter", id: got, attempts: 1 }) if got == id),
        "{result:?}"
    );
    assert_eq!(
        stored(&first, id).await,
        before,
        "the conflicting write left nothing behind"
    );
    // The failed attempt caught up: the next call decides on fresh state and commits.
    let after = first
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount: 7 })
        .await
        .unwrap();
    assert_eq!((after.version, after.total), (3, 12));
    first.shutdown().await;
    second.shutdown().await;
}
