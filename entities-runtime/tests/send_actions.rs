//! `send_actions`: a batch on one entity is decided action after action and stored whole, in one
//! transaction with one version check, or not at all.

mod support;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Error};
use support::*;

on_both_backends!(
    a_batch_stores_every_action_in_one_transaction,
    each_action_of_a_batch_is_decided_on_the_state_the_one_before_left,
    a_refusal_names_the_action_and_stores_nothing,
    a_projection_refusal_takes_back_the_whole_batch_and_spares_its_neighbours,
    a_panicking_handler_in_a_batch_stores_nothing_and_the_entity_reloads,
    an_action_that_cannot_be_stored_refuses_the_batch_before_any_handler,
    a_batch_that_decides_no_events_stores_nothing,
    a_batch_that_meets_another_runtimes_write_is_decided_again_and_lands_once,
    a_batch_after_queued_actions_sees_their_effects,
);

async fn a_batch_stores_every_action_in_one_transaction(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "batch").await.id);
    let before = runtime.metrics();
    let after = counter
        .send_actions(
            &ctx(),
            [
                CounterAction::from(Add { amount: 1 }),
                AddTwice { amount: 2 }.into(),
                Rename {
                    name: "renamed".into(),
                }
                .into(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        (after.total, after.version, after.name.as_str()),
        (5, 5, "renamed")
    );
    let metrics = runtime.metrics();
    assert_eq!(metrics.transactions - before.transactions, 1);
    assert_eq!(metrics.actions_committed - before.actions_committed, 3);
    let stored = stored(&runtime, counter.id()).await;
    assert_eq!(stored.event_versions, [1, 2, 3, 4, 5]);
    assert_eq!(stored.actions, Some(4));
    assert_eq!(stored.read_model, Some(("renamed".into(), 5, 5)));
    assert_eq!(cold_load(&db, counter.id()).await, *after);
    assert_eq!(*counter.get().await.unwrap(), *after);
}

async fn each_action_of_a_batch_is_decided_on_the_state_the_one_before_left(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "first").await.id);
    // The second rename is to the name the first gave: refused only if decided after it.
    let refused = counter
        .send_actions(
            &ctx(),
            [
                Rename {
                    name: "second".into(),
                },
                Rename {
                    name: "second".into(),
                },
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::InBatch { index: 1, error } if matches!(**error, Error::Rejected(CounterError::SameName(ref name)) if name == "second")),
        "{refused:?}"
    );
    assert_eq!(
        refused.rejection(),
        Some(&CounterError::SameName("second".into()))
    );
    assert_eq!(counter.get().await.unwrap().name, "first");
}

async fn a_refusal_names_the_action_and_stores_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "refused").await.id);
    counter
        .send_action(&ctx(), Add { amount: 3 })
        .await
        .unwrap();
    let before = memory_and_database(&runtime, &counter).await;
    let error = counter
        .send_actions(
            &ctx(),
            [
                Add { amount: 1 },
                Add { amount: 2 },
                Add { amount: -4 },
                Add { amount: 5 },
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::InBatch { index: 2, error } if matches!(**error, Error::Rejected(CounterError::NotPositive(-4)))),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "action 2 of the batch: rejected: amounts must be positive, not -4"
    );
    assert_eq!(memory_and_database(&runtime, &counter).await, before);
    // The refusal left the entity's spare state good: the next action builds on what is stored.
    let next = counter
        .send_action(&ctx(), Add { amount: 10 })
        .await
        .unwrap();
    assert_eq!((next.total, next.version), (13, 3));
    assert_eq!(cold_load(&db, counter.id()).await, *next);
}

/// A batch whose third action's projection fails (the rename to a name another counter holds
/// breaks the read model's unique constraint) is taken back whole: its first two actions too.
/// Counters written in the same group commit keep their writes; counted: the batch and its
/// neighbours shared one transaction before the redo.
async fn a_projection_refusal_takes_back_the_whole_batch_and_spares_its_neighbours(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    new_counter(&runtime, "taken name").await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "batched").await.id);
    let mut neighbours = Vec::new();
    for n in 0..4 {
        neighbours
            .push(runtime.entity::<Counter>(new_counter(&runtime, &format!("n{n}")).await.id));
    }
    let before = memory_and_database(&runtime, &counter).await;
    // The committer is held, so the batch and its neighbours wait for it together.
    let gate = Gate::new();
    let blocker = hold_the_committer(&runtime, &gate).await;
    let redos = runtime.metrics().projection_redos;
    let batch = {
        let counter = counter.clone();
        tokio::spawn(async move {
            counter
                .send_actions(
                    &ctx(),
                    [
                        CounterAction::from(Add { amount: 1 }),
                        Add { amount: 2 }.into(),
                        Rename {
                            name: "taken name".into(),
                        }
                        .into(),
                    ],
                )
                .await
        })
    };
    let mut writes = Vec::new();
    for neighbour in &neighbours {
        let neighbour = neighbour.clone();
        writes.push(tokio::spawn(async move {
            neighbour.send_action(&ctx(), Add { amount: 7 }).await
        }));
    }
    metrics_until(&runtime, "the batch and its neighbours waiting", |m| {
        m.chains_waiting >= 5
    })
    .await;
    gate.open();
    blocker.await.unwrap();
    let error = batch.await.unwrap().unwrap_err();
    assert!(
        matches!(&error, Error::InBatch { index: 2, error } if matches!(**error, Error::Constraint { ref constraint, .. } if constraint.contains("name"))),
        "{error:?}"
    );
    for write in writes {
        assert_eq!(write.await.unwrap().unwrap().total, 7);
    }
    assert_eq!(
        runtime.metrics().projection_redos - redos,
        1,
        "the batch was written with its neighbours, then redone alone"
    );
    assert_eq!(memory_and_database(&runtime, &counter).await, before);
    for neighbour in &neighbours {
        assert_eq!(read_model(&runtime, neighbour.id()).await.unwrap().1, 7);
    }
}

