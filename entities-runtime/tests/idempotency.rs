//! Idempotency keys: a keyed call whose key is stored returns what the first call returned and
//! decides nothing; the key is held in the database, so this holds across restarts, passivation
//! and runtimes, and under concurrent duplicates.

mod support;

use std::sync::Arc;
use std::time::Duration;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Context, EntityRef, Error, Runtime, Unit};
use support::*;
use tokio::sync::{Notify, oneshot};

on_both_backends!(
    a_repeated_action_applies_once_and_returns_the_first_state,
    concurrent_duplicates_apply_once_and_all_return_its_outcome,
    a_key_holds_across_a_restart_passivation_and_a_second_runtime,
    a_key_reused_for_another_call_is_refused_and_stores_nothing,
    keys_of_two_users_do_not_collide,
    a_repeated_create_returns_the_same_entity,
    a_repeated_batch_and_transaction_apply_once,
    a_refused_call_stores_no_key_and_may_be_sent_again,
    a_duplicate_from_another_runtime_is_caught_at_commit_and_takes_its_writes_back,
    keys_past_their_retention_are_deleted_and_their_calls_are_new,
    a_key_given_up_on_and_retried_in_one_batch_applies_once,
    a_keyed_call_refused_by_its_projection_in_a_shared_batch_stores_no_key,
);

fn keyed(key: &str) -> Context {
    ctx().with_idempotency_key(key)
}

/// A keyed call of one request: its fingerprint says it is the same request wherever sent.
fn request(key: &str) -> Context {
    keyed(key).with_request_fingerprint(format!("the request of {key}"))
}

async fn counter(runtime: &Runtime, name: &str) -> EntityRef<Counter> {
    runtime.entity(new_counter(runtime, name).await.id)
}

async fn a_repeated_action_applies_once_and_returns_the_first_state(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = counter(&runtime, "once").await;
    let first = counter
        .send_action(&keyed("deposit-1"), Add { amount: 5 })
        .await
        .unwrap();
    counter
        .send_action(&ctx(), Add { amount: 1 })
        .await
        .unwrap();
    let replays = runtime.metrics().idempotent_replays;
    let again = counter
        .send_action(&keyed("deposit-1"), Add { amount: 5 })
        .await
        .unwrap();
    assert_eq!(runtime.metrics().idempotent_replays - replays, 1);
    // The state as of the version the first call led to, not the current one.
    assert_eq!(again, first);
    assert_eq!((again.total, again.version), (5, 2));
    assert_eq!(counter.get().await.unwrap().total, 6);
    assert_eq!(
        stored(&runtime, counter.id()).await.event_versions,
        [1, 2, 3]
    );
}

/// Eight callers send the same keyed rename at once: one applies, the seven others wait for it
/// and return its state (counted: seven replays, one event). Decided after the first, a rename
/// to the same name would be refused: none is, so none was decided again.
async fn concurrent_duplicates_apply_once_and_all_return_its_outcome(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = counter(&runtime, "concurrent").await;
    let replays = runtime.metrics().idempotent_replays;
    let calls = (0..8).map(|_| {
        let counter = counter.clone();
        tokio::spawn(async move {
            counter
                .send_action(
                    &keyed("same"),
                    Rename {
                        name: "renamed".into(),
                    },
                )
                .await
        })
    });
    let states = futures::future::join_all(calls).await;
    for state in states {
        let state = state
            .unwrap()
            .expect("every duplicate gets the first's outcome");
        assert_eq!((state.name.as_str(), state.version), ("renamed", 2));
    }
    assert_eq!(runtime.metrics().idempotent_replays - replays, 7);
    assert_eq!(stored(&runtime, counter.id()).await.event_versions, [1, 2]);
}

