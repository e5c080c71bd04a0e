//! Every failure is a value and changes nothing: not the database, not the state in memory.

mod support;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Context, Error};
use support::*;

on_both_backends!(
    a_rejected_action_changes_nothing,
    a_unique_violation_in_a_projection_changes_nothing_and_names_the_constraint,
    a_panicking_handler_fails_only_its_own_call,
    a_panicking_apply_fails_only_its_own_call_and_the_entity_reloads,
    a_database_error_in_the_append_is_a_storage_error_and_changes_nothing,
    a_panicking_projection_rolls_back_its_writes,
    an_unknown_id_is_not_found,
    a_rejected_create_leaves_no_entity,
    a_nul_character_is_refused_before_anything_is_written,
    a_projection_going_on_after_a_failed_statement_is_not_reported_committed,
    an_action_deciding_no_events_stores_nothing,
    calls_after_shutdown_are_refused,
);

async fn a_rejected_action_changes_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "strict").await.id);
    counter
        .send_action(&ctx(), Add { amount: 2 })
        .await
        .unwrap();
    let (memory, database) = memory_and_database(&runtime, &counter).await;

    let result = counter.send_action(&ctx(), Add { amount: -1 }).await;
    assert!(
        matches!(result, Err(Error::Rejected(CounterError::NotPositive(-1)))),
        "{result:?}"
    );
    assert_eq!(counter.get().await.unwrap(), memory);
    assert_eq!(stored(&runtime, counter.id()).await, database);
    runtime.shutdown().await;
}

async fn a_unique_violation_in_a_projection_changes_nothing_and_names_the_constraint(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    new_counter(&runtime, "taken").await;
    let other = runtime.entity::<Counter>(new_counter(&runtime, "free").await.id);
    let (memory, database) = memory_and_database(&runtime, &other).await;

    let result = other
        .send_action(
            &ctx(),
            Rename {
                name: "taken".into(),
            },
        )
        .await;
    let Err(Error::Constraint {
        entity_type,
        id,
        constraint,
        ..
    }) = result
    else {
        panic!("expected a constraint violation, got {result:?}");
    };
    let expected = match backend {
        Backend::Postgres => "counters_name_key",
        Backend::Sqlite => "counters.name",
    };
    assert_eq!(
        (entity_type, id, constraint.as_str()),
        ("counter", other.id(), expected)
    );
    assert_eq!(other.get().await.unwrap(), memory);
    assert_eq!(stored(&runtime, other.id()).await, database);
    // And the entity still takes actions.
    assert_eq!(
        other
            .send_action(&ctx(), Add { amount: 1 })
            .await
            .unwrap()
            .version,
        2
    );
    runtime.shutdown().await;
}

async fn a_panicking_handler_fails_only_its_own_call(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let victim = runtime.entity::<Counter>(new_counter(&runtime, "victim").await.id);
    let bystander = runtime.entity::<Counter>(new_counter(&runtime, "bystander").await.id);
    victim.send_action(&ctx(), Add { amount: 3 }).await.unwrap();
    let (memory, database) = memory_and_database(&runtime, &victim).await;

    let result = victim.send_action(&ctx(), Explode).await;
    let Err(Error::Panicked {
        during, message, ..
    }) = result
    else {
        panic!("expected a panic error, got {result:?}");
    };
    assert_eq!(
        (during, message.as_str()),
        ("handler", "the handler blew up")
    );
    // Answered first, reloaded after.
    metrics_until(&runtime, "the entity to reload", |m| m.loads == 1).await;
    assert_eq!(victim.get().await.unwrap(), memory);
    assert_eq!(stored(&runtime, victim.id()).await, database);
    // The entity reloaded from the database and goes on; its neighbour never noticed.
    assert_eq!(
        victim
            .send_action(&ctx(), Add { amount: 1 })
            .await
            .unwrap()
            .total,
        4
    );
    assert_eq!(
        bystander
            .send_action(&ctx(), Add { amount: 1 })
            .await
            .unwrap()
            .version,
        2
    );
    runtime.shutdown().await;
}

