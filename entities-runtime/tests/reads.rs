//! Reads are served from memory: a `get` never waits behind a write in flight, on its own
//! entity or on another.

mod support;

use entities_runtime::Backend;
use entities_runtime::testing::TestDatabase;
use support::*;

on_both_backends!(
    get_returns_the_committed_state_while_a_write_is_in_flight,
    a_state_handed_out_never_changes,
);

async fn get_returns_the_committed_state_while_a_write_is_in_flight(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let busy = runtime.entity::<Counter>(new_counter(&runtime, "busy").await.id);
    let other = new_counter(&runtime, "other").await.id;
    let before = busy.get().await.unwrap();

    // The write holds its transaction open at a gate...
    let gate = Gate::new();
    let writer = tokio::spawn({
        let (busy, name) = (busy.clone(), gate.name().to_owned());
        async move { busy.send_action(&ctx(), Rename { name }).await }
    });
    gate.reached().await;
    // ...and an action queued behind it (dispatched by its first poll) waits its turn.
    let ctx = ctx();
    let mut queued = std::pin::pin!(busy.send_action(&ctx, Add { amount: 1 }));
    assert!(futures::poll!(queued.as_mut()).is_pending());

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

    assert!(
        futures::poll!(queued.as_mut()).is_pending(),
        "the queued action waits for the write"
    );

    gate.open();
    let written = writer.await.unwrap().unwrap();
    assert_eq!((written.name.as_str(), written.version), (gate.name(), 2));
    assert_eq!(queued.await.unwrap().version, 3);
    assert_eq!(busy.get().await.unwrap().version, 3);
    runtime.shutdown().await;
    fresh.shutdown().await;
}

/// The worker applies an action's events in place to a copy of the state that nobody else holds
/// (the state the previous commit replaced). A state handed to a caller must never be that copy:
/// whatever it keeps, and however many writes follow, its state stays as it was.
async fn a_state_handed_out_never_changes(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let id = new_counter(&runtime, "kept").await.id;
    let counter = runtime.entity::<Counter>(id);
    let context = ctx();
    let mut kept = Vec::new();
    for round in 0..30i64 {
        // Alone (the spare path), then three at once (a chain: copies after its first).
        let alone = counter
            .send_action(&ctx(), Add { amount: 1 })
            .await
            .unwrap();
        let together = futures::future::join_all(
            (0..3).map(|_| counter.send_action(&context, AddTwice { amount: 1 })),
        )
        .await;
        let read = counter.get().await.unwrap();
        // Some states are kept, the others dropped so that they can be recycled.
        match round % 3 {
            0 => kept.push(alone),
            1 => kept.push(read),
            _ => kept.extend(together.into_iter().map(Result::unwrap)),
        }
    }
    let copies: Vec<Counter> = kept.iter().map(|state| (**state).clone()).collect();
    for _ in 0..20 {
        counter
            .send_action(&ctx(), Add { amount: 1 })
            .await
            .unwrap();
    }
    for (state, copy) in kept.iter().zip(&copies) {
        assert_eq!(**state, *copy, "a state handed out changed afterwards");
    }
    let live = counter.get().await.unwrap();
    assert_eq!(live.total, 30 + 30 * 3 * 2 + 20);
    assert_eq!(*live, cold_load(&db, id).await, "live state == replay");
    runtime.shutdown().await;
}