async fn a_key_holds_across_a_restart_passivation_and_a_second_runtime(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let first = runtime(&db).await;
    let id = counter(&first, "durable").await.id();
    let applied = first
        .entity::<Counter>(id)
        .send_action(&keyed("k"), Add { amount: 7 })
        .await
        .unwrap();
    first.shutdown().await;

    // A restart: nothing in memory, the key in the database.
    let restarted = runtime_with(&db, |b| b.migrate(false)).await;
    let again = restarted
        .entity::<Counter>(id)
        .send_action(&keyed("k"), Add { amount: 7 })
        .await
        .unwrap();
    assert_eq!(again, applied);

    // A second runtime beside it.
    let second = runtime_with(&db, |b| b.migrate(false)).await;
    let from_second = second
        .entity::<Counter>(id)
        .send_action(&keyed("k"), Add { amount: 7 })
        .await
        .unwrap();
    assert_eq!(from_second, applied);

    // After the entity left memory.
    let passivating = runtime_with(&db, |b| {
        b.migrate(false).idle_timeout(Duration::from_millis(50))
    })
    .await;
    let entity = passivating.entity::<Counter>(id);
    entity.get().await.unwrap();
    metrics_until(&passivating, "the counter left memory", |m| {
        m.passivations >= 1
    })
    .await;
    assert_eq!(passivating.live_entities(), 0);
    let after_passivation = entity
        .send_action(&keyed("k"), Add { amount: 7 })
        .await
        .unwrap();
    assert_eq!(after_passivation, applied);
    assert_eq!(stored(&second, id).await.event_versions, [1, 2]);
}

async fn a_key_reused_for_another_call_is_refused_and_stores_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let a = counter(&runtime, "a").await;
    let b = counter(&runtime, "b").await;
    a.send_action(&keyed("k"), Add { amount: 1 }).await.unwrap();
    a.send_action(&keyed("units"), Note).await.unwrap();
    let request = keyed("request").with_request_fingerprint("body");
    a.send_action(&request, Add { amount: 1 }).await.unwrap();
    let (before_a, before_b) = (
        memory_and_database(&runtime, &a).await,
        memory_and_database(&runtime, &b).await,
    );
    let reused = |expected: &str, error: Error<CounterError>| {
        assert!(
            matches!(&error, Error::IdempotencyKeyReused { key } if key == expected),
            "{error:?}"
        );
    };
    // Another amount, another entity, another kind of call, a create.
    let with_k =
        |result: Result<Arc<Counter>, Error<CounterError>>| reused("k", result.unwrap_err());
    with_k(a.send_action(&keyed("k"), Add { amount: 2 }).await);
    with_k(b.send_action(&keyed("k"), Add { amount: 1 }).await);
    with_k(a.send_actions(&keyed("k"), [Add { amount: 1 }]).await);
    with_k(runtime.create::<Counter>(&keyed("k"), "c".to_owned()).await);
    // Another action of the same payload: another action type, or another unit struct (both
    // encode as `null`).
    with_k(a.send_action(&keyed("k"), AddTwice { amount: 1 }).await);
    reused(
        "units",
        a.send_action(&keyed("units"), Nothing).await.unwrap_err(),
    );
    // The same request, sent to another entity.
    reused(
        "request",
        b.send_action(&request, Add { amount: 1 })
            .await
            .unwrap_err(),
    );
    // The same call from another request (its fingerprint differs).
    with_k(
        a.send_action(
            &keyed("k").with_request_fingerprint("other body"),
            Add { amount: 1 },
        )
        .await,
    );
    assert_eq!(memory_and_database(&runtime, &a).await, before_a);
    assert_eq!(memory_and_database(&runtime, &b).await, before_b);
}

async fn keys_of_two_users_do_not_collide(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = counter(&runtime, "shared").await;
    let key = |user: &str| Context::new(user).with_idempotency_key("same key");
    counter
        .send_action(&key("alice"), Add { amount: 1 })
        .await
        .unwrap();
    let bob = counter
        .send_action(&key("bob"), Add { amount: 1 })
        .await
        .unwrap();
    assert_eq!((bob.total, bob.version), (2, 3));
}

async fn a_repeated_create_returns_the_same_entity(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let created = runtime
        .create::<Counter>(&keyed("create-1"), "made once".to_owned())
        .await
        .unwrap();
    runtime
        .entity::<Counter>(created.id)
        .send_action(&ctx(), Add { amount: 1 })
        .await
        .unwrap();
    let again = runtime
        .create::<Counter>(&keyed("create-1"), "made once".to_owned())
        .await
        .unwrap();
    assert_eq!(again, created);
    assert_eq!(again.version, 1);
    assert_eq!(
        scalar(&runtime, "SELECT count(*) FROM {entities}entities").await,
        Some(1)
    );
}

