//! Two runtimes on one database: every write checks the version, a conflict catches up and
//! retries, and nothing is lost.

mod support;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Error, RuntimeBuilder};
use support::*;

on_both_backends!(
    two_runtimes_writing_the_same_entities_lose_no_update,
    a_conflict_catches_up_with_the_other_writer,
    conflicts_past_the_retry_bound_are_an_error_and_write_nothing,
);

/// The writers of two runtimes race on the same entities. Each runtime holds every entity at
/// version 1 before they start, so each entity's first write from the runtime that is second
/// to it conflicts: at least one conflict per entity, counted.
///
/// The retry bound is the most conflicts an action can meet here: each conflict is a commit of
/// the other runtime to that entity, holding at least one of its 45 actions there. (Sustained
/// contention from two nodes on one entity starves the one that must catch up: up to 17
/// conflicts in a row were seen, so the default of 5 is too few for this test.)
async fn two_runtimes_writing_the_same_entities_lose_no_update(backend: Backend) {
    const ACTIONS_OF_THE_OTHER_RUNTIME_PER_ENTITY: u32 = 3 * 15;
    let db = TestDatabase::new(backend).await;
    let bound = |b: RuntimeBuilder| b.max_attempts(ACTIONS_OF_THE_OTHER_RUNTIME_PER_ENTITY + 1);
    // Neither follows the other's writes: the conflicts are what this stages.
    let first = runtime_with(&db, |b| bound(b).follow_other_writers(false)).await;
    let second = runtime_with(&db, |b| bound(b).migrate(false).follow_other_writers(false)).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let id = new_counter(&first, &format!("shared {n}")).await.id;
        assert_eq!(second.entity::<Counter>(id).get().await.unwrap().version, 1);
        ids.push(id);
    }
    let mut writers = Vec::new();
    for (r, runtime) in [first.clone(), second.clone()].into_iter().enumerate() {
        for &id in &ids {
            for w in 0..3 {
                let entity = runtime.entity::<Counter>(id);
                writers.push(tokio::spawn(async move {
                    for n in 0..15 {
                        let amount = 1 + (r * 1000 + w * 100 + n) as i64;
                        entity
                            .send_action(&ctx(), Add { amount })
                            .await
                            .expect("retried until it commits");
                    }
                }));
            }
        }
    }
    for writer in writers {
        writer.await.expect("writer finished");
    }
    let conflicts = first.metrics().conflicts + second.metrics().conflicts;
    let catch_ups = first.metrics().catch_ups + second.metrics().catch_ups;
    assert!(
        conflicts >= 4,
        "a conflict on each entity at least: {conflicts}"
    );
    assert!(catch_ups >= 4, "each conflict caught up: {catch_ups}");
    for &id in &ids {
        let stored = stored(&first, id).await;
        // 1 create + 2 runtimes x 3 writers x 15 actions
        assert_eq!(stored.version, Some(91));
        assert_eq!(stored.event_versions, (1..=91).collect::<Vec<_>>());
        let expected: i64 = (0..2)
            .flat_map(|r| {
                (0..3).flat_map(move |w| (0..15).map(move |n| 1 + (r * 1000 + w * 100 + n) as i64))
            })
            .sum();
        assert_eq!(stored.read_model.map(|row| row.1), Some(expected));
        let cold = cold_load(&db, id).await;
        assert_eq!((cold.version, cold.total), (91, expected));
    }
    first.shutdown().await;
    second.shutdown().await;
}

async fn a_conflict_catches_up_with_the_other_writer(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let first = runtime_with(&db, |b| b.follow_other_writers(false)).await;
    let second = runtime_with(&db, |b| b.migrate(false).follow_other_writers(false)).await;
    let id = new_counter(&first, "stale").await.id;
    assert_eq!(first.entity::<Counter>(id).get().await.unwrap().version, 1);

    second
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount: 5 })
        .await
        .unwrap();
    // `first` still holds version 1: its write conflicts, catches up, and is decided again.
    let before = first.metrics();
    let after = first
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount: 7 })
        .await
        .unwrap();
    let metrics = first.metrics();
    assert_eq!(
        (
            metrics.conflicts - before.conflicts,
            metrics.catch_ups - before.catch_ups,
            metrics.transactions - before.transactions,
            metrics.actions_committed - before.actions_committed,
        ),
        (1, 1, 1, 1),
        "one conflict, one catch-up, and one transaction that committed something"
    );
    assert_eq!(
        (after.version, after.total, after.adds.clone()),
        (3, 12, vec![5, 7])
    );
    assert_eq!(stored(&first, id).await.event_versions, vec![1, 2, 3]);
    first.shutdown().await;
    second.shutdown().await;
}

