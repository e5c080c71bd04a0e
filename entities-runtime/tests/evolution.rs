//! Schema evolution on stored rows: an event written in an older payload shape is converted by
//! its upcast when loaded; a snapshot written by a state of another shape is ignored.

mod support;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Entity, Error, Runtime};
use support::*;

on_both_backends!(
    an_event_stored_in_an_older_shape_is_upcast_on_load,
    an_event_of_a_version_no_upcast_converts_is_corrupt,
    a_snapshot_of_another_state_shape_is_ignored,
);

/// A counter renamed once (its `Renamed` event at version 2) and added to, with no snapshot;
/// and a runtime to read and write its rows raw.
async fn renamed(db: &TestDatabase) -> (Runtime, i64) {
    let runtime = runtime(db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "first").await.id);
    counter
        .send_action(
            &ctx(),
            Rename {
                name: "second".into(),
            },
        )
        .await
        .unwrap();
    counter
        .send_action(&ctx(), Add { amount: 3 })
        .await
        .unwrap();
    runtime.shutdown().await;
    let raw = runtime_with(db, |b| b.migrate(false)).await;
    let id = counter.id();
    exec(
        &raw,
        &format!("DELETE FROM {{entities}}entity_snapshots WHERE entity_id = {id}"),
    )
    .await;
    (raw, id)
}

/// Rewrites the `Renamed` event of `id` as payload version `version` of `payload`.
async fn store_renamed_as(raw: &Runtime, id: i64, version: i32, payload: &str) {
    exec(
        raw,
        &format!(
            "UPDATE {{entities}}entity_events SET payload = '{payload}', payload_version = {version} \
             WHERE entity_id = {id} AND entity_version = 2"
        ),
    )
    .await;
}

async fn an_event_stored_in_an_older_shape_is_upcast_on_load(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (raw, id) = renamed(&db).await;
    let history = raw.history::<Counter>(id).await.unwrap();
    assert_eq!(
        history[1].payload_version, 2,
        "new events store their version"
    );
    store_renamed_as(&raw, id, 1, r#"{"new_name": "old shape"}"#).await;

    let loaded = cold_load(&db, id).await;
    assert_eq!(
        (loaded.name.as_str(), loaded.total, loaded.version),
        ("old shape", 3, 3)
    );
    // History shows the row as stored.
    let history = raw.history::<Counter>(id).await.unwrap();
    assert_eq!(history[1].payload_version, 1);
    assert_eq!(history[1].payload["new_name"], "old shape");
    // The entity goes on from the upcast state; its next rename is stored in today's shape.
    let fresh = runtime_with(&db, |b| b.migrate(false)).await;
    let counter = fresh.entity::<Counter>(id);
    let renamed = counter
        .send_action(
            &ctx(),
            Rename {
                name: "third".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!((renamed.name.as_str(), renamed.version), ("third", 4));
    let history = fresh.history::<Counter>(id).await.unwrap();
    assert_eq!(history[3].payload_version, 2);
    assert_eq!(history[3].payload["name"], "third");
    fresh.shutdown().await;
    raw.shutdown().await;
}

async fn an_event_of_a_version_no_upcast_converts_is_corrupt(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (raw, id) = renamed(&db).await;
    store_renamed_as(&raw, id, 9, r#"{"name": "from the future"}"#).await;
    let fresh = runtime_with(&db, |b| b.migrate(false)).await;
    let result = fresh.entity::<Counter>(id).get().await;
    match &result {
        Err(Error::Corrupt {
            version: 2, reason, ..
        }) => assert!(reason.contains("no payload version 9"), "{reason}"),
        other => panic!("expected corrupt at version 2, got {other:?}"),
    }
    fresh.shutdown().await;
    raw.shutdown().await;
}

/// A snapshot that still decodes but was written by a state of another shape could mean
/// something else now: it is ignored, and the events replayed. One without a fingerprint
/// (written before fingerprints) is used as before.
async fn a_snapshot_of_another_state_shape_is_ignored(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "shaped").await.id);
    counter
        .send_action(&ctx(), Add { amount: 2 })
        .await
        .unwrap();
    runtime.shutdown().await;
    let raw = runtime_with(&db, |b| b.migrate(false)).await;
    let id = counter.id();
    let shape = |shape: &str| {
        format!(
            r#"UPDATE {{entities}}entity_snapshots SET shape = {shape}, snapshot = '{{"id": {id}, "version": 2, "name": "planted", "total": 999, "adds": [], "notes": 0}}' WHERE entity_id = {id}"#
        )
    };
    let stored_shape: Option<(String,)> = raw
        .database()
        .query(entities_runtime::sqlx::AssertSqlSafe(qualify(
            &raw,
            &format!("SELECT shape FROM {{entities}}entity_snapshots WHERE entity_id = {id}"),
        )))
        .fetch_optional()
        .await
        .unwrap();
    assert_eq!(
        stored_shape,
        Some((Counter::SHAPE.to_owned(),)),
        "the runtime writes its shape"
    );

    exec(&raw, &shape("'0123456789abcdef'")).await;
    let loaded = cold_load(&db, id).await;
    assert_eq!(
        (loaded.name.as_str(), loaded.total),
        ("shaped", 2),
        "replayed from the events"
    );

    exec(&raw, &shape(&format!("'{}'", Counter::SHAPE))).await;
    assert_eq!(
        cold_load(&db, id).await.total,
        999,
        "a snapshot of this shape is used"
    );
    exec(&raw, &shape("NULL")).await;
    assert_eq!(
        cold_load(&db, id).await.total,
        999,
        "so is one without a fingerprint"
    );
    raw.shutdown().await;
}