async fn a_panicking_handler_in_a_batch_stores_nothing_and_the_entity_reloads(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "panics").await.id);
    let before = memory_and_database(&runtime, &counter).await;
    let loads = runtime.metrics().loads;
    let error = counter
        .send_actions(
            &ctx(),
            [CounterAction::from(Add { amount: 1 }), Explode.into()],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::InBatch { index: 1, error } if matches!(**error, Error::Panicked { during: "handler", .. })),
        "{error:?}"
    );
    metrics_until(&runtime, "the entity reloaded", |m| m.loads == loads + 1).await;
    assert_eq!(memory_and_database(&runtime, &counter).await, before);
    let error = counter
        .send_actions(
            &ctx(),
            [
                Add { amount: 1 },
                Add {
                    amount: PANIC_IN_APPLY,
                },
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::InBatch { index: 1, error } if matches!(**error, Error::Panicked { during: "apply", .. })),
        "{error:?}"
    );
    assert_eq!(memory_and_database(&runtime, &counter).await, before);
}

async fn an_action_that_cannot_be_stored_refuses_the_batch_before_any_handler(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "payload").await.id);
    let before = memory_and_database(&runtime, &counter).await;
    let error = counter
        .send_actions(
            &ctx(),
            [
                CounterAction::from(Explode),
                Rename {
                    name: "nul \0 inside".into(),
                }
                .into(),
            ],
        )
        .await
        .unwrap_err();
    // Index 0 would panic if its handler ran: the payload check comes first.
    assert!(
        matches!(&error, Error::InBatch { index: 1, error } if matches!(**error, Error::Payload { type_tag: "Rename", .. })),
        "{error:?}"
    );
    assert_eq!(memory_and_database(&runtime, &counter).await, before);
}

async fn a_batch_that_decides_no_events_stores_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "nothing").await.id);
    let before = memory_and_database(&runtime, &counter).await;
    let transactions = runtime.metrics().transactions;
    let state = counter
        .send_actions(&ctx(), [Nothing, Nothing])
        .await
        .unwrap();
    assert_eq!(state, before.0);
    let empty: Vec<Add> = Vec::new();
    assert_eq!(counter.send_actions(&ctx(), empty).await.unwrap(), before.0);
    assert_eq!(runtime.metrics().transactions, transactions);
    assert_eq!(memory_and_database(&runtime, &counter).await, before);
}

/// Another runtime writes the counter after this one loaded it: the batch's version check fails
/// (counted), it catches up and is decided again on the other write, and lands once.
async fn a_batch_that_meets_another_runtimes_write_is_decided_again_and_lands_once(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    // Not following the second's writes: the conflict is what this stages.
    let first = runtime_with(&db, |b| b.follow_other_writers(false)).await;
    let second = runtime_with(&db, |b| b.migrate(false)).await;
    let id = new_counter(&first, "contended").await.id;
    let here = first.entity::<Counter>(id);
    assert_eq!(here.get().await.unwrap().version, 1);
    second
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount: 100 })
        .await
        .unwrap();
    let conflicts = first.metrics().conflicts;
    let after = here
        .send_actions(&ctx(), [Add { amount: 1 }, Add { amount: 2 }])
        .await
        .unwrap();
    assert_eq!(first.metrics().conflicts - conflicts, 1);
    assert_eq!((after.total, after.version), (103, 4));
    assert_eq!(stored(&first, id).await.event_versions, [1, 2, 3, 4]);
    assert_eq!(cold_load(&db, id).await, *after);
}

/// Actions queued before a batch are decided before it, even when the worker takes them from
/// its inbox together: the batch sees their effects.
async fn a_batch_after_queued_actions_sees_their_effects(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "queue").await.id);
    let gate = Gate::new();
    let blocker = hold_the_committer(&runtime, &gate).await;
    // Keeps the counter's worker waiting on the held committer while the next two queue up.
    let busy = {
        let counter = counter.clone();
        tokio::spawn(async move { counter.send_action(&ctx(), Add { amount: 1 }).await })
    };
    metrics_until(&runtime, "the add waiting", |m| m.chains_waiting >= 1).await;
    let ctx = ctx();
    let mut rename = counter.send_action(
        &ctx,
        Rename {
            name: "named".into(),
        },
    );
    let mut batch = counter.send_actions(
        &ctx,
        [Rename {
            name: "named".into(),
        }],
    );
    // One poll each queues them (in this order) in the counter's inbox.
    assert!(futures::poll!(&mut rename).is_pending());
    assert!(futures::poll!(&mut batch).is_pending());
    gate.open();
    blocker.await.unwrap();
    assert_eq!(busy.await.unwrap().unwrap().total, 1);
    assert_eq!(rename.await.unwrap().name, "named");
    let refused = batch.await.unwrap_err();
    assert_eq!(
        refused.rejection(),
        Some(&CounterError::SameName("named".into()))
    );
}
