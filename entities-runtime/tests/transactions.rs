//! `Runtime::transaction`: actions on several entities commit in one database transaction, or
//! none does; while a unit decides, no other action of its entities interleaves; conflicts run
//! it again; two units never wait on each other for ever.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, EntityRef, Error, Runtime, Unit};
use support::*;
use tokio::sync::{Notify, oneshot};

on_both_backends!(
    actions_on_two_entities_commit_in_one_transaction,
    a_refused_second_step_leaves_the_first_entity_untouched,
    a_projection_failure_of_the_second_step_takes_back_the_first,
    a_panicking_second_step_fails_the_unit_and_leaves_the_first_untouched,
    a_refusal_the_closure_handles_records_nothing_and_the_rest_commits,
    a_conflict_from_another_runtime_runs_the_unit_again_and_both_effects_land_once,
    units_over_the_same_entities_in_opposite_orders_neither_deadlock_nor_lose_updates,
    a_unit_may_create_an_entity_and_act_on_it,
    while_a_unit_decides_reads_answer_and_other_actions_wait,
    an_entity_asked_for_out_of_order_runs_the_unit_again_taking_it_first,
    a_unit_kept_past_its_closure_is_refused,
    a_unit_that_decides_nothing_stores_nothing,
    a_create_refused_inside_a_unit_leaves_no_row,
    a_unit_whose_caller_gives_up_during_the_commit_still_publishes_what_it_committed,
    a_unit_refused_by_a_projection_in_a_shared_batch_is_taken_back_on_every_entity,
);

type Result<T> = std::result::Result<T, Error<CounterError>>;

async fn two_counters(runtime: &Runtime) -> (EntityRef<Counter>, EntityRef<Counter>) {
    let a = new_counter(runtime, "a").await.id;
    let b = new_counter(runtime, "b").await.id;
    (runtime.entity(a), runtime.entity(b))
}

/// Adds `amount` to both counters in one unit.
async fn add_to_both(
    runtime: &Runtime,
    a: &EntityRef<Counter>,
    b: &EntityRef<Counter>,
    amount: i64,
) -> Result<(Arc<Counter>, Arc<Counter>)> {
    runtime
        .transaction(&ctx(), |tx: Unit<CounterError>| async move {
            let a = tx.send_action(a, Add { amount }).await?;
            let b = tx.send_action(b, Add { amount }).await?;
            Ok((a, b))
        })
        .await
}

async fn actions_on_two_entities_commit_in_one_transaction(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let (a, b) = two_counters(&runtime).await;
    let before = runtime.metrics();
    let (after_a, after_b) = add_to_both(&runtime, &a, &b, 5).await.unwrap();
    assert_eq!((after_a.total, after_a.version), (5, 2));
    assert_eq!((after_b.total, after_b.version), (5, 2));
    let metrics = runtime.metrics();
    assert_eq!(metrics.transactions - before.transactions, 1);
    assert_eq!(metrics.actions_committed - before.actions_committed, 2);
    // Published before the call returned, and what a fresh load reads.
    assert_eq!(a.get().await.unwrap(), after_a);
    assert_eq!(b.get().await.unwrap(), after_b);
    assert_eq!(cold_load(&db, a.id()).await, *after_a);
    assert_eq!(read_model(&runtime, b.id()).await, Some(("b".into(), 5, 2)));
    if backend == Backend::Postgres {
        let transactions = scalar(
            &runtime,
            &format!(
                "SELECT count(DISTINCT transaction_id) FROM entities.entity_events \
                 WHERE entity_version = 2 AND entity_id IN ({}, {})",
                a.id(),
                b.id()
            ),
        )
        .await;
        assert_eq!(
            transactions,
            Some(1),
            "both events in one database transaction"
        );
    }
}

async fn a_refused_second_step_leaves_the_first_entity_untouched(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let (a, b) = two_counters(&runtime).await;
    let (before_a, before_b) = (
        memory_and_database(&runtime, &a).await,
        memory_and_database(&runtime, &b).await,
    );
    let (a, b) = (&a, &b);
    let error = runtime
        .transaction(&ctx(), |tx: Unit<CounterError>| async move {
            tx.send_action(a, Add { amount: 5 }).await?;
            tx.send_action(b, Add { amount: -1 }).await?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Rejected(CounterError::NotPositive(-1))),
        "{error:?}"
    );
    assert_eq!(memory_and_database(&runtime, a).await, before_a);
    assert_eq!(memory_and_database(&runtime, b).await, before_b);
}

