//! Idle entities snapshot and leave memory; a call racing the stop is served by a fresh task.

mod support;

use std::time::Duration;

use entities_runtime::Backend;
use entities_runtime::testing::TestDatabase;
use support::*;

on_both_backends!(
    constant_load_across_idle_stops_loses_and_fails_nothing,
    a_call_reaching_an_entity_as_it_leaves_is_served_by_it,
    an_older_snapshot_never_replaces_a_newer_one,
    an_entity_that_is_read_stays_live,
    an_idle_entity_snapshots_and_leaves_memory,
    snapshots_every_n_events_and_loads_from_snapshot_plus_tail,
);

async fn constant_load_across_idle_stops_loses_and_fails_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    // An idle timeout shorter than the pauses between calls: entities stop and restart all along.
    let runtime = runtime_with(&db, |b| {
        b.idle_timeout(Duration::from_millis(2)).snapshot_every(0)
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(new_counter(&runtime, &format!("flicker {n}")).await.id);
    }
    let mut clients = Vec::new();
    for client in 0..8u64 {
        let runtime = runtime.clone();
        let ids = ids.clone();
        clients.push(tokio::spawn(async move {
            for n in 0..40u64 {
                let id = ids[((client + n) % 4) as usize];
                let entity = runtime.entity::<Counter>(id);
                entity
                    .send_action(&ctx(), Add { amount: 1 })
                    .await
                    .expect("never lost, never failed");
                entity.get().await.expect("reads never fail");
                tokio::time::sleep(Duration::from_millis((client * 7 + n * 3) % 5)).await;
            }
        }));
    }
    for client in clients {
        client.await.expect("client finished");
    }
    // Both races, counted during the load: entities left between calls (and were loaded again),
    // and calls reached entities as they were leaving. Measured: 43 to 102 of the one and 51 to
    // 113 of the other per run; `a_call_reaching_an_entity_as_it_leaves_is_served_by_it` stages
    // the second deterministically.
    let during_the_load = runtime.metrics();
    assert!(
        during_the_load.passivations > 0
            && during_the_load.loads > 0
            && during_the_load.passivations_interrupted > 0,
        "entities left and came back, and calls caught them leaving: {during_the_load:?}"
    );
    wait_until_idle(&runtime).await;
    let mut total_versions = 0;
    for &id in &ids {
        let live = runtime.entity::<Counter>(id).get().await.unwrap();
        assert_eq!(live.total, live.version - 1);
        assert_eq!(
            stored(&runtime, id).await.event_versions,
            (1..=live.version).collect::<Vec<_>>()
        );
        total_versions += live.version - 1;
    }
    assert_eq!(total_versions, 8 * 40, "every action committed once");
    let snapshots = scalar(&runtime, "SELECT count(*) FROM {entities}entity_snapshots").await;
    assert_eq!(snapshots, Some(4), "idle stops wrote snapshots");
    for &id in &ids {
        let live = runtime.entity::<Counter>(id).get().await.unwrap();
        assert_eq!(
            cold_load(&db, id).await,
            *live,
            "snapshot + tail equals the live state"
        );
    }
    runtime.shutdown().await;
}

/// The race the registry's design is about, staged: the entity is leaving (its last snapshot
/// waits for a lock another connection holds) when a call reaches its inbox. The entity stays
/// and serves it: not lost, not failed, and not served by a second copy loaded beside it.
async fn a_call_reaching_an_entity_as_it_leaves_is_served_by_it(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| {
        b.idle_timeout(Duration::from_millis(50)).snapshot_every(0)
    })
    .await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "leaving").await.id);
    let mut blocker = SnapshotBlocker::connect(&db).await;
    // The lock must be held before the entity's first idle sweep; on a machine slow enough to
    // miss that, the entity leaves (snapshot written) and the staging starts over.
    let mut version = 1;
    for attempt in 1.. {
        let before = runtime.metrics();
        version = counter
            .send_action(&ctx(), Add { amount: 1 })
            .await
            .unwrap()
            .version;
        blocker.hold().await;
        let staged = metrics_until(&runtime, "the entity to start leaving", |m| {
            m.leaving == 1 || m.passivations > before.passivations
        })
        .await;
        if staged.leaving == 1 {
            break;
        }
        blocker.release().await;
        assert!(
            attempt < 5,
            "the entity left before the lock, {attempt} times"
        );
    }
    let loads = runtime.metrics().loads;

    let ctx = ctx();
    let mut call = std::pin::pin!(counter.send_action(&ctx, Add { amount: 5 }));
    assert!(futures::poll!(call.as_mut()).is_pending(), "queued");
    blocker.release().await;
    let after = call.await.expect("served");
    assert_eq!(after.version, version + 1);

    let metrics = runtime.metrics();
    assert!(
        metrics.passivations_interrupted >= 1,
        "the entity stayed for the call: {metrics:?}"
    );
    assert_eq!(
        metrics.loads, loads,
        "the call was served by the entity it reached, not by a copy loaded after it left"
    );
    let snapshot = snapshot_version(&runtime, counter.id()).await;
    assert!(
        snapshot >= Some(version),
        "the interrupted leave wrote its snapshot: {snapshot:?}"
    );
    wait_until_idle(&runtime).await;
    assert!(runtime.metrics().passivations >= 1, "then it left");
    assert_eq!(
        *counter.get().await.unwrap(),
        cold_load(&db, counter.id()).await
    );
    runtime.shutdown().await;
}

