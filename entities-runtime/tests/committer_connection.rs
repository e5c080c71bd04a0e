//! The pooled connection a committer keeps from one batch to the next (saving sqlx's checks of
//! a connection as the pool hands it out and takes it back): given back when no batch comes,
//! never kept while another caller would wait for it, and replaced when the server closed it.
//! On Postgres it waits inside the next transaction, begun with the last one's `COMMIT`.

mod support;

use std::time::Duration;

use entities_runtime::testing::{CommitCutter, Cut, TestDatabase};
use entities_runtime::{Backend, Error, LogPosition, LoggedEvent, Runtime};
use sqlx::Connection;
use support::*;

on_both_backends!(
    a_committer_gives_its_connection_back_when_no_batch_comes,
    a_committer_keeps_no_connection_another_caller_would_wait_for,
);

/// Connections of the runtime's pool taken out of it now.
fn in_use(runtime: &Runtime) -> u32 {
    runtime.database().connections().in_use()
}

/// As [`until_async`], for a condition read without waiting.
async fn until(holds: impl Fn() -> bool, what: &str) {
    until_async(async || holds(), what).await;
}

/// Waits (up to 10 s) until `holds`, a condition that may query.
async fn until_async(holds: impl AsyncFn() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !holds().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn add(runtime: &Runtime, id: i64, amount: i64) -> i64 {
    runtime
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount })
        .await
        .expect("the action commits")
        .total
}

/// Postgres: the server ends the connection a committer kept (as a restart or an idle timeout
/// would). The next batch finds it closed at its first statement (the append, in the
/// transaction begun ahead; its `BEGIN` when not beginning ahead), takes another from the pool
/// and commits; no call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_the_server_closed_is_replaced_and_the_batch_commits() {
    for begin_ahead in [true, false] {
        let db = TestDatabase::new(Backend::Postgres).await;
        let runtime = runtime_with(&db, |builder| {
            builder
                .committers(1)
                .commit_linger(Duration::from_secs(60))
                .begin_ahead(begin_ahead)
        })
        .await;
        let id = new_counter(&runtime, "kept").await.id;
        assert_eq!(add(&runtime, id, 2).await, 2);
        // Others (a load's, given back with a check of its own) settle; the committer's stays.
        until(
            || in_use(&runtime) == 1,
            "the committer keeps its connection alone",
        )
        .await;

        let closed = scalar(
            &runtime,
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND application_name <> 'entities listener'",
        )
        .await;
        assert!(
            closed >= Some(1),
            "the kept connection was closed: {closed:?}"
        );

        assert_eq!(add(&runtime, id, 3).await, 5, "begin_ahead {begin_ahead}");
        assert_eq!(runtime.metrics().commits_failed, 0);
        let stored = stored(&runtime, id).await;
        assert_eq!(
            (stored.version, stored.event_versions),
            (Some(3), vec![1, 2, 3]),
            "both actions stored"
        );
        runtime.shutdown().await;
    }
}

/// A committer with nothing to write gives its connection back after its linger: with one
/// committer, and with two (as by default) after a single batch, where the one that wrote waits
/// for its turn at the queue behind the other, which holds no connection and waits there for a
/// batch that does not come.
async fn a_committer_gives_its_connection_back_when_no_batch_comes(backend: Backend) {
    for committers in [1, 2] {
        let db = TestDatabase::new(backend).await;
        let runtime = runtime_with(&db, |builder| {
            builder
                .committers(committers)
                .commit_linger(Duration::from_millis(20))
        })
        .await;
        new_counter(&runtime, "lingering").await;
        until(
            || in_use(&runtime) == 0,
            &format!("the connection is given back ({committers} committers)"),
        )
        .await;
        runtime.shutdown().await;
    }
}

/// Postgres: a batch that does not commit (its one action refused by its projection) leaves its
/// connection owing the server a `ROLLBACK`, which sqlx sends with the connection's next
/// statement. So it is given back, not kept: kept, it would sit in the aborted transaction and
/// hold its locks for as long as the committer lingers (here a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_not_kept_inside_a_transaction_that_did_not_commit() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let runtime = runtime_with(&db, |builder| {
        builder.committers(1).commit_linger(Duration::from_secs(60))
    })
    .await;
    new_counter(&runtime, "taken").await;
    let id = new_counter(&runtime, "renamed").await.id;
    let refused = runtime
        .entity::<Counter>(id)
        .send_action(
            &ctx(),
            Rename {
                name: "taken".into(),
            },
        )
        .await;
    assert!(
        matches!(refused, Err(Error::Constraint { .. })),
        "{refused:?}"
    );

    let in_transaction = async || {
        scalar(
            &runtime,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND state LIKE 'idle in transaction%'",
        )
        .await
    };
    until_async(
        async || in_transaction().await == Some(0),
        "a connection sits in the refused batch's transaction",
    )
    .await;
    runtime.shutdown().await;
}