async fn a_projection_failure_of_the_second_step_takes_back_the_first(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    new_counter(&runtime, "taken").await;
    let (a, b) = two_counters(&runtime).await;
    let (before_a, before_b) = (
        memory_and_database(&runtime, &a).await,
        memory_and_database(&runtime, &b).await,
    );
    let (a, b) = (&a, &b);
    let error = runtime
        .transaction(&ctx(), |tx: Unit<CounterError>| async move {
            tx.send_action(a, Add { amount: 5 }).await?;
            // Decided fine; its projection breaks the read model's unique name at commit.
            tx.send_action(
                b,
                Rename {
                    name: "taken".into(),
                },
            )
            .await?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Constraint { id, .. } if *id == b.id()),
        "{error:?}"
    );
    assert_eq!(memory_and_database(&runtime, a).await, before_a);
    assert_eq!(memory_and_database(&runtime, b).await, before_b);
}

async fn a_panicking_second_step_fails_the_unit_and_leaves_the_first_untouched(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let (a, b) = two_counters(&runtime).await;
    let (before_a, before_b) = (
        memory_and_database(&runtime, &a).await,
        memory_and_database(&runtime, &b).await,
    );
    let loads = runtime.metrics().loads;
    let (a, b) = (&a, &b);
    let error = runtime
        .transaction(&ctx(), |tx: Unit<CounterError>| async move {
            tx.send_action(a, Add { amount: 5 }).await?;
            // The closure swallows the panic's error: the unit fails all the same.
            let _ = tx.send_action(b, Explode).await;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Panicked { during: "handler", id, .. } if *id == b.id()),
        "{error:?}"
    );
    metrics_until(&runtime, "the panicked entity reloaded", |m| {
        m.loads == loads + 1
    })
    .await;
    assert_eq!(memory_and_database(&runtime, a).await, before_a);
    assert_eq!(memory_and_database(&runtime, b).await, before_b);
}

async fn a_refusal_the_closure_handles_records_nothing_and_the_rest_commits(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let (a, b) = two_counters(&runtime).await;
    let (a, b) = (&a, &b);
    let (after_a, after_b) = runtime
        .transaction(&ctx(), |tx: Unit<CounterError>| async move {
            let refused = tx.send_action(a, Add { amount: -3 }).await;
            assert!(matches!(
                refused,
                Err(Error::Rejected(CounterError::NotPositive(-3)))
            ));
            Ok((
                tx.send_action(a, Add { amount: 3 }).await?,
                tx.send_action(b, Add { amount: 4 }).await?,
            ))
        })
        .await
        .unwrap();
    assert_eq!((after_a.total, after_a.version), (3, 2));
    assert_eq!((after_b.total, after_b.version), (4, 2));
    assert_eq!(stored(&runtime, a.id()).await.event_versions, [1, 2]);
}

/// The closure's first run waits, after deciding, until another runtime has written `a`: its
/// commit then meets a newer version (counted), the unit catches up and runs again (counted: two
/// runs), and both effects are stored once.
async fn a_conflict_from_another_runtime_runs_the_unit_again_and_both_effects_land_once(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    let first = runtime(&db).await;
    let second = runtime_with(&db, |b| b.migrate(false)).await;
    let (a, b) = two_counters(&first).await;
    let decided = Arc::new(Notify::new());
    let (written, wait_for_write) = oneshot::channel::<()>();
    let wait_for_write = Arc::new(tokio::sync::Mutex::new(Some(wait_for_write)));
    let runs = Arc::new(AtomicU32::new(0));
    let unit = {
        let (first, a, b) = (first.clone(), a.clone(), b.clone());
        let (decided, wait_for_write, runs) =
            (decided.clone(), wait_for_write.clone(), runs.clone());
        tokio::spawn(async move {
            let (a, b) = (&a, &b);
            let (decided, wait_for_write, runs) = (&decided, &wait_for_write, &runs);
            first
                .transaction(&ctx(), |tx: Unit<CounterError>| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let a = tx.send_action(a, Add { amount: 1 }).await?;
                    let b = tx.send_action(b, Add { amount: 2 }).await?;
                    if let Some(wait) = wait_for_write.lock().await.take() {
                        decided.notify_one();
                        let _ = wait.await;
                    }
                    Ok((a, b))
                })
                .await
        })
    };
    decided.notified().await;
    second
        .entity::<Counter>(a.id())
        .send_action(&ctx(), Add { amount: 100 })
        .await
        .unwrap();
    let conflicts = first.metrics().conflicts;
    written.send(()).unwrap();
    let (after_a, after_b) = unit.await.unwrap().unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(first.metrics().conflicts - conflicts, 1);
    assert_eq!((after_a.total, after_a.version), (101, 3));
    assert_eq!((after_b.total, after_b.version), (2, 2));
    assert_eq!(stored(&first, a.id()).await.event_versions, [1, 2, 3]);
    assert_eq!(stored(&first, b.id()).await.event_versions, [1, 2]);
    assert_eq!(cold_load(&db, a.id()).await, *after_a);
}