/// `apply` runs on a copy of the state (or the spare, which it then throws away): a panic there
/// leaves the published state as it was; the entity reloads from the database all the same,
/// since nothing in memory that user code touched mid-panic is trusted.
async fn a_panicking_apply_fails_only_its_own_call_and_the_entity_reloads(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "fragile").await.id);
    // Twice: the second action applies its events to the spare state the first left.
    for _ in 0..2 {
        counter
            .send_action(&ctx(), Add { amount: 3 })
            .await
            .unwrap();
    }
    let (memory, database) = memory_and_database(&runtime, &counter).await;
    let loads = runtime.metrics().loads;

    let result = counter
        .send_action(
            &ctx(),
            Add {
                amount: PANIC_IN_APPLY,
            },
        )
        .await;
    match result {
        Err(Error::Panicked {
            during, message, ..
        }) => {
            assert_eq!(during, "apply");
            assert!(message.contains("apply blew up"), "{message}");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    // Answered first, reloaded after.
    metrics_until(&runtime, "the entity to reload", |m| m.loads == loads + 1).await;
    assert_eq!(counter.get().await.unwrap(), memory);
    assert_eq!(stored(&runtime, counter.id()).await, database);

    let after = counter
        .send_action(&ctx(), Add { amount: 1 })
        .await
        .unwrap();
    assert_eq!(
        (after.version, after.total, after.adds.clone()),
        (4, 7, vec![3, 3, 1])
    );
    assert_eq!(*after, cold_load(&db, counter.id()).await);
    runtime.shutdown().await;
}

/// The store itself refuses the write (here a trigger on the event table: any error of the
/// statement that appends a batch, other than a deadlock). Nothing was committed, and the
/// runtime knows it: the caller gets `Error::Storage`, and the entity goes on from its state in
/// memory without reading the database again.
async fn a_database_error_in_the_append_is_a_storage_error_and_changes_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    exec(
        &runtime,
        match backend {
            Backend::Postgres => {
                "CREATE FUNCTION refuse_thirteen() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.payload->>'amount' = '13' THEN RAISE EXCEPTION 'the store refuses 13'; \
                 END IF; RETURN NEW; END $$; \
                 CREATE TRIGGER refuse_thirteen BEFORE INSERT ON entities.entity_events \
                 FOR EACH ROW EXECUTE FUNCTION refuse_thirteen()"
            }
            Backend::Sqlite => {
                "CREATE TRIGGER refuse_thirteen BEFORE INSERT ON entity_events \
                 WHEN json_extract(NEW.payload, '$.amount') = 13 \
                 BEGIN SELECT RAISE(ABORT, 'the store refuses 13'); END"
            }
        },
    )
    .await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "unlucky").await.id);
    let (memory, database) = memory_and_database(&runtime, &counter).await;
    let before = runtime.metrics();

    let result = counter.send_action(&ctx(), Add { amount: 13 }).await;
    match &result {
        Err(Error::Storage(error)) => {
            assert!(error.to_string().contains("refuses 13"), "{error}")
        }
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert_eq!(counter.get().await.unwrap(), memory);
    assert_eq!(stored(&runtime, counter.id()).await, database);

    let after = counter
        .send_action(&ctx(), Add { amount: 1 })
        .await
        .unwrap();
    assert_eq!((after.version, after.total), (2, 1));
    let metrics = runtime.metrics();
    assert_eq!(
        (metrics.conflicts, metrics.catch_ups, metrics.commits_failed),
        (before.conflicts, before.catch_ups, before.commits_failed),
        "neither a conflict to retry nor a commit of unknown outcome"
    );
    assert_eq!(*after, cold_load(&db, counter.id()).await);
    runtime.shutdown().await;
}

async fn a_panicking_projection_rolls_back_its_writes(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "fragile").await.id);
    let (memory, database) = memory_and_database(&runtime, &counter).await;

    let result = counter
        .send_action(
            &ctx(),
            Rename {
                name: PANIC_IN_PROJECTION.into(),
            },
        )
        .await;
    assert!(
        matches!(
            result,
            Err(Error::Panicked {
                during: "projection",
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(counter.get().await.unwrap(), memory);
    assert_eq!(
        stored(&runtime, counter.id()).await,
        database,
        "the projection's own write rolled back too"
    );
    assert_eq!(
        counter
            .send_action(
                &ctx(),
                Rename {
                    name: "sturdy".into()
                }
            )
            .await
            .unwrap()
            .name,
        "sturdy"
    );
    runtime.shutdown().await;
}

async fn an_unknown_id_is_not_found(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let missing = runtime.entity::<Counter>(4242);
    assert!(matches!(
        missing.get().await,
        Err(Error::NotFound {
            entity_type: "counter",
            id: 4242
        })
    ));
    let result = missing.send_action(&ctx(), Add { amount: 1 }).await;
    assert!(
        matches!(result, Err(Error::NotFound { id: 4242, .. })),
        "{result:?}"
    );
    assert_eq!(
        scalar(&runtime, "SELECT count(*) FROM {entities}entities").await,
        Some(0)
    );
    // Not found is not remembered: once it exists, it is found.
    let created = new_counter(&runtime, "late").await;
    assert_eq!(
        runtime
            .entity::<Counter>(created.id)
            .get()
            .await
            .unwrap()
            .name,
        "late"
    );
    runtime.shutdown().await;
}

async fn a_rejected_create_leaves_no_entity(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let result = runtime.create::<Counter>(&ctx(), "  ".into()).await;
    assert!(
        matches!(result, Err(Error::Rejected(CounterError::BlankName))),
        "{result:?}"
    );
    assert_eq!(
        scalar(&runtime, "SELECT count(*) FROM {entities}entities").await,
        Some(0)
    );
    assert_eq!(
        scalar(&runtime, "SELECT count(*) FROM counters").await,
        Some(0)
    );
    runtime.shutdown().await;
}

async fn an_action_deciding_no_events_stores_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "calm").await.id);
    let database = stored(&runtime, counter.id()).await;
    assert_eq!(
        counter.send_action(&ctx(), Nothing).await.unwrap().version,
        1
    );
    assert_eq!(stored(&runtime, counter.id()).await, database);
    runtime.shutdown().await;
}

