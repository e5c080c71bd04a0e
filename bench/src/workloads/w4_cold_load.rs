//! W4, cold load: a list with `events` events loaded into a fresh runtime without a snapshot
//! (a full replay) and from a snapshot, and a 10-event list from its snapshot. The baseline
//! selects and decodes the same rows by hand.
//!
//! The long history is written with SQL, in the runtime's schema and with the payloads its
//! serde encoding produces: written through the runtime, 10,000 actions would take a minute of
//! fsyncs per run and measure the writes, not the load. The list is created and given its item
//! through the runtime, then its quantity is changed back and forth (2, 1, 2, ...), so the
//! state stays one item however long the history: the snapshot is the same size at 10 events
//! as at 10,000.

use std::time::Instant;

use entities_runtime::{Action as _, Backend, EntityId, Event as _, Runtime};
use example::ShoppingList;
use example::shopping_list::{AddItem, ChangeQuantity, QuantityChanged};

use super::{create_lists, ctx};
use crate::baseline::Baseline;
use crate::db::BenchDb;

/// Milliseconds, one value per sample.
#[derive(Default)]
pub struct W4 {
    pub replay: Vec<f64>,
    pub snapshot: Vec<f64>,
    pub snapshot_short: Vec<f64>,
    pub baseline_replay: Vec<f64>,
    pub baseline_snapshot: Vec<f64>,
    pub baseline_snapshot_short: Vec<f64>,
}

pub const SHORT: i64 = 10;

pub async fn run(backend: Backend, events: i64, samples: usize) -> W4 {
    let db = BenchDb::new(backend).await;
    let runtime = db.runtime(2).await;
    let long = write_history(&runtime, events).await;
    let short = write_history(&runtime, SHORT).await;
    let warm_up = write_history(&runtime, SHORT).await;
    runtime.shutdown().await;
    let sql = db.baseline(1).await;
    let schema = if backend == Backend::Postgres {
        "entities."
    } else {
        ""
    };
    let snapshot_version = |id: EntityId| {
        format!("SELECT (SELECT version FROM {schema}entity_snapshots WHERE entity_id = {id})")
    };

    let mut w4 = W4::default();
    for _ in 0..samples {
        sql.exec(format!(
            "DELETE FROM {schema}entity_snapshots WHERE entity_id = {long}"
        ))
        .await;
        w4.replay.push(cold_load(&db, long, warm_up, events).await);
        // The runtime that replayed it wrote a snapshot as it shut down: loads start there now.
        assert_eq!(
            sql.scalar(&snapshot_version(long)).await,
            Some(events),
            "W4 snapshot"
        );
        w4.snapshot
            .push(cold_load(&db, long, warm_up, events).await);
        w4.snapshot_short
            .push(cold_load(&db, short, warm_up, SHORT).await);
        assert_eq!(
            sql.scalar(&snapshot_version(short)).await,
            Some(SHORT),
            "W4 snapshot"
        );

        // The baseline on a fresh pool, its statements prepared on the warm-up list.
        let baseline = db.baseline(1).await;
        baseline.read_events(warm_up).await;
        baseline.read_snapshot(warm_up).await;
        w4.baseline_replay.push(
            timed(async {
                assert_eq!(baseline.read_events(long).await, events as usize);
            })
            .await,
        );
        w4.baseline_snapshot.push(
            timed(async {
                assert_eq!(baseline.read_snapshot(long).await.items.len(), 1);
            })
            .await,
        );
        w4.baseline_snapshot_short.push(
            timed(async {
                assert_eq!(baseline.read_snapshot(short).await.items.len(), 1);
            })
            .await,
        );
        baseline.close().await;
    }
    sql.close().await;
    db.drop_database().await;
    w4
}

async fn timed(work: impl Future<Output = ()>) -> f64 {
    let started = Instant::now();
    work.await;
    started.elapsed().as_secs_f64() * 1e3
}

/// Milliseconds to load `id` (at `version`) into a fresh runtime: its `get`, after a first
/// load of `warm_up` has connected and prepared the statements, so the load is timed and not
/// the connecting.
async fn cold_load(db: &BenchDb, id: EntityId, warm_up: EntityId, version: i64) -> f64 {
    let runtime = db.builder(1).migrate(false).build().await.expect("runtime");
    runtime
        .entity::<ShoppingList>(warm_up)
        .get()
        .await
        .expect("warm-up load");
    let entity = runtime.entity::<ShoppingList>(id);
    let started = Instant::now();
    let list = entity.get().await.expect("load");
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(
        (list.version, list.items.len()),
        (version, 1),
        "W4 loaded state"
    );
    runtime.shutdown().await;
    elapsed
}

/// A list with `events` events: created and given one item through the runtime (versions 1
/// and 2), then `events - 2` QuantityChanged events inserted with SQL, under one action row.
async fn write_history(runtime: &Runtime, events: i64) -> EntityId {
    let id = create_lists(runtime, 1, &format!("w4 {events}")).await[0];
    let added = runtime
        .entity::<ShoppingList>(id)
        .send_action(&ctx(), AddItem::new("tea", 1))
        .await
        .expect("AddItem");
    let item = &added.items[0].id;
    let postgres = runtime.backend() == Backend::Postgres;
    let schema = if postgres { "entities." } else { "" };
    let series = if postgres {
        format!("SELECT v FROM generate_series(3, {events}) AS v")
    } else {
        format!(
            "WITH RECURSIVE s(v) AS (SELECT 3 UNION ALL SELECT v + 1 FROM s WHERE v < {events}) SELECT v FROM s"
        )
    };
    // serde's encoding of `QuantityChanged { item_id, quantity }`: 2, 1, 2, ... from version 3.
    let payload = format!(r#"'{{"item_id":"{item}","quantity":' || (v % 2 + 1) || '}}'"#);
    let payload = if postgres {
        format!("({payload})::jsonb")
    } else {
        payload
    };
    let (action, event) = (ChangeQuantity::TYPE, QuantityChanged::TYPE);
    let baseline = Baseline::new(runtime.database().clone());
    baseline
        .exec(format!(
            "BEGIN;
             INSERT INTO {schema}entity_actions (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id) \
             VALUES ({id}, 'shopping_list', {events}, '{action}', '{{\"item_id\":\"{item}\",\"quantity\":1}}', 'bench', 'w4', 'w4');
             INSERT INTO {schema}entity_events (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id) \
             SELECT {id}, 'shopping_list', v, '{event}', {payload}, \
                    (SELECT id FROM {schema}entity_actions WHERE entity_id = {id} AND entity_version = {events}), 'bench', 'w4', 'w4' \
             FROM ({series}) AS series;
             UPDATE {schema}entities SET version = {events} WHERE id = {id};
             COMMIT;"
        ))
        .await;
    id
}