/// Many units at once, half taking `a` then `b`, half `b` then `a`, plus plain actions: every
/// one finishes (no deadlock) and no update is lost.
async fn units_over_the_same_entities_in_opposite_orders_neither_deadlock_nor_lose_updates(
    backend: Backend,
) {
    const UNITS: i64 = 40;
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let (a, b) = two_counters(&runtime).await;
    let mut tasks = Vec::new();
    for n in 0..UNITS {
        let (runtime, a, b) = (runtime.clone(), a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let (first, second) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
            runtime
                .transaction(&ctx(), |tx: Unit<CounterError>| async move {
                    tx.send_action(first, Add { amount: 1 }).await?;
                    tokio::task::yield_now().await;
                    tx.send_action(second, Add { amount: 1 }).await?;
                    Ok(())
                })
                .await
                .unwrap();
            a.send_action(&ctx(), Add { amount: 1 }).await.unwrap();
        }));
    }
    let all = futures::future::join_all(tasks);
    for task in tokio::time::timeout(std::time::Duration::from_secs(20), all)
        .await
        .expect("no deadlock")
    {
        task.unwrap();
    }
    let (after_a, after_b) = (a.get().await.unwrap(), b.get().await.unwrap());
    assert_eq!(after_a.total, 2 * UNITS);
    assert_eq!(after_b.total, UNITS);
    assert_eq!(cold_load(&db, a.id()).await, *after_a);
    assert_eq!(cold_load(&db, b.id()).await, *after_b);
    assert_eq!(
        stored(&runtime, a.id()).await.event_versions,
        (1..=2 * UNITS + 1).collect::<Vec<_>>()
    );
}

async fn a_unit_may_create_an_entity_and_act_on_it(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let source = runtime.entity::<Counter>(new_counter(&runtime, "source").await.id);
    let (source, runtime_ref) = (&source, &runtime);
    let runs = AtomicU32::new(0);
    let runs = &runs;
    let (split, after_source) = runtime
        .transaction(&ctx(), |tx: Unit<CounterError>| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let created = tx.create::<Counter>("split".to_owned()).await?;
            let split = runtime_ref.entity::<Counter>(created.id);
            let split = tx.send_action(&split, Add { amount: 9 }).await?;
            let source = tx.send_action(source, Add { amount: 1 }).await?;
            Ok((split, source))
        })
        .await
        .unwrap();
    assert_eq!(
        (split.name.as_str(), split.total, split.version),
        ("split", 9, 2)
    );
    assert_eq!(after_source.total, 1);
    // The new entity has no turn: taking the older one after it needs no second run.
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let split_ref = runtime.entity::<Counter>(split.id);
    assert_eq!(*split_ref.get().await.unwrap(), *split);
    assert_eq!(
        read_model(&runtime, split.id).await,
        Some(("split".into(), 9, 2))
    );

    // Refused after the create: no row of the new entity is left.
    let count = || scalar(&runtime, "SELECT count(*) FROM {entities}entities");
    let entities = count().await;
    let error = runtime
        .transaction(&ctx(), |tx: Unit<CounterError>| async move {
            tx.create::<Counter>("doomed".to_owned()).await?;
            tx.send_action(source, Add { amount: 0 }).await?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        Error::Rejected(CounterError::NotPositive(0))
    ));
    assert_eq!(count().await, entities);
}