async fn conflicts_past_the_retry_bound_are_an_error_and_write_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let first = runtime_with(&db, |b| b.max_attempts(1).follow_other_writers(false)).await;
    let second = runtime_with(&db, |b| b.migrate(false).follow_other_writers(false)).await;
    let id = new_counter(&first, "contested").await.id;
    second
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount: 5 })
        .await
        .unwrap();
    let before = stored(&first, id).await;

    // An action of two events: on Postgres a lone action of several events has an append
    // statement of its own, whose version check this conflict proves (that of a lone action of
    // one event: `a_conflict_catches_up_with_the_other_writer`).
    let result = first
        .entity::<Counter>(id)
        .send_action(&ctx(), AddTwice { amount: 7 })
        .await;
    assert!(
        matches!(result, Err(Error::Conflict { entity_type: "counter", id: got, attempts: 1 }) if got == id),
        "{result:?}"
    );
    assert_eq!(
        stored(&first, id).await,
        before,
        "the conflicting write left nothing behind"
    );
    // The failed attempt caught up: the next call decides on fresh state and commits.
    let after = first
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount: 7 })
        .await
        .unwrap();
    assert_eq!((after.version, after.total), (3, 12));
    first.shutdown().await;
    second.shutdown().await;
}

/// Two transactions that lock the same entities in opposite orders deadlock; Postgres breaks
/// the deadlock by failing one. When that one is a batch of the runtime, its chains are
/// conflicts like any other: caught up, decided again, committed. (SQLite cannot deadlock: a
/// writer takes the database's one write lock up front.)
///
/// Staged with another connection: it locks entity `b`; a batch of two chains, for `a` and `b`,
/// locks `a` (its append locks rows in id order) and waits for `b`; the other connection then
/// asks for `a`. The batch waited first, so its deadlock check fires first, and it is the
/// transaction that Postgres fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_failed_by_a_deadlock_is_a_conflict_and_commits_when_retried() {
    use entities_runtime::sqlx::{self, Connection};

    let db = TestDatabase::postgres().await;
    let runtime = runtime_with(&db, |b| b.committers(1)).await;
    let a = runtime.entity::<Counter>(new_counter(&runtime, "a").await.id);
    let b = runtime.entity::<Counter>(new_counter(&runtime, "b").await.id);
    assert!(a.id() < b.id());
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let lock = |id: i64| format!("SELECT 1 FROM entities.entities WHERE id = {id} FOR UPDATE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("BEGIN; {}", lock(b.id()))))
        .execute(&mut other)
        .await
        .unwrap();

    let gate = Gate::new();
    let blocker = hold_the_committer(&runtime, &gate).await;
    let ctx = ctx();
    let mut adds = std::pin::pin!(futures::future::join(
        a.send_action(&ctx, Add { amount: 1 }),
        b.send_action(&ctx, Add { amount: 2 }),
    ));
    assert!(futures::poll!(adds.as_mut()).is_pending());
    metrics_until(&runtime, "both chains to wait for the committer", |m| {
        m.chains_waiting == 2
    })
    .await;
    gate.open();
    blocker.await.unwrap();
    // The batch holds `a` and waits for `b`.
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock' AND query LIKE '%bumped AS%'";
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while scalar(&runtime, waiting).await != Some(1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batch never waited for `b`"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(lock(a.id())))
        .execute(&mut other)
        .await
        .expect("the other transaction survives the deadlock");
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();

    let (added_a, added_b) = adds.await;
    assert_eq!(added_a.expect("retried").total, 1);
    assert_eq!(added_b.expect("retried").total, 2);
    let metrics = runtime.metrics();
    assert_eq!(metrics.deadlocks, 1, "{metrics:?}");
    assert!(
        metrics.conflicts >= 2,
        "both chains were conflicts: {metrics:?}"
    );
    for (id, total) in [(a.id(), 1), (b.id(), 2)] {
        let stored = stored(&runtime, id).await;
        assert_eq!(stored.event_versions, vec![1, 2]);
        assert_eq!(stored.read_model.map(|row| row.1), Some(total));
    }
    runtime.shutdown().await;
}