/// A pool of one connection: a committer that kept it would leave every other caller waiting
/// for as long as it lingers (here a minute). It gives it back after each batch instead.
async fn a_committer_keeps_no_connection_another_caller_would_wait_for(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |builder| {
        builder
            .max_connections(1)
            .committers(1)
            .commit_linger(Duration::from_secs(60))
    })
    .await;
    let id = new_counter(&runtime, "shared pool").await.id;
    add(&runtime, id, 1).await;
    let acquired = tokio::time::timeout(Duration::from_secs(2), runtime.database().acquire()).await;
    assert!(
        matches!(acquired, Ok(Ok(_))),
        "another caller gets the pool's one connection"
    );
    drop(acquired);
    runtime.shutdown().await;
}

/// The committer's session, when it waits in a transaction begun ahead that holds neither a
/// transaction id nor a snapshot (so vacuum and the log's readers need not wait for it).
const WAITING_AHEAD: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE datname = current_database() AND pid <> pg_backend_pid() \
       AND state = 'idle in transaction' AND backend_xid IS NULL AND backend_xmin IS NULL";

/// The database's clock now, in microseconds.
const CLOCK: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// Postgres: a committer that keeps its connection begins the next transaction as it commits
/// the last, so the next batch sends no `BEGIN`: its rows carry the time that transaction began
/// (`now()`), which precedes the action. The transaction waits holding no id and no snapshot,
/// and what committed before it is readable from the log meanwhile. Turned off, the committer
/// waits outside any transaction and begins one for each batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_waits_in_the_next_transaction_begun_with_the_last_commit() {
    for begin_ahead in [true, false] {
        let db = TestDatabase::new(Backend::Postgres).await;
        let runtime = runtime_with(&db, |builder| {
            builder
                .committers(1)
                .commit_linger(Duration::from_secs(60))
                .begin_ahead(begin_ahead)
        })
        .await;
        let id = new_counter(&runtime, "ahead").await.id;
        until(
            || in_use(&runtime) == 1,
            "the committer keeps its connection",
        )
        .await;
        let waiting = scalar(&runtime, WAITING_AHEAD).await;
        assert_eq!(
            waiting,
            Some(i64::from(begin_ahead)),
            "begin_ahead {begin_ahead}"
        );

        let before_the_action = scalar(&runtime, CLOCK).await.expect("a clock");
        assert_eq!(add(&runtime, id, 2).await, 2);
        let stamped_before_it = scalar(
            &runtime,
            &format!(
                "SELECT count(*) FROM entities.entity_events WHERE entity_id = {id} \
                   AND entity_version = 2 \
                   AND (extract(epoch FROM inserted_at) * 1000000)::bigint < {before_the_action}"
            ),
        )
        .await;
        assert_eq!(
            stamped_before_it,
            Some(i64::from(begin_ahead)),
            "the second action's event is stamped with its transaction's start \
             (begin_ahead {begin_ahead})"
        );
        // A reader waits for every transaction in flight with an id, on the whole server
        // (other tests' among them): one begun ahead would hold it back for good.
        let readable = async || {
            runtime
                .read_log::<LoggedEvent>(LogPosition::START, 10)
                .await
                .expect("the log reads")
                .len()
        };
        until_async(async || readable().await == 2, "both events are readable").await;
        assert_eq!(
            scalar(&runtime, WAITING_AHEAD).await,
            Some(i64::from(begin_ahead))
        );
        runtime.shutdown().await;
    }
}