/// A unit holds `a` while its closure waits: `get` answers at once with the committed state, and
/// an action sent to `a` meanwhile waits for the unit (it is not done when the unit is let go,
/// counted by its result: decided after the unit's add).
async fn while_a_unit_decides_reads_answer_and_other_actions_wait(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let (a, _) = two_counters(&runtime).await;
    let held = Arc::new(Notify::new());
    let (release, released) = oneshot::channel::<()>();
    let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
    let unit = {
        let (runtime, a, held, released) =
            (runtime.clone(), a.clone(), held.clone(), released.clone());
        tokio::spawn(async move {
            let (a, held, released) = (&a, &held, &released);
            runtime
                .transaction(&ctx(), |tx: Unit<CounterError>| async move {
                    let a = tx.send_action(a, Add { amount: 10 }).await?;
                    if let Some(released) = released.lock().await.take() {
                        held.notify_one();
                        let _ = released.await;
                    }
                    Ok(a)
                })
                .await
        })
    };
    held.notified().await;
    let seen = a.get().await.unwrap();
    assert_eq!(
        (seen.total, seen.version),
        (0, 1),
        "the committed state, at once"
    );
    let mut waiting = a.send_action(&ctx(), Add { amount: 1 });
    assert!(futures::poll!(&mut waiting).is_pending());
    release.send(()).unwrap();
    assert_eq!(unit.await.unwrap().unwrap().total, 10);
    let after = waiting.await.unwrap();
    assert_eq!((after.total, after.version), (11, 3));
}

/// The closure asks for the counter of the greater id first: taking the smaller one then, while
/// holding the greater, could wait for ever on a unit doing the opposite, so the unit runs again
/// with both taken in order (counted: two runs), and commits once.
async fn an_entity_asked_for_out_of_order_runs_the_unit_again_taking_it_first(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let (low, high) = two_counters(&runtime).await;
    assert!(low.id() < high.id());
    let runs = AtomicU32::new(0);
    let (low, high, runs) = (&low, &high, &runs);
    runtime
        .transaction(&ctx(), |tx: Unit<CounterError>| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tx.send_action(high, Add { amount: 1 }).await?;
            tx.send_action(low, Add { amount: 1 }).await?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(stored(&runtime, low.id()).await.event_versions, [1, 2]);
    assert_eq!(stored(&runtime, high.id()).await.event_versions, [1, 2]);
}

async fn a_unit_kept_past_its_closure_is_refused(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let (a, _) = two_counters(&runtime).await;
    let kept = std::sync::Mutex::new(None);
    let kept_ref = &kept;
    runtime
        .transaction(&ctx(), |tx: Unit<CounterError>| async move {
            *kept_ref.lock().unwrap() = Some(tx.clone());
            Ok(())
        })
        .await
        .unwrap();
    let tx = kept.lock().unwrap().take().unwrap();
    let error = tx.send_action(&a, Add { amount: 1 }).await.unwrap_err();
    assert!(matches!(error, Error::UnitEnded), "{error:?}");
    assert_eq!(stored(&runtime, a.id()).await.event_versions, [1]);
}

async fn a_unit_that_decides_nothing_stores_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let (a, b) = two_counters(&runtime).await;
    let transactions = runtime.metrics().transactions;
    let (a, b) = (&a, &b);
    let (seen_a, seen_b) = runtime
        .transaction(&ctx(), |tx: Unit<CounterError>| async move {
            let seen_a = tx.send_action(a, Nothing).await?;
            Ok((seen_a, tx.get(b).await?))
        })
        .await
        .unwrap();
    assert_eq!((seen_a.version, seen_b.version), (1, 1));
    assert_eq!(runtime.metrics().transactions, transactions);
}

