//! Commits whose outcome the runtime cannot know: a `COMMIT` that fails, a connection that ends
//! mid-transaction, an answer to `COMMIT` that never arrives. The caller hears `Error::Storage`
//! when the database answered (nothing was stored) and `Error::OutcomeUnknown` when no answer
//! came; either way the entity then reads what the database really holds, so nothing is lost or
//! applied twice whichever way the commit went.

mod support;

use entities_runtime::testing::{CommitCutter, TestDatabase};
use std::sync::Arc;

use entities_runtime::{Backend, EntityRef, Error, Metrics, Runtime};
use support::*;

on_both_backends!(a_commit_that_fails_is_reported_and_the_entity_catches_up);

/// A `COMMIT` that fails: the caller gets `Error::Storage`, memory stays as it was, and the
/// entity reads the database before it decides again. Here the commit fails on a deferred
/// foreign key, so nothing was stored; the runtime cannot tell that from a commit that went
/// through (see the Postgres tests below), so it checks.
async fn a_commit_that_fails_is_reported_and_the_entity_catches_up(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "doomed").await.id);
    counter
        .send_action(&ctx(), Add { amount: 2 })
        .await
        .unwrap();
    let (memory, database) = memory_and_database(&runtime, &counter).await;
    let before = runtime.metrics();

    let result = counter
        .send_action(
            &ctx(),
            Rename {
                name: FAILS_AT_COMMIT.into(),
            },
        )
        .await;
    assert!(matches!(result, Err(Error::Storage(_))), "{result:?}");
    assert!(
        !result.unwrap_err().is_unavailable(),
        "the database answered the COMMIT: no outage"
    );
    assert_eq!(runtime.metrics().commits_failed, before.commits_failed + 1);
    caught_up_and_unchanged(&db, &runtime, &counter, before, (memory, database)).await;
    runtime.shutdown().await;
}

/// After a commit that did not go through: the entity caught up, its state and its rows are as
/// `before_the_call` (at version 2, total 2), and its next action commits on them.
async fn caught_up_and_unchanged(
    db: &TestDatabase,
    runtime: &Runtime,
    counter: &EntityRef<Counter>,
    before: Metrics,
    before_the_call: (Arc<Counter>, Stored),
) {
    metrics_until(runtime, "the entity to catch up", |m| {
        m.catch_ups == before.catch_ups + 1
    })
    .await;
    assert_eq!(counter.get().await.unwrap(), before_the_call.0);
    assert_eq!(stored(runtime, counter.id()).await, before_the_call.1);
    let after = counter
        .send_action(&ctx(), Add { amount: 1 })
        .await
        .unwrap();
    assert_eq!((after.version, after.total), (3, 3));
    assert_eq!(*after, cold_load(db, counter.id()).await);
}

/// A counter at version 2, and a rename of it held at `gate` inside its transaction.
async fn rename_held_at_a_gate(
    runtime: &Runtime,
    gate: &Gate,
) -> (
    EntityRef<Counter>,
    tokio::task::JoinHandle<Result<std::sync::Arc<Counter>, Error<CounterError>>>,
) {
    let counter = runtime.entity::<Counter>(new_counter(runtime, "uncertain").await.id);
    counter
        .send_action(&ctx(), Add { amount: 2 })
        .await
        .unwrap();
    let rename = tokio::spawn({
        let (counter, name) = (counter.clone(), gate.name().to_owned());
        async move { counter.send_action(&ctx(), Rename { name }).await }
    });
    gate.reached().await;
    (counter, rename)
}

/// The server ends the connection while the projection waits, so the transaction is rolled
/// back. The server's notice of it comes as the answer to the next statement, `COMMIT` here:
/// the caller hears `Error::OutcomeUnknown` (a connection's end in answer to `COMMIT` may come
/// after the commit, for all the runtime can tell), nothing is stored, and the entity goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_ended_mid_transaction_fails_the_call_and_changes_nothing() {
    let db = TestDatabase::postgres().await;
    let runtime = runtime(&db).await;
    let gate = Gate::new();
    let (counter, rename) = rename_held_at_a_gate(&runtime, &gate).await;
    let (memory, database) = memory_and_database(&runtime, &counter).await;
    let before = runtime.metrics();

    let terminated = scalar(
        &runtime,
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND state = 'idle in transaction'",
    )
    .await;
    assert_eq!(terminated, Some(1), "the rename's connection, and only it");
    gate.open();

    let result = rename.await.unwrap();
    assert!(
        matches!(result, Err(Error::OutcomeUnknown(_))),
        "{result:?}"
    );
    caught_up_and_unchanged(&db, &runtime, &counter, before, (memory, database)).await;
    runtime.shutdown().await;
}

/// The worst case: the server commits and the answer is lost on the way. The caller hears
/// `Error::OutcomeUnknown` (it cannot know better); the entity then reads the database and finds its
/// own write there, so `get` shows it and the next action is decided after it: nothing lost,
/// nothing applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_found_committed_by_the_catch_up() {
    let db = TestDatabase::postgres().await;
    let proxy = CommitCutter::start(&db.url).await;
    let runtime = runtime_at(&proxy.url, |builder| builder).await;
    let gate = Gate::new();
    let (counter, rename) = rename_held_at_a_gate(&runtime, &gate).await;
    let before = runtime.metrics();

    proxy.arm();
    gate.open();
    let result = rename.await.unwrap();
    assert!(
        matches!(result, Err(Error::OutcomeUnknown(_))),
        "{result:?}"
    );
    assert_eq!(proxy.cuts(), 1, "the answer to the COMMIT was lost");
    assert_eq!(runtime.metrics().commits_failed, before.commits_failed + 1);

    metrics_until(&runtime, "the entity to catch up", |m| {
        m.catch_ups == before.catch_ups + 1
    })
    .await;
    let caught_up = counter.get().await.unwrap();
    assert_eq!(
        (caught_up.version, caught_up.name.as_str()),
        (3, gate.name()),
        "the rename was committed, and the entity knows it"
    );
    let after = counter
        .send_action(&ctx(), Add { amount: 1 })
        .await
        .unwrap();
    assert_eq!((after.version, after.total), (4, 3));
    let stored = stored(&runtime, counter.id()).await;
    assert_eq!(stored.event_versions, vec![1, 2, 3, 4]);
    assert_eq!(stored.read_model, Some((gate.name().to_owned(), 3, 4)));
    assert_eq!(*after, cold_load(&db, counter.id()).await);
    runtime.shutdown().await;
}