/// Postgres: a server whose `idle_in_transaction_session_timeout` is shorter than the linger ends
/// the session waiting in a transaction begun ahead. The next batch finds it ended at its first
/// statement, takes another connection and commits; no call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_begun_ahead_that_the_server_timed_out_is_replaced() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let mut admin = sqlx::PgConnection::connect(&db.url)
        .await
        .expect("connects");
    sqlx::raw_sql(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = 1000', \
         current_database()); END $$",
    )
    .execute(&mut admin)
    .await
    .expect("the timeout is set");
    admin.close().await.expect("closes");
    let runtime = runtime_with(&db, |builder| {
        builder.committers(1).commit_linger(Duration::from_secs(60))
    })
    .await;
    let id = new_counter(&runtime, "timed out").await.id;
    // The server ends the waiting session after a second, as a FATAL error.
    scalar_eventually(
        &runtime,
        "SELECT sessions_fatal FROM pg_stat_database WHERE datname = current_database()",
        |ended| ended >= Some(1),
    )
    .await;
    assert_eq!(scalar(&runtime, WAITING_AHEAD).await, Some(0));

    assert_eq!(add(&runtime, id, 3).await, 3);
    assert_eq!(runtime.metrics().commits_failed, 0);
    let stored = stored(&runtime, id).await;
    assert_eq!(
        (stored.version, stored.event_versions),
        (Some(2), vec![1, 2]),
        "both actions stored"
    );
    runtime.shutdown().await;
}

/// Postgres: the connection is lost between the answers to `COMMIT; BEGIN`: the committer heard
/// the batch commit, not the next transaction begin. The caller hears its action committed (it
/// was, and no catch-up is needed), the committer keeps nothing, and the next batch commits on
/// another connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_after_the_commit_before_the_begin_answers_committed() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let proxy = CommitCutter::start(&db.url).await;
    let runtime = runtime_at(&proxy.url, |builder| {
        builder.committers(1).commit_linger(Duration::from_secs(60))
    })
    .await;
    let id = new_counter(&runtime, "begun ahead").await.id;
    let before = runtime.metrics();

    let name = "begin lost";
    proxy.arm_at(Cut::BeginAfterCommit, Some(name));
    let renamed = runtime
        .entity::<Counter>(id)
        .send_action(&ctx(), Rename { name: name.into() })
        .await
        .expect("the rename committed, and its caller hears so");
    assert_eq!((renamed.version, renamed.name.as_str()), (2, name));
    assert_eq!(proxy.cuts(), 1, "the answer to the BEGIN was lost");
    let after = runtime.metrics();
    assert_eq!(
        (after.commits_failed, after.catch_ups),
        (before.commits_failed, before.catch_ups),
        "no commit failed, so the entity reads nothing back"
    );

    assert_eq!(add(&runtime, id, 3).await, 3);
    let stored = stored(&runtime, id).await;
    assert_eq!(
        (stored.version, stored.event_versions, stored.read_model),
        (Some(3), vec![1, 2, 3], Some((name.to_owned(), 3, 3))),
        "both actions stored once"
    );
    runtime.shutdown().await;
}

/// The proxy itself: armed to cut after a `COMMIT; BEGIN`'s commit, it cuts nothing when that
/// `COMMIT` does not commit (here it ends an aborted transaction, which Postgres answers
/// `ROLLBACK`), and the connection's next `COMMIT; BEGIN`, which does commit, goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_does_not_commit_spends_a_cut_after_the_commit_on_nothing() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let proxy = CommitCutter::start(&db.url).await;
    let mut conn = sqlx::PgConnection::connect(&proxy.url)
        .await
        .expect("connects through the proxy");
    sqlx::raw_sql("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::raw_sql("SELECT 1 / 0")
        .execute(&mut conn)
        .await
        .expect_err("division by zero aborts the transaction");

    proxy.arm_at(Cut::BeginAfterCommit, None);
    sqlx::raw_sql("COMMIT; BEGIN")
        .execute(&mut conn)
        .await
        .expect("the aborted transaction is rolled back, the next begun");
    assert_eq!(proxy.cuts(), 0, "nothing committed, so nothing was cut");

    sqlx::raw_sql("CREATE TEMPORARY TABLE marks (n int)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql("COMMIT; BEGIN")
        .execute(&mut conn)
        .await
        .expect("a later commit on the connection is not cut");
    assert_eq!(proxy.cuts(), 0);
    let marks: i64 = sqlx::query_scalar("SELECT count(*) FROM marks")
        .fetch_one(&mut conn)
        .await
        .expect("the connection still answers");
    assert_eq!(marks, 0);
}