async fn a_create_refused_inside_a_unit_leaves_no_row(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let (a, _) = two_counters(&runtime).await;
    let entities = scalar(&runtime, "SELECT count(*) FROM {entities}entities").await;
    let a = &a;
    let after = runtime
        .transaction(&ctx(), |tx: Unit<CounterError>| async move {
            // A blank name: `Open` is refused, and the closure goes on without the entity.
            let refused = tx.create::<Counter>(" ".to_owned()).await;
            assert!(matches!(
                refused,
                Err(Error::Rejected(CounterError::BlankName))
            ));
            tx.send_action(a, Add { amount: 1 }).await
        })
        .await
        .unwrap();
    assert_eq!(after.version, 2);
    assert_eq!(
        scalar(&runtime, "SELECT count(*) FROM {entities}entities").await,
        entities
    );
}

/// Waits until `entity`'s published state is at `version`; panics after 10 seconds.
async fn version_eventually(entity: &EntityRef<Counter>, version: i64) -> Arc<Counter> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let state = entity.get().await.unwrap();
        if state.version == version {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still at version {}",
            state.version
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The unit waits for the held committer when its caller gives up (its task aborted, counted as
/// cancelled). The commit goes on: once the committer is free, both counters show the committed
/// state, and their turns are back (the next actions are decided on it).
async fn a_unit_whose_caller_gives_up_during_the_commit_still_publishes_what_it_committed(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    let (a, b) = two_counters(&runtime).await;
    let gate = Gate::new();
    let blocker = hold_the_committer(&runtime, &gate).await;
    let transactions = runtime.metrics().transactions;
    let unit = {
        let (runtime, a, b) = (runtime.clone(), a.clone(), b.clone());
        tokio::spawn(async move { add_to_both(&runtime, &a, &b, 5).await })
    };
    metrics_until(&runtime, "the unit waiting", |m| m.chains_waiting >= 1).await;
    unit.abort();
    assert!(unit.await.unwrap_err().is_cancelled());
    gate.open();
    blocker.await.unwrap();
    metrics_until(&runtime, "the unit committed", |m| {
        m.transactions >= transactions + 2
    })
    .await;
    assert_eq!(version_eventually(&a, 2).await.total, 5);
    assert_eq!(version_eventually(&b, 2).await.total, 5);
    let next = a.send_action(&ctx(), Add { amount: 1 }).await.unwrap();
    assert_eq!((next.total, next.version), (6, 3));
    assert_eq!(cold_load(&db, a.id()).await, *next);
}

/// A unit over two counters whose second step's projection fails, committed in one batch with
/// a neighbour: the batch's projections are redone (counted), the unit's rows are taken back on
/// both counters, and the neighbour commits.
async fn a_unit_refused_by_a_projection_in_a_shared_batch_is_taken_back_on_every_entity(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    new_counter(&runtime, "taken").await;
    let (a, b) = two_counters(&runtime).await;
    let neighbour = runtime.entity::<Counter>(new_counter(&runtime, "neighbour").await.id);
    let (before_a, before_b) = (
        memory_and_database(&runtime, &a).await,
        memory_and_database(&runtime, &b).await,
    );
    let gate = Gate::new();
    let blocker = hold_the_committer(&runtime, &gate).await;
    let redos = runtime.metrics().projection_redos;
    let unit = {
        let (runtime, a, b) = (runtime.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            let (a, b) = (&a, &b);
            runtime
                .transaction(&ctx(), |tx: Unit<CounterError>| async move {
                    tx.send_action(a, AddTwice { amount: 2 }).await?;
                    tx.send_action(
                        b,
                        Rename {
                            name: "taken".into(),
                        },
                    )
                    .await?;
                    Ok(())
                })
                .await
        })
    };
    let add = {
        let neighbour = neighbour.clone();
        tokio::spawn(async move { neighbour.send_action(&ctx(), Add { amount: 7 }).await })
    };
    metrics_until(&runtime, "the unit and its neighbour waiting", |m| {
        m.chains_waiting >= 2
    })
    .await;
    gate.open();
    blocker.await.unwrap();
    let error = unit.await.unwrap().unwrap_err();
    assert!(
        matches!(&error, Error::Constraint { id, .. } if *id == b.id()),
        "{error:?}"
    );
    assert_eq!(add.await.unwrap().unwrap().total, 7);
    assert_eq!(runtime.metrics().projection_redos - redos, 1);
    assert_eq!(memory_and_database(&runtime, &a).await, before_a);
    assert_eq!(memory_and_database(&runtime, &b).await, before_b);
}