async fn calls_after_shutdown_are_refused(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "closing").await.id);
    runtime.shutdown().await;
    assert_eq!(runtime.live_entities(), 0);
    let result = counter.send_action(&ctx(), Add { amount: 1 }).await;
    assert!(matches!(result, Err(Error::ShuttingDown)), "{result:?}");
    assert!(matches!(
        runtime.create::<Counter>(&ctx(), "new".into()).await,
        Err(Error::ShuttingDown)
    ));
}

/// Postgres text and `jsonb` cannot hold a NUL character: written, it would fail the whole
/// transaction, neighbours in its batch included. It is refused up front instead, on both
/// backends alike, and nothing is written.
async fn a_nul_character_is_refused_before_anything_is_written(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "clean").await.id);
    let neighbour = runtime.entity::<Counter>(new_counter(&runtime, "neighbour").await.id);
    let (memory, database) = memory_and_database(&runtime, &counter).await;
    let nul_name = Rename {
        name: "nul\0name".into(),
    };
    // A bad payload sent at the same moment as a good action of another entity.
    let context = ctx();
    let (bad, good) = tokio::join!(
        counter.send_action(&context, nul_name),
        neighbour.send_action(&context, Add { amount: 1 })
    );
    match bad {
        Err(Error::Payload {
            type_tag, message, ..
        }) => {
            assert_eq!(type_tag, "Rename");
            assert!(message.contains("NUL"), "{message}");
        }
        other => panic!("expected a payload error, got {other:?}"),
    }
    assert_eq!(good.unwrap().version, 2, "the neighbour committed");

    let nul_contexts = [
        ("user id", Context::new("one\0two")),
        ("request id", ctx().with_request_id("one\0two")),
        ("correlation id", ctx().with_correlation_id("one\0two")),
    ];
    for (field, context) in &nul_contexts {
        match counter.send_action(context, Add { amount: 1 }).await {
            Err(Error::Payload { message, .. }) => {
                assert!(message.contains(field), "{field}: {message}")
            }
            other => panic!("expected a payload error for a NUL in the {field}, got {other:?}"),
        }
    }
    assert_eq!(counter.get().await.unwrap(), memory);
    assert_eq!(stored(&runtime, counter.id()).await, database);

    let created = runtime.create::<Counter>(&ctx(), "nul\0".into()).await;
    assert!(matches!(created, Err(Error::Payload { .. })), "{created:?}");
    for (field, context) in &nul_contexts {
        let created = runtime.create::<Counter>(context, "fine".into()).await;
        assert!(
            matches!(&created, Err(Error::Payload { message, .. }) if message.contains(field)),
            "create with a NUL in the {field}: {created:?}"
        );
    }
    assert_eq!(
        scalar(&runtime, "SELECT count(*) FROM {entities}entities").await,
        Some(2),
        "no entity row for the refused creates"
    );
    // Text that merely looks like the escape is stored as it is.
    let literal = counter
        .send_action(
            &ctx(),
            Rename {
                name: "back\\u0000slash".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(literal.name, "back\\u0000slash");
    assert_eq!(cold_load(&db, counter.id()).await.name, "back\\u0000slash");
    runtime.shutdown().await;
}

/// On Postgres a failed statement aborts the transaction, and `COMMIT` then rolls back without
/// an error. A projection that ignores the failure must not get its action reported committed
/// while nothing was stored: the runtime refuses it. SQLite leaves the transaction usable after
/// a failed statement, so there the action commits.
async fn a_projection_going_on_after_a_failed_statement_is_not_reported_committed(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "careless").await.id);
    let (memory, database) = memory_and_database(&runtime, &counter).await;
    let result = counter
        .send_action(
            &ctx(),
            Rename {
                name: SWALLOWED_FAILURE.into(),
            },
        )
        .await;
    match backend {
        Backend::Postgres => {
            match &result {
                Err(error @ Error::Projection { event, .. }) => {
                    assert_eq!(*event, "Renamed");
                    assert!(error.to_string().contains("went on after"), "{error}")
                }
                other => panic!("expected a projection error, got {other:?}"),
            }
            assert_eq!(counter.get().await.unwrap(), memory);
            assert_eq!(stored(&runtime, counter.id()).await, database);
        }
        Backend::Sqlite => {
            let renamed = result.expect("SQLite's transaction survives a failed statement");
            assert_eq!(renamed.version, 2);
            assert_eq!(
                stored(&runtime, counter.id()).await.read_model,
                Some((SWALLOWED_FAILURE.into(), 0, 2))
            );
        }
    }
    // The entity goes on as before.
    let added = counter
        .send_action(&ctx(), Add { amount: 3 })
        .await
        .unwrap();
    assert_eq!(added.total, 3);
    assert_eq!(*added, cold_load(&db, counter.id()).await);
    runtime.shutdown().await;
}
