//! Stored data that no longer decodes: a snapshot falls back to a full replay, an event is a
//! `Corrupt` error naming the entity and the version.

mod support;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Error};
use support::*;

on_both_backends!(
    a_load_starts_from_the_snapshot_and_reads_no_event_before_it,
    a_snapshot_that_does_not_decode_falls_back_to_a_full_replay,
    an_event_payload_that_does_not_decode_is_corrupt,
    an_unknown_event_type_is_corrupt,
    a_gap_in_event_versions_is_corrupt,
    events_that_stop_short_of_the_entity_version_are_corrupt,
);

/// Entity `id` as a runtime that never saw it loads it, failure included.
async fn load_afresh(
    db: &TestDatabase,
    id: i64,
) -> Result<std::sync::Arc<Counter>, Error<CounterError>> {
    let fresh = runtime_with(db, |b| b.migrate(false)).await;
    let loaded = fresh.entity::<Counter>(id).get().await;
    fresh.shutdown().await;
    loaded
}

async fn written(db: &TestDatabase) -> (entities_runtime::Runtime, i64, Counter) {
    let runtime = runtime(db).await;
    let id = new_counter(&runtime, "stored").await.id;
    for amount in 1..=4 {
        runtime
            .entity::<Counter>(id)
            .send_action(&ctx(), Add { amount })
            .await
            .unwrap();
    }
    let live = (*runtime.entity::<Counter>(id).get().await.unwrap()).clone();
    runtime.shutdown().await;
    (runtime_with(db, |b| b.migrate(false)).await, id, live)
}

/// The events up to the snapshot are not read again: one of them made unreadable goes unnoticed
/// (a full replay would report it as corrupt).
async fn a_load_starts_from_the_snapshot_and_reads_no_event_before_it(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (raw, id, live) = written(&db).await;
    assert_eq!(snapshot_version(&raw, id).await, Some(5));
    exec(&raw, &format!(r#"UPDATE {{entities}}entity_events SET payload = '{{"amount": "three"}}' WHERE entity_id = {id} AND entity_version = 4"#)).await;
    assert_eq!(cold_load(&db, id).await, live);
    raw.shutdown().await;
}

async fn a_snapshot_that_does_not_decode_falls_back_to_a_full_replay(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (raw, id, live) = written(&db).await;
    assert_eq!(
        snapshot_version(&raw, id).await,
        Some(5),
        "shutdown snapshotted the entity"
    );
    exec(&raw, &format!(r#"UPDATE {{entities}}entity_snapshots SET snapshot = '{{"total": "not a number"}}' WHERE entity_id = {id}"#)).await;
    assert_eq!(cold_load(&db, id).await, live);
}

async fn an_event_payload_that_does_not_decode_is_corrupt(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (raw, id, _) = written(&db).await;
    exec(
        &raw,
        &format!("DELETE FROM {{entities}}entity_snapshots WHERE entity_id = {id}"),
    )
    .await;
    exec(&raw, &format!(r#"UPDATE {{entities}}entity_events SET payload = '{{"amount": "three"}}' WHERE entity_id = {id} AND entity_version = 4"#)).await;
    let fresh = runtime_with(&db, |b| b.migrate(false)).await;
    let result = fresh.entity::<Counter>(id).get().await;
    let Err(Error::Corrupt {
        entity_type,
        id: got,
        version,
        reason,
    }) = result
    else {
        panic!("expected corrupt data, got {result:?}");
    };
    assert_eq!((entity_type, got, version), ("counter", id, 4));
    assert!(
        reason.contains("Added"),
        "the reason names the event type: {reason}"
    );
    // Every call says so, and none changes anything.
    assert!(matches!(
        fresh
            .entity::<Counter>(id)
            .send_action(&ctx(), Add { amount: 1 })
            .await,
        Err(Error::Corrupt { version: 4, .. })
    ));
    assert_eq!(stored(&fresh, id).await.event_versions, vec![1, 2, 3, 4, 5]);
}

async fn an_unknown_event_type_is_corrupt(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (raw, id, _) = written(&db).await;
    exec(
        &raw,
        &format!("DELETE FROM {{entities}}entity_snapshots WHERE entity_id = {id}"),
    )
    .await;
    exec(&raw, &format!("UPDATE {{entities}}entity_events SET type = 'Subtracted' WHERE entity_id = {id} AND entity_version = 2")).await;
    let result = load_afresh(&db, id).await;
    let Err(Error::Corrupt {
        version: 2, reason, ..
    }) = result
    else {
        panic!("expected corrupt data at version 2, got {result:?}");
    };
    assert!(reason.contains("Subtracted"), "{reason}");
}

async fn a_gap_in_event_versions_is_corrupt(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (raw, id, _) = written(&db).await;
    exec(
        &raw,
        &format!("DELETE FROM {{entities}}entity_snapshots WHERE entity_id = {id}"),
    )
    .await;
    exec(
        &raw,
        &format!(
            "DELETE FROM {{entities}}entity_events WHERE entity_id = {id} AND entity_version = 3"
        ),
    )
    .await;
    let result = load_afresh(&db, id).await;
    assert!(
        matches!(result, Err(Error::Corrupt { version: 3, .. })),
        "{result:?}"
    );
}

/// The entity's row says version 5, its last event is gone: the load reports version 5 missing
/// rather than serving the state at 4.
async fn events_that_stop_short_of_the_entity_version_are_corrupt(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (raw, id, _) = written(&db).await;
    exec(
        &raw,
        &format!(
            "DELETE FROM {{entities}}entity_snapshots WHERE entity_id = {id}; \
             DELETE FROM {{entities}}entity_events WHERE entity_id = {id} AND entity_version = 5"
        ),
    )
    .await;
    let result = load_afresh(&db, id).await;
    match result {
        Err(Error::Corrupt {
            version: 5, reason, ..
        }) => assert!(reason.contains("stop at version 4"), "{reason}"),
        other => panic!("expected corrupt data at version 5, got {other:?}"),
    }
}
