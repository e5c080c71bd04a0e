//! Reads are served from memory: a `get` never waits behind a write in flight, on its own
//! entity or on another.

mod support;

use entities_runtime::Backend;
use entities_runtime::testing::TestDatabase;
use support::*;

on_both_backends!(get_returns_the_committed_state_while_a_write_is_in_flight);

async fn get_returns_the_committed_state_while_a_write_is_in_flight(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let busy = runtime.entity::<Counter>(new_counter(&runtime, "busy").await.id);
    let other = new_counter(&runtime, "other").await.id;
    let before = busy.get().await.unwrap();

    // The write holds its transaction open in a slow projection...
    let writer = tokio::spawn({
        let busy = busy.clone();
        async move {
            busy.send_action(
                &ctx(),
                Rename {
                    name: SLOW_PROJECTION.into(),
                },
            )
            .await
        }
    });
    // ...and an action queued behind it waits its turn.
    let queued = tokio::spawn({
        let busy = busy.clone();
        async move { busy.send_action(&ctx(), Add { amount: 1 }).await }
    });
    tokio::time::sleep(SLOW_PROJECTION_TIME / 8).await;

    // Meanwhile reads answer at once, with the last committed state.
    assert_eq!(busy.get().await.unwrap(), before);
    assert!(
        !writer.is_finished(),
        "the read returned while the write was still in flight"
    );
    // On SQLite the slow write holds the one write lock; reading another entity does not need it.
    let fresh = runtime_with(&db, |b| b.migrate(false)).await;
    assert_eq!(
        fresh.entity::<Counter>(other).get().await.unwrap().name,
        "other"
    );
    assert!(
        !writer.is_finished(),
        "loading another entity did not wait for the write"
    );

    let written = writer.await.unwrap().unwrap();
    assert_eq!(
        (written.name.as_str(), written.version),
        (SLOW_PROJECTION, 2)
    );
    assert_eq!(queued.await.unwrap().unwrap().version, 3);
    assert_eq!(busy.get().await.unwrap().version, 3);
    runtime.shutdown().await;
    fresh.shutdown().await;
}