async fn a_repeated_batch_and_transaction_apply_once(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let a = counter(&runtime, "a").await;
    let b = counter(&runtime, "b").await;
    let batch = || a.send_actions(&keyed("batch"), [Add { amount: 1 }, Add { amount: 2 }]);
    let first = batch().await.unwrap();
    assert_eq!(batch().await.unwrap(), first);
    let (a_ref, b_ref) = (&a, &b);
    let key = keyed("transfer");
    let transfer = || {
        runtime.transaction(&key, |tx: Unit<CounterError>| async move {
            let a = tx.send_action(a_ref, Add { amount: 10 }).await?;
            let b = tx.send_action(b_ref, Add { amount: 10 }).await?;
            Ok((a.total, b.total))
        })
    };
    assert_eq!(transfer().await.unwrap(), (13, 10));
    assert_eq!(transfer().await.unwrap(), (13, 10));
    assert_eq!(stored(&runtime, a.id()).await.event_versions, [1, 2, 3, 4]);
    assert_eq!(stored(&runtime, b.id()).await.event_versions, [1, 2]);
}

async fn a_refused_call_stores_no_key_and_may_be_sent_again(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = counter(&runtime, "refused").await;
    let error = counter
        .send_action(
            &keyed("k"),
            Rename {
                name: "refused".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Rejected(CounterError::SameName(_))));
    assert_eq!(
        scalar(&runtime, "SELECT count(*) FROM {entities}idempotency_keys").await,
        Some(0)
    );
    counter
        .send_action(
            &ctx(),
            Rename {
                name: "other".into(),
            },
        )
        .await
        .unwrap();
    let renamed = counter
        .send_action(
            &keyed("k"),
            Rename {
                name: "refused".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "refused");
}

/// The first runtime's keyed transaction is held inside its database transaction (its
/// projection waits at a gate) when the second runtime runs the same transaction, which looks
/// its key up first (not there yet) and decides. The second's commit must then meet the first's
/// key: it writes nothing (its own entity untouched) and returns the first's value.
async fn a_duplicate_from_another_runtime_is_caught_at_commit_and_takes_its_writes_back(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    let first = runtime(&db).await;
    let second = runtime_with(&db, |b| b.migrate(false)).await;
    let held = counter(&first, "held").await;
    let other = second.entity::<Counter>(counter(&first, "other").await.id());
    let gate = Gate::new();
    // The same request (its fingerprint), sent to both runtimes.
    fn unit(
        label: &'static str,
        target: EntityRef<Counter>,
        rename: Option<String>,
        decided: Arc<Notify>,
    ) -> impl FnMut(
        Unit<CounterError>,
    ) -> futures::future::BoxFuture<'static, Result<String, Error<CounterError>>> {
        move |tx| {
            let (target, rename, decided) = (target.clone(), rename.clone(), decided.clone());
            Box::pin(async move {
                match rename {
                    Some(name) => tx.send_action(&target, Rename { name }).await?,
                    None => tx.send_action(&target, Add { amount: 1 }).await?,
                };
                decided.notify_one();
                Ok(label.to_owned())
            })
        }
    }
    let first_decided = Arc::new(Notify::new());
    let first_call = {
        let (first, held) = (first.clone(), held.clone());
        let work = unit(
            "first",
            held,
            Some(gate.name().to_owned()),
            first_decided.clone(),
        );
        tokio::spawn(async move { first.transaction(&request("transfer"), work).await })
    };
    gate.reached().await;
    let before_other = memory_and_database(&second, &other).await;
    let second_decided = Arc::new(Notify::new());
    let (done, second_done) = oneshot::channel();
    {
        let (second, other) = (second.clone(), other.clone());
        let work = unit("second", other, None, second_decided.clone());
        tokio::spawn(async move {
            let _ = done.send(second.transaction(&request("transfer"), work).await);
        });
    }
    // Its key looked up (and not found) before it decided; the first has not committed.
    second_decided.notified().await;
    gate.open();
    assert_eq!(first_call.await.unwrap().unwrap(), "first");
    assert_eq!(second_done.await.unwrap().unwrap(), "first");
    assert_eq!(memory_and_database(&second, &other).await, before_other);
    assert_eq!(stored(&first, held.id()).await.event_versions, [1, 2]);
}

