//! Creates go through the entity's worker and the committers like every other action: batched
//! with their neighbours, taken back alone when their projection fails, and given ids that no
//! other create (of this runtime or another) is given.

mod support;

use std::collections::HashSet;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Error, Runtime};
use support::*;

on_both_backends!(
    creates_wait_for_the_committer_and_commit_in_one_transaction,
    a_create_refused_in_its_batch_leaves_no_entity_and_its_neighbours_commit,
    a_create_that_records_no_events_stores_the_entity_at_version_zero,
    runtimes_sharing_a_database_never_give_out_the_same_id,
    a_create_whose_id_is_taken_is_a_conflict_at_once,
    a_create_refused_by_create_itself_stores_nothing,
);

/// Spawns a create of a counter named `name` on `runtime`.
fn spawn_create(
    runtime: &Runtime,
    name: &str,
) -> tokio::task::JoinHandle<Result<std::sync::Arc<Counter>, Error<CounterError>>> {
    let (runtime, name) = (runtime.clone(), name.to_owned());
    tokio::spawn(async move { runtime.create::<Counter>(&ctx(), name).await })
}

/// Holds the only committer, starts `names.len()` creates, and opens once every one of them
/// waits for it; returns their results and the metrics of that moment.
async fn creates_batched(
    runtime: &Runtime,
    names: &[&str],
) -> (
    Vec<Result<std::sync::Arc<Counter>, Error<CounterError>>>,
    entities_runtime::Metrics,
) {
    let gate = Gate::new();
    let blocker = hold_the_committer(runtime, &gate).await;
    let creates: Vec<_> = names
        .iter()
        .map(|name| spawn_create(runtime, name))
        .collect();
    let waiting = names.len() as u64;
    let before = metrics_until(runtime, "every create to wait for the committer", |m| {
        m.chains_waiting == waiting
    })
    .await;
    gate.open();
    blocker.await.unwrap();
    let mut results = Vec::new();
    for create in creates {
        results.push(create.await.unwrap());
    }
    (results, before)
}

async fn creates_wait_for_the_committer_and_commit_in_one_transaction(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    let names = ["a", "b", "c", "d", "e"];
    let (results, before) = creates_batched(&runtime, &names).await;
    let created: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    let after = runtime.metrics();
    // The held rename's transaction, then one for the five creates.
    assert_eq!(after.transactions - before.transactions, 2);
    assert_eq!(after.actions_committed - before.actions_committed, 6);
    let ids: HashSet<_> = created.iter().map(|counter| counter.id).collect();
    assert_eq!(ids.len(), names.len(), "each create has an id of its own");
    for (counter, name) in created.iter().zip(names) {
        assert_eq!((counter.name.as_str(), counter.version), (name, 1));
        assert_eq!(
            stored(&runtime, counter.id).await.read_model,
            Some((name.to_owned(), 0, 1))
        );
        // Live from its create: read from memory, not loaded.
        assert_eq!(
            runtime.entity::<Counter>(counter.id).get().await.unwrap(),
            *counter
        );
    }
    assert_eq!(runtime.metrics().loads, after.loads);
    runtime.shutdown().await;
}