/// Two runtimes hold the same entity at different versions. The one behind snapshots last (at
/// its shutdown): its older state must not replace the newer snapshot the other stored.
async fn an_older_snapshot_never_replaces_a_newer_one(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    // Neither follows the other's writes: `behind` must stay behind.
    let behind = runtime_with(&db, |b| b.snapshot_every(0).follow_other_writers(false)).await;
    let ahead = runtime_with(&db, |b| {
        b.snapshot_every(0)
            .migrate(false)
            .follow_other_writers(false)
    })
    .await;
    let id = new_counter(&behind, "twice held").await.id;
    behind
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount: 1 })
        .await
        .unwrap();
    for amount in 2..=5 {
        ahead
            .entity::<Counter>(id)
            .send_action(&ctx(), Add { amount })
            .await
            .unwrap();
    }
    ahead.shutdown().await;
    assert_eq!(snapshot_version(&behind, id).await, Some(6));
    assert_eq!(behind.metrics().snapshots_superseded, 0);

    // Still at version 2 in this runtime, which tries to snapshot it as it shuts down.
    let fresh = runtime_with(&db, |b| b.migrate(false)).await;
    behind.shutdown().await;
    let metrics = behind.metrics();
    assert_eq!(
        (metrics.snapshots_saved, metrics.snapshots_superseded),
        (0, 1),
        "the older snapshot was tried and refused"
    );
    assert_eq!(snapshot_version(&fresh, id).await, Some(6));
    let loaded = fresh.entity::<Counter>(id).get().await.unwrap();
    assert_eq!((loaded.version, loaded.total), (6, 15));
    fresh.shutdown().await;
}

/// Reads mark an entity used: read all along, it outlives several idle timeouts without leaving
/// (it would leave within two untouched). Then, left alone, it leaves.
async fn an_entity_that_is_read_stays_live(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    // Long enough that no pause between two reads on a loaded machine comes near it.
    let idle_timeout = Duration::from_millis(200);
    let runtime = runtime_with(&db, |b| b.idle_timeout(idle_timeout).snapshot_every(0)).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "popular").await.id);
    let reading = tokio::time::Instant::now();
    while reading.elapsed() < idle_timeout * 4 {
        counter.get().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let metrics = runtime.metrics();
    assert_eq!(
        (metrics.passivations, metrics.loads),
        (0, 0),
        "it never left, so never loaded again"
    );
    wait_until_idle(&runtime).await;
    assert_eq!(runtime.metrics().passivations, 1);
    runtime.shutdown().await;
}

async fn wait_until_idle(runtime: &entities_runtime::Runtime) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while runtime.live_entities() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle entities never left"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn an_idle_entity_snapshots_and_leaves_memory(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    // Long enough that the entity cannot leave again (two sweeps without a touch) between the
    // reload below and the check that it is live.
    let runtime = runtime_with(&db, |b| {
        b.idle_timeout(Duration::from_millis(250)).snapshot_every(0)
    })
    .await;
    let id = new_counter(&runtime, "sleepy").await.id;
    let live = runtime
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount: 9 })
        .await
        .unwrap();
    assert_eq!(runtime.live_entities(), 1);
    wait_until_idle(&runtime).await;
    let snapshot_version = snapshot_version(&runtime, id).await;
    assert_eq!(snapshot_version, Some(2));
    // The next call loads it again, from the snapshot.
    assert_eq!(runtime.entity::<Counter>(id).get().await.unwrap(), live);
    assert_eq!(runtime.live_entities(), 1);
    runtime.shutdown().await;
}

async fn snapshots_every_n_events_and_loads_from_snapshot_plus_tail(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.snapshot_every(10)).await;
    let id = new_counter(&runtime, "periodic").await.id;
    for amount in 1..=24 {
        runtime
            .entity::<Counter>(id)
            .send_action(&ctx(), Add { amount })
            .await
            .unwrap();
    }
    // Snapshots are written in the background, one at a time, whenever 10 events passed since
    // the last: of 25 events, the last one is at version 20 or later.
    let snapshot = scalar_eventually(
        &runtime,
        &format!(
            "SELECT (SELECT version FROM {{entities}}entity_snapshots WHERE entity_id = {id})"
        ),
        |version| version >= Some(20),
    )
    .await;
    assert!(snapshot <= Some(25));
    let live = runtime.entity::<Counter>(id).get().await.unwrap();
    let fresh = runtime_with(&db, |b| b.migrate(false)).await;
    assert_eq!(
        fresh.entity::<Counter>(id).get().await.unwrap(),
        live,
        "snapshot at 20 + 5 events"
    );
    runtime.shutdown().await;
    fresh.shutdown().await;
}