async fn keys_past_their_retention_are_deleted_and_their_calls_are_new(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.idempotency_retention(Duration::from_secs(10))).await;
    let counter = counter(&runtime, "expiring").await;
    counter
        .send_action(&keyed("old"), Add { amount: 1 })
        .await
        .unwrap();
    counter
        .send_action(&keyed("new"), Add { amount: 2 })
        .await
        .unwrap();
    let day_ago = match backend {
        Backend::Postgres => "now() - interval '1 day'",
        Backend::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')",
    };
    exec(
        &runtime,
        &format!(
            "UPDATE {{entities}}idempotency_keys SET created_at = {day_ago} WHERE key = 'old'"
        ),
    )
    .await;
    metrics_until(&runtime, "the old key deleted", |m| {
        m.idempotency_keys_expired >= 1
    })
    .await;
    assert_eq!(
        scalar(&runtime, "SELECT count(*) FROM {entities}idempotency_keys").await,
        Some(1),
        "the key within its retention stays"
    );
    let new_call = counter
        .send_action(&keyed("old"), Add { amount: 1 })
        .await
        .unwrap();
    assert_eq!((new_call.total, new_call.version), (4, 4));
    let kept = counter
        .send_action(&keyed("new"), Add { amount: 2 })
        .await
        .unwrap();
    assert_eq!(kept.version, 3);
}

/// A keyed create's caller gives up while the create waits for the (held) committer, and the
/// retry with the same key goes into the same batch: the two units carry one key. One entity
/// is created, the retry answers with it, and one key row is stored (counted).
async fn a_key_given_up_on_and_retried_in_one_batch_applies_once(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    let gate = Gate::new();
    let blocker = hold_the_committer(&runtime, &gate).await;
    let entities = scalar(&runtime, "SELECT count(*) FROM {entities}entities").await;
    let given_up = {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            runtime
                .create::<Counter>(&keyed("create"), "once".to_owned())
                .await
        })
    };
    metrics_until(&runtime, "the first create waiting", |m| {
        m.chains_waiting >= 1
    })
    .await;
    given_up.abort();
    assert!(given_up.await.unwrap_err().is_cancelled());
    let retry = {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            runtime
                .create::<Counter>(&keyed("create"), "once".to_owned())
                .await
        })
    };
    metrics_until(&runtime, "both creates waiting", |m| m.chains_waiting >= 2).await;
    gate.open();
    blocker.await.unwrap();
    let created = retry.await.unwrap().unwrap();
    assert_eq!(created.name, "once");
    assert_eq!(
        scalar(&runtime, "SELECT count(*) FROM {entities}entities").await,
        entities.map(|n| n + 1)
    );
    assert_eq!(
        scalar(&runtime, "SELECT count(*) FROM {entities}idempotency_keys").await,
        Some(1)
    );
    assert_eq!(
        runtime
            .create::<Counter>(&keyed("create"), "once".to_owned())
            .await
            .unwrap(),
        created
    );
}

/// A keyed rename that its projection refuses (the name is another counter's), committed in one
/// batch with a neighbour: the batch's projections are redone (counted), the rename and its key
/// are taken back, the neighbour commits; sent again once the name is free, it applies.
async fn a_keyed_call_refused_by_its_projection_in_a_shared_batch_stores_no_key(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    let holder = counter(&runtime, "taken").await;
    let renamed = counter(&runtime, "renamed").await;
    let neighbour = counter(&runtime, "neighbour").await;
    let gate = Gate::new();
    let blocker = hold_the_committer(&runtime, &gate).await;
    let redos = runtime.metrics().projection_redos;
    let rename = {
        let renamed = renamed.clone();
        tokio::spawn(async move {
            renamed
                .send_action(
                    &keyed("rename"),
                    Rename {
                        name: "taken".into(),
                    },
                )
                .await
        })
    };
    let add = {
        let neighbour = neighbour.clone();
        tokio::spawn(async move { neighbour.send_action(&ctx(), Add { amount: 3 }).await })
    };
    metrics_until(&runtime, "both waiting", |m| m.chains_waiting >= 2).await;
    gate.open();
    blocker.await.unwrap();
    let error = rename.await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Constraint { .. }), "{error:?}");
    assert_eq!(add.await.unwrap().unwrap().total, 3);
    assert_eq!(runtime.metrics().projection_redos - redos, 1);
    assert_eq!(
        scalar(
            &runtime,
            "SELECT count(*) FROM {entities}idempotency_keys WHERE key = 'rename'"
        )
        .await,
        Some(0)
    );
    holder
        .send_action(
            &ctx(),
            Rename {
                name: "free".into(),
            },
        )
        .await
        .unwrap();
    let applied = renamed
        .send_action(
            &keyed("rename"),
            Rename {
                name: "taken".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(applied.name, "taken");
}
