//! Shutdown lets every call that got in finish, snapshots the live entities, and only then
//! returns; calls after it are refused.

mod support;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Error, Runtime};
use support::*;

on_both_backends!(
    shutdown_waits_for_an_action_in_flight_and_snapshots_its_result,
    shutdown_lets_a_create_in_flight_commit,
);

/// Starts `runtime.shutdown()` in a task, and waits until the runtime refuses new calls.
async fn start_shutdown(runtime: &Runtime) -> tokio::task::JoinHandle<()> {
    let shutdown = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.shutdown().await }
    });
    let unknown = runtime.entity::<Counter>(i64::MAX);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match unknown.get().await {
            Err(Error::ShuttingDown) => break,
            Err(Error::NotFound { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runtime never started shutting down"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    shutdown
}

/// The action is held at a gate inside its transaction while shutdown starts. Shutdown returns
/// only after the caller has its answer, and after the entity snapshotted the state the action
/// led to: a shutdown that did not wait for the entity's worker would close the pool before
/// that snapshot.
async fn shutdown_waits_for_an_action_in_flight_and_snapshots_its_result(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "draining").await.id);
    let gate = Gate::new();
    let ctx = ctx();
    let mut rename = std::pin::pin!(counter.send_action(
        &ctx,
        Rename {
            name: gate.name().to_owned()
        }
    ));
    assert!(futures::poll!(rename.as_mut()).is_pending());
    gate.reached().await;

    let mut shutdown = start_shutdown(&runtime).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown waits while the action is held"
    );
    gate.open();
    let renamed = tokio::select! {
        biased;
        renamed = &mut rename => renamed.expect("the action in flight commits"),
        _ = &mut shutdown => panic!("shutdown returned before the action in flight was answered"),
    };
    shutdown.await.unwrap();
    assert_eq!(renamed.version, 2);

    let fresh = runtime_with(&db, |b| b.migrate(false)).await;
    let snapshot = snapshot_version(&fresh, counter.id()).await;
    assert_eq!(
        snapshot,
        Some(2),
        "shutdown snapshotted the entity after the action"
    );
    assert_eq!(
        *fresh.entity::<Counter>(counter.id()).get().await.unwrap(),
        *renamed
    );
    fresh.shutdown().await;
}

/// A create commits through its entity's worker and the committers: held at a gate while
/// shutdown starts, it still commits, and shutdown does not close the pool under it.
async fn shutdown_lets_a_create_in_flight_commit(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let gate = Gate::new();
    let create = tokio::spawn({
        let (runtime, name) = (runtime.clone(), gate.name().to_owned());
        async move { runtime.create::<Counter>(&ctx(), name).await }
    });
    gate.reached().await;

    let shutdown = start_shutdown(&runtime).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown waits while the create is held"
    );
    gate.open();
    shutdown.await.unwrap();
    let created = create.await.unwrap().expect("the create in flight commits");

    let fresh = runtime_with(&db, |b| b.migrate(false)).await;
    assert_eq!(
        *fresh.entity::<Counter>(created.id).get().await.unwrap(),
        *created
    );
    fresh.shutdown().await;
}

/// A create that got in before shutdown but reaches its entity's worker only after shutdown's
/// sweep asked every live entity to leave still commits, and its entity leaves memory too
/// (snapshotted) instead of staying live in a stopped runtime. Staged on SQLite: another
/// connection holds the write lock, so the create waits for its id while the sweep runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_created_after_the_shutdown_sweep_still_leaves() {
    let db = TestDatabase::sqlite();
    // Created by another runtime, which snapshots it as it stops: live in this one, it leaves
    // without writing, so its leaving shows the sweep ran. And this runtime has reserved no
    // ids yet, so its create reserves some, which waits for the write lock.
    let earlier = runtime(&db).await;
    let live = new_counter(&earlier, "live").await.id;
    earlier.shutdown().await;
    let runtime = runtime_with(&db, |b| b.migrate(false)).await;
    runtime.entity::<Counter>(live).get().await.unwrap();
    let mut blocker = SnapshotBlocker::connect(&db).await;
    blocker.hold().await;

    let ctx = ctx();
    let mut create = std::pin::pin!(runtime.create::<Counter>(&ctx, "late".into()));
    // One poll takes it past the shutdown check, to the reservation of its id, which waits.
    assert!(futures::poll!(create.as_mut()).is_pending());
    let shutdown = start_shutdown(&runtime).await;
    metrics_until(&runtime, "the sweep to send the live counter away", |m| {
        m.passivations == 1
    })
    .await;
    blocker.release().await;

    let created = create.await.expect("a create that got in commits");
    shutdown.await.unwrap();
    assert_eq!(runtime.live_entities(), 0, "the created entity left memory");
    assert_eq!(runtime.metrics().passivations, 2);
    let fresh = runtime_with(&db, |b| b.migrate(false)).await;
    assert_eq!(snapshot_version(&fresh, created.id).await, Some(1));
    fresh.shutdown().await;
    assert_eq!(cold_load(&db, created.id).await, *created);
}