/// Two creates of one name in one batch: the read model's unique name refuses the second's
/// projection, which is redone alone and taken back — its entity's row with it — while the
/// first and a neighbour commit in the same transaction.
async fn a_create_refused_in_its_batch_leaves_no_entity_and_its_neighbours_commit(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    let (results, before) = creates_batched(&runtime, &["twin", "twin", "other"]).await;
    let refused_id = results
        .iter()
        .find_map(|result| match result {
            Err(Error::Constraint { id, .. }) => Some(*id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("one twin is refused: {results:?}"));
    let committed: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(committed.len(), 2, "{results:?}");
    let after = runtime.metrics();
    assert_eq!(after.projection_redos - before.projection_redos, 1);
    assert_eq!(after.transactions - before.transactions, 2);
    for table in [
        "{entities}entities WHERE id",
        "{entities}entity_actions WHERE entity_id",
    ] {
        assert_eq!(
            scalar(
                &runtime,
                &format!("SELECT count(*) FROM {table} = {refused_id}")
            )
            .await,
            Some(0),
            "nothing of the refused create stays in {table}"
        );
    }
    assert!(stored(&runtime, refused_id).await.event_versions.is_empty());
    let missing = runtime.entity::<Counter>(refused_id).get().await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    for counter in committed {
        assert_eq!(
            stored(&runtime, counter.id).await.read_model,
            Some((counter.name.clone(), 0, 1))
        );
    }
    runtime.shutdown().await;
}

async fn a_create_that_records_no_events_stores_the_entity_at_version_zero(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let before = runtime.metrics();
    let created = runtime
        .create::<Counter>(&ctx(), CREATE_NOTHING.into())
        .await
        .unwrap();
    assert_eq!((created.version, created.name.as_str()), (0, ""));
    assert_eq!(runtime.metrics().transactions, before.transactions + 1);
    assert_eq!(
        scalar(
            &runtime,
            &format!(
                "SELECT version FROM {{entities}}entities WHERE id = {}",
                created.id
            )
        )
        .await,
        Some(0)
    );
    assert_eq!(stored(&runtime, created.id).await.actions, Some(0));
    let counter = runtime.entity::<Counter>(created.id);
    let added = counter
        .send_action(&ctx(), Add { amount: 2 })
        .await
        .unwrap();
    assert_eq!((added.version, added.total), (1, 2));
    runtime.shutdown().await;
    assert_eq!(*added, cold_load(&db, created.id).await);
}

/// Two runtimes create on one database, in turns and then all at once, each more than two
/// SQLite reservations' worth, and a third starts after the first stops: every id is given
/// out once, and each runtime's ids grow.
async fn runtimes_sharing_a_database_never_give_out_the_same_id(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let first = runtime(&db).await;
    let second = runtime_with(&db, |b| b.migrate(false)).await;
    let mut ids = HashSet::new();
    let mut last = [0, 0];
    for n in 0..40 {
        let (runtime, last) = if n % 2 == 0 {
            (&first, &mut last[0])
        } else {
            (&second, &mut last[1])
        };
        let id = new_counter(runtime, &format!("counter {n}")).await.id;
        assert!(id > *last, "ids of one runtime grow: {id} after {last}");
        *last = id;
        assert!(ids.insert(id), "id {id} given out twice");
    }
    // 50 at once from each: they wait for one another's reservations, and refill the blocks.
    let concurrent = (0..100).map(|n| {
        let runtime = if n % 2 == 0 { &first } else { &second };
        spawn_create(runtime, &format!("at once {n}"))
    });
    for create in futures::future::join_all(concurrent.collect::<Vec<_>>()).await {
        let id = create.unwrap().expect("created").id;
        assert!(ids.insert(id), "id {id} given out twice");
    }
    first.shutdown().await;
    let third = runtime_with(&db, |b| b.migrate(false)).await;
    for n in 0..3 {
        let id = new_counter(&third, &format!("late {n}")).await.id;
        assert!(ids.insert(id), "id {id} given out twice");
    }
    // Refused creates leave their ids unused; the counters stay consistent.
    let refused = third.create::<Counter>(&ctx(), " ".into()).await;
    assert!(matches!(refused, Err(Error::Rejected(_))), "{refused:?}");
    assert_eq!(
        scalar(&third, "SELECT count(*) FROM {entities}entities").await,
        Some(143)
    );
    second.shutdown().await;
    third.shutdown().await;
}

/// Reserved ids are taken only by rows written by hand; should one be, its create fails at
/// once as a conflict, writing nothing, instead of trying the same id again.
async fn a_create_whose_id_is_taken_is_a_conflict_at_once(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let first = runtime(&db).await;
    let taken = new_counter(&first, "first").await.id;
    first.shutdown().await;
    let raw = runtime_with(&db, |b| b.migrate(false)).await;
    // The id counter set back: the next reservation gives out `taken` again.
    exec(
        &raw,
        match backend {
            Backend::Postgres => {
                "SELECT setval(pg_get_serial_sequence('entities.entities', 'id'), 1, false)"
            }
            Backend::Sqlite => "UPDATE sqlite_sequence SET seq = 0 WHERE name = 'entities'",
        },
    )
    .await;
    let before = raw.metrics();
    let result = raw.create::<Counter>(&ctx(), "second".into()).await;
    assert!(
        matches!(result, Err(Error::Conflict { id, attempts: 1, .. }) if id == taken),
        "{result:?}"
    );
    assert_eq!(raw.metrics().conflicts, before.conflicts + 1);
    // Nothing of the refused create stays in memory: the id's entity is the stored one.
    let holder = raw.entity::<Counter>(taken).get().await.unwrap();
    assert_eq!((holder.name.as_str(), holder.version), ("first", 1));
    assert_eq!(
        stored(&raw, taken).await.read_model,
        Some(("first".to_owned(), 0, 1)),
        "the entity holding the id is untouched"
    );
    assert_eq!(
        scalar(&raw, "SELECT count(*) FROM {entities}entities").await,
        Some(1)
    );
    raw.shutdown().await;
}

/// SQLite keeps the greatest id given out in `sqlite_sequence`; should its row be gone (a
/// restore, a hand-made copy), a reservation starts after the greatest id there is rather than
/// from 1, where ids are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_id_counter_that_is_gone_restarts_after_the_greatest_id() {
    let db = TestDatabase::sqlite();
    let first = runtime(&db).await;
    for n in 0..3 {
        new_counter(&first, &format!("before {n}")).await;
    }
    first.shutdown().await;
    let second = runtime_with(&db, |b| b.migrate(false)).await;
    exec(
        &second,
        "DELETE FROM sqlite_sequence WHERE name = 'entities'",
    )
    .await;
    let created = second
        .create::<Counter>(&ctx(), "after".into())
        .await
        .expect("a fresh id");
    assert_eq!(created.id, 4);
    second.shutdown().await;
}

/// `Create::create` refusing runs no worker and writes nothing: the caller gets the refusal.
async fn a_create_refused_by_create_itself_stores_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let before = runtime.metrics();
    let result = runtime
        .create::<Counter>(&ctx(), REFUSED_BY_CREATE.into())
        .await;
    assert!(
        matches!(&result, Err(Error::Rejected(CounterError::SameName(name))) if name == REFUSED_BY_CREATE),
        "{result:?}"
    );
    assert_eq!(runtime.metrics().transactions, before.transactions);
    assert_eq!(runtime.live_entities(), 0);
    assert_eq!(
        scalar(&runtime, "SELECT count(*) FROM {entities}entities").await,
        Some(0)
    );
    runtime.shutdown().await;
}
