//! Durable subscriptions: handlers (at least once), projectors (exactly once, rebuilt while
//! writes go on), one runtime at a time with takeover, and never an event skipped.

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{
    Backend, BoxError, EntityId, LogPosition, Logged, Projector, Runtime, StartAt, Status,
    Subscription, SubscriptionError, Tx, Version,
};
use support::*;
use tokio::sync::Notify;

on_both_backends!(
    a_handler_catches_up_then_follows_the_log_live,
    a_subscription_never_passes_an_event_still_in_flight,
    a_failing_handler_is_retried_then_stops_at_the_event_until_resumed,
    a_crash_between_handling_and_checkpoint_hands_the_event_over_again,
    a_projector_killed_mid_transaction_leaves_an_exact_read_model,
    one_runtime_runs_a_subscription_and_another_takes_over_when_it_dies,
    a_rebuild_while_writes_go_on_equals_the_incremental_read_model,
    a_subscription_started_now_skips_the_history,
    a_rebuild_that_stops_at_a_failing_event_says_so,
    an_event_that_no_longer_decodes_stops_a_typed_subscription_at_it,
);

/// What handlers saw: (entity, version), in the order they saw it.
type Seen = Arc<Mutex<Vec<(EntityId, Version)>>>;

fn recorder(
    seen: &Seen,
) -> impl FnMut(Logged<Counter>) -> std::future::Ready<Result<(), BoxError>> + Send + 'static {
    let seen = seen.clone();
    move |event: Logged<Counter>| {
        seen.lock().unwrap().push((event.entity_id, event.version));
        std::future::ready(Ok(()))
    }
}

fn seen(seen: &Seen) -> Vec<(EntityId, Version)> {
    seen.lock().unwrap().clone()
}

/// Waits until `seen` holds `count` events; panics after 10 s.
async fn seen_until(seen: &Seen, count: usize) -> Vec<(EntityId, Version)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = self::seen(seen);
        if now.len() >= count {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "saw {} of {count} events: {now:?}",
            now.len()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Every event of the counters, as the database holds them, in each entity's order.
async fn every_event(runtime: &Runtime, ids: &[EntityId]) -> Vec<(EntityId, Version)> {
    let mut all = Vec::new();
    for &id in ids {
        let state = runtime.entity::<Counter>(id).get().await.unwrap();
        all.extend((1..=state.version).map(|version| (id, version)));
    }
    all.sort();
    all
}

fn sorted(mut events: Vec<(EntityId, Version)>) -> Vec<(EntityId, Version)> {
    events.sort();
    events
}

/// Waits until the subscription's status passes `check`; panics after 10 s.
async fn status_until(
    subscription: &Subscription,
    what: &str,
    check: impl FnMut(&Status) -> bool,
) -> Status {
    tokio::time::timeout(Duration::from_secs(10), subscription.wait_for(check))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "waited 10 s for the subscription to be {what}: {:?}",
                subscription.status()
            )
        })
}

/// Waits until the subscription's checkpoint reaches the last event stored, read straight from
/// the table: the log's own head stops below any transaction still running on the server (a
/// projector's, say), so "nothing behind" can be seen while a commit is in flight.
async fn caught_up(runtime: &Runtime, subscription: &Subscription) {
    let sql = match runtime.backend() {
        Backend::Postgres => {
            "SELECT transaction_id::text, position FROM entities.entity_events \
             ORDER BY transaction_id DESC, position DESC LIMIT 1"
        }
        Backend::Sqlite => "SELECT '0', id FROM entity_events ORDER BY id DESC LIMIT 1",
    };
    let (transaction, position): (String, i64) =
        runtime.database().query(sql).fetch_one().await.unwrap();
    let head = LogPosition {
        transaction: transaction.parse().unwrap(),
        position,
    };
    tokio::time::timeout(Duration::from_secs(10), subscription.caught_up_to(head))
        .await
        .unwrap_or_else(|_| panic!("still behind {head:?}: {:?}", subscription.status()))
        .unwrap();
}

async fn a_handler_catches_up_then_follows_the_log_live(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let counter = runtime.entity::<Counter>(new_counter(&runtime, &format!("c{n}")).await.id);
        counter
            .send_action(&ctx(), AddTwice { amount: 1 })
            .await
            .unwrap();
        ids.push(counter.id());
    }
    let events = Arc::new(Mutex::new(Vec::new()));
    let subscription = runtime
        .subscription("catch-up")
        .page_size(4)
        .handle(recorder(&events));
    // The history, in log order: each counter's events in version order.
    let history = seen_until(&events, 9).await;
    assert_eq!(sorted(history.clone()), every_event(&runtime, &ids).await);
    for &id in &ids {
        let versions: Vec<Version> = history
            .iter()
            .filter(|(of, _)| *of == id)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(versions, [1, 2, 3]);
    }
    // Then live: a new write reaches it without a poll (the poll interval is a second).
    let counter = runtime.entity::<Counter>(ids[1]);
    counter
        .send_action(&ctx(), Add { amount: 5 })
        .await
        .unwrap();
    let live = seen_until(&events, 10).await;
    assert_eq!(live[9], (ids[1], 4));
    caught_up(&runtime, &subscription).await;
    let progress = subscription.progress().await.unwrap();
    assert_eq!(progress.checkpoint, progress.head);
    assert_eq!(progress.error, None);
    assert_eq!(runtime.metrics().subscription_events, 10);
    assert_eq!(seen(&events).len(), 10, "each event once");
    subscription.stop().await;
    runtime.shutdown().await;
}

/// A rename is held inside its open transaction (at a gate) while another counter's add
/// commits through the second committer (on Postgres). The subscription reads the log meanwhile
/// (its reads are counted; on Postgres the add's commit wakes it) but gets neither event; once the rename commits it gets both,
/// rename first, each once.
async fn a_subscription_never_passes_an_event_still_in_flight(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(2)).await;
    let other = runtime.entity::<Counter>(new_counter(&runtime, "other").await.id);
    let events = Arc::new(Mutex::new(Vec::new()));
    // Polled often: on SQLite the add cannot commit beside the rename (one writer), so polls
    // are what reads the log meanwhile.
    let subscription = runtime
        .subscription("gaps")
        .poll_interval(Duration::from_millis(10))
        .handle(recorder(&events));
    let gate = Gate::new();
    let blocker_id = new_counter(&runtime, "blocker").await.id;
    // Caught up first: on SQLite the rename below holds the one write lock, which moving the
    // checkpoint needs.
    seen_until(&events, 2).await;
    caught_up(&runtime, &subscription).await;
    let blocker = {
        let (blocker, name) = (
            runtime.entity::<Counter>(blocker_id),
            gate.name().to_owned(),
        );
        tokio::spawn(async move { blocker.send_action(&ctx(), Rename { name }).await.unwrap() })
    };
    gate.reached().await;
    let reads_before = runtime.metrics().subscription_reads;
    let add = {
        let other = other.clone();
        tokio::spawn(async move { other.send_action(&ctx(), Add { amount: 5 }).await })
    };
    if backend == Backend::Postgres {
        // The add commits beside the held rename, and its commit wakes the subscription.
        add.await.unwrap().unwrap();
    }
    metrics_until(&runtime, "a read after the add's commit", |m| {
        m.subscription_reads > reads_before + 1
    })
    .await;
    assert_eq!(seen(&events).len(), 2, "nothing past the rename in flight");
    gate.open();
    blocker.await.unwrap();
    let after = seen_until(&events, 4).await;
    assert_eq!(after[2..], [(blocker_id, 2), (other.id(), 2)]);
    caught_up(&runtime, &subscription).await;
    assert_eq!(seen(&events).len(), 4, "each once");
    runtime.shutdown().await;
}

async fn a_failing_handler_is_retried_then_stops_at_the_event_until_resumed(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "flaky").await.id);
    counter
        .send_action(&ctx(), Add { amount: 1 })
        .await
        .unwrap();
    counter
        .send_action(&ctx(), Add { amount: 2 })
        .await
        .unwrap();
    counter
        .send_action(&ctx(), Add { amount: 3 })
        .await
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(AtomicU32::new(0));
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // Once mended, the failing event waits here until the test lets it through.
    let mended = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = {
        let (events, attempts, broken, mended) = (
            events.clone(),
            attempts.clone(),
            broken.clone(),
            mended.clone(),
        );
        move |event: Logged<Counter>| {
            let (events, attempts, broken, mended) = (
                events.clone(),
                attempts.clone(),
                broken.clone(),
                mended.clone(),
            );
            async move {
                if event.version == 3 {
                    if broken.load(Ordering::SeqCst) {
                        attempts.fetch_add(1, Ordering::SeqCst);
                        return Err(BoxError::from("the mail server is down"));
                    }
                    mended.acquire().await.unwrap().forget();
                }
                events
                    .lock()
                    .unwrap()
                    .push((event.entity_id, event.version));
                Ok(())
            }
        }
    };
    let subscription = runtime
        .subscription("flaky")
        // One event a page: a failing page of several is first narrowed to its failing event
        // (an attempt not counted as a failure), and whether the log's first read holds all
        // three events depends on when the last commit passes the horizon. One a page makes
        // every attempt a counted one.
        .page_size(1)
        .max_failures(3)
        .retry_delays(Duration::from_millis(1), Duration::from_millis(4))
        .handle(handler);
    let stopped = status_until(&subscription, "stopped", |s| {
        matches!(s, Status::Stopped { .. })
    })
    .await;
    let Status::Stopped { at, event, error } = stopped else {
        unreachable!()
    };
    assert_eq!(attempts.load(Ordering::SeqCst), 3, "tried three times");
    assert_eq!(error, "the mail server is down");
    assert_eq!(
        seen(&events),
        [(counter.id(), 1), (counter.id(), 2)],
        "nothing past the failing event"
    );
    let log = runtime
        .read_log::<Logged<Counter>>(LogPosition::START, 10)
        .await
        .unwrap();
    assert_eq!(
        (at, event),
        (log[1].at, log[2].at),
        "stopped right before version 3"
    );
    let progress = subscription.progress().await.unwrap();
    assert_eq!(progress.checkpoint, at);
    assert_eq!(progress.behind, 2);
    assert_eq!(
        progress.error.as_deref(),
        Some("the mail server is down"),
        "recorded in its row"
    );
    assert_eq!(runtime.metrics().subscription_failures, 3);
    // A new event waits behind the failing one.
    counter
        .send_action(&ctx(), Add { amount: 4 })
        .await
        .unwrap();
    assert_eq!(
        subscription.status(),
        Status::Stopped {
            at,
            event,
            error: "the mail server is down".into()
        }
    );
    broken.store(false, Ordering::SeqCst);
    subscription.resume();
    // Resumed, it is no longer stopped, for this runtime's status and for the stored row,
    // while it retries the event.
    status_until(&subscription, "running again", |s| {
        matches!(s, Status::Running { .. })
    })
    .await;
    assert_eq!(subscription.progress().await.unwrap().error, None);
    assert_eq!(seen(&events).len(), 2, "the failing event still in hand");
    mended.add_permits(1);
    let all = seen_until(&events, 5).await;
    assert_eq!(all, (1..=5).map(|v| (counter.id(), v)).collect::<Vec<_>>());
    caught_up(&runtime, &subscription).await;
    assert_eq!(
        subscription.progress().await.unwrap().error,
        None,
        "cleared once passed"
    );
    runtime.shutdown().await;
}

/// A runtime in a tokio runtime of its own: killing it drops its every task and connection at
/// once, as a crashed process would (its sockets close; it releases nothing itself).
struct Node {
    tokio: Option<tokio::runtime::Runtime>,
}

impl Node {
    fn new() -> Self {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Self { tokio: Some(tokio) }
    }

    async fn run<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> T {
        self.tokio.as_ref().unwrap().spawn(work).await.unwrap()
    }

    fn kill(mut self) {
        self.tokio.take().unwrap().shutdown_background();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(tokio) = self.tokio.take() {
            tokio.shutdown_background();
        }
    }
}

/// SQLite's takeover waits out the dead holder's lease: short in these tests.
const LEASE: Duration = Duration::from_millis(300);

/// Handles event `stall_at` and then never returns, as if the process died before moving the
/// checkpoint; tells `stalled` it got there.
/// A handler's answer, boxed: what the stalling handler returns.
type Handled = std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

fn stalling_recorder(
    seen: &Seen,
    stall_at: (EntityId, Version),
    stalled: &Arc<Notify>,
) -> impl FnMut(Logged<Counter>) -> Handled + Send + 'static {
    let (seen, stalled) = (seen.clone(), stalled.clone());
    move |event: Logged<Counter>| {
        seen.lock().unwrap().push((event.entity_id, event.version));
        let stalled = stalled.clone();
        Box::pin(async move {
            if (event.entity_id, event.version) == stall_at {
                stalled.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }
}

async fn a_crash_between_handling_and_checkpoint_hands_the_event_over_again(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let node = Node::new();
    let url = db.url.clone();
    let seen_by_a: Seen = Arc::new(Mutex::new(Vec::new()));
    let stalled = Arc::new(Notify::new());
    let id = {
        let (seen_by_a, stalled) = (seen_by_a.clone(), stalled.clone());
        node.run(async move {
            let runtime = Runtime::builder(&url)
                .migrations(MIGRATIONS)
                .build()
                .await
                .unwrap();
            let counter = runtime.entity::<Counter>(new_counter(&runtime, "mail").await.id);
            for amount in 1..=3 {
                counter.send_action(&ctx(), Add { amount }).await.unwrap();
            }
            // The checkpoint stored after every event: exactly the stalled one comes again.
            let subscription = runtime
                .subscription("mail")
                .page_size(1)
                .checkpoint_every(Duration::ZERO)
                .lease(LEASE)
                .handle(stalling_recorder(&seen_by_a, (counter.id(), 3), &stalled));
            std::mem::forget(subscription);
            std::mem::forget(runtime);
            counter.id()
        })
        .await
    };
    tokio::time::timeout(Duration::from_secs(10), stalled.notified())
        .await
        .expect("handled version 3");
    node.kill();
    let runtime = runtime(&db).await;
    let seen_by_b: Seen = Arc::new(Mutex::new(Vec::new()));
    let subscription = runtime
        .subscription("mail")
        .takeover_interval(Duration::from_millis(20))
        .lease(LEASE)
        .handle(recorder(&seen_by_b));
    let b = seen_until(&seen_by_b, 2).await;
    assert_eq!(seen(&seen_by_a), [(id, 1), (id, 2), (id, 3)]);
    assert_eq!(
        b,
        [(id, 3), (id, 4)],
        "version 3 again: its checkpoint never moved"
    );
    caught_up(&runtime, &subscription).await;
    assert_eq!(seen(&seen_by_b).len(), 2);
    runtime.shutdown().await;
}

/// SQLite: a handler's checkpoint is written through the pool, where it waits for the file's one
/// write lock behind every writer (the runtime's busy timeout is 30 s). The handler goes on
/// meanwhile; the checkpoint lands once the lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_goes_on_while_its_checkpoint_waits_for_the_sqlite_write_lock() {
    let db = TestDatabase::sqlite();
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "busy").await.id);
    for amount in 1..=2 {
        counter.send_action(&ctx(), Add { amount }).await.unwrap();
    }
    let seen_events: Seen = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(Notify::new());
    let subscription = {
        let (seen_events, gate) = (seen_events.clone(), gate.clone());
        runtime
            .subscription("busy")
            .page_size(1)
            .checkpoint_every(Duration::from_millis(1))
            .poll_interval(Duration::from_millis(20))
            .lease(Duration::from_secs(60))
            .handle(move |event: Logged<Counter>| {
                seen_events
                    .lock()
                    .unwrap()
                    .push((event.entity_id, event.version));
                let gate = gate.clone();
                async move {
                    if event.version == 1 {
                        gate.notified().await;
                    }
                    Ok::<_, BoxError>(())
                }
            })
    };
    seen_until(&seen_events, 1).await;
    let mut writer = SnapshotBlocker::connect(&db).await;
    writer.hold().await;
    gate.notify_one();
    // Versions 2 and 3 handled while the checkpoint of version 1 waits for the lock.
    let handled = seen_until(&seen_events, 3).await;
    assert_eq!(
        handled,
        [(counter.id(), 1), (counter.id(), 2), (counter.id(), 3)]
    );
    let progress = subscription.progress().await.unwrap();
    assert_eq!(
        progress.checkpoint,
        LogPosition::START,
        "no write landed while the lock was held"
    );
    writer.release().await;
    caught_up(&runtime, &subscription).await;
    assert_eq!(subscription.progress().await.unwrap().behind, 0);
    assert_eq!(seen(&seen_events).len(), 3, "each event once");
    assert_eq!(runtime.metrics().subscription_events, 3);
    subscription.stop().await;
    runtime.shutdown().await;
}

/// Totals of the counters' adds, kept by a projector in `table`. `stall` makes it stop inside
/// its transaction, its writes made, at the page that holds that event.
struct Totals {
    table: &'static str,
    stall: Option<((EntityId, Version), Arc<Notify>)>,
}

impl Projector<Logged<Counter>> for Totals {
    async fn project(
        &mut self,
        tx: &mut Tx<'_>,
        events: &[Logged<Counter>],
    ) -> Result<(), BoxError> {
        let table = self.table;
        for event in events {
            let amount = match &event.event {
                CounterEvent::Added(Added { amount }) => *amount,
                _ => 0,
            };
            tx.query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} (id, total, events) VALUES ($1, $2, 1) \
                 ON CONFLICT (id) DO UPDATE SET total = {table}.total + excluded.total, events = {table}.events + 1"
            )))
            .bind(event.entity_id)
            .bind(amount)
            .execute()
            .await?;
        }
        if let Some((at, stalled)) = &self.stall
            && events
                .iter()
                .any(|event| (event.entity_id, event.version) == *at)
        {
            stalled.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn clear(&mut self, tx: &mut Tx<'_>) -> Result<(), BoxError> {
        tx.query(sqlx::AssertSqlSafe(format!("DELETE FROM {}", self.table)))
            .execute()
            .await?;
        Ok(())
    }
}

use entities_runtime::sqlx;

async fn totals_table(runtime: &Runtime, table: &str) {
    exec(runtime, &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, total BIGINT NOT NULL, events BIGINT NOT NULL)")).await;
}

/// The read model: (id, total, events) by id.
async fn totals(runtime: &Runtime, table: &str) -> Vec<(i64, i64, i64)> {
    runtime
        .database()
        .query(sqlx::AssertSqlSafe(format!(
            "SELECT id, total, events FROM {table} ORDER BY id"
        )))
        .fetch_all()
        .await
        .unwrap()
}

/// What the read model must hold: from the counters' states.
async fn expected_totals(runtime: &Runtime, ids: &[EntityId]) -> Vec<(i64, i64, i64)> {
    let mut expected = Vec::new();
    for &id in ids {
        let state = runtime.entity::<Counter>(id).get().await.unwrap();
        expected.push((id, state.total, state.version));
    }
    expected.sort();
    expected
}

async fn a_projector_killed_mid_transaction_leaves_an_exact_read_model(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    totals_table(&runtime, "totals").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let counter = runtime.entity::<Counter>(new_counter(&runtime, &format!("p{n}")).await.id);
        counter
            .send_action(&ctx(), AddTwice { amount: n + 1 })
            .await
            .unwrap();
        ids.push(counter.id());
    }
    let node = Node::new();
    let stalled = Arc::new(Notify::new());
    {
        let (url, stalled, at) = (db.url.clone(), stalled.clone(), (ids[1], 2));
        node.run(async move {
            let runtime = Runtime::builder(&url).build().await.unwrap();
            let subscription = runtime
                .subscription("totals")
                .page_size(2)
                .lease(LEASE)
                .project(Totals {
                    table: "totals",
                    stall: Some((at, stalled)),
                });
            std::mem::forget(subscription);
            std::mem::forget(runtime);
        })
        .await;
    }
    tokio::time::timeout(Duration::from_secs(10), stalled.notified())
        .await
        .expect("the projector reached the page");
    // Pages of two: (p0 1, 2), (p0 3, p1 1) committed; (p1 2, 3) written, in flight.
    let before_kill = totals(&runtime, "totals").await;
    assert_eq!(
        before_kill.iter().map(|row| row.2).sum::<i64>(),
        4,
        "{before_kill:?}"
    );
    node.kill();
    let subscription = runtime
        .subscription("totals")
        .takeover_interval(Duration::from_millis(20))
        .lease(LEASE)
        .project(Totals {
            table: "totals",
            stall: None,
        });
    caught_up(&runtime, &subscription).await;
    let incremental = totals(&runtime, "totals").await;
    assert_eq!(
        incremental,
        expected_totals(&runtime, &ids).await,
        "no event lost or applied twice"
    );
    subscription.rebuild().await.unwrap();
    assert_eq!(
        totals(&runtime, "totals").await,
        incremental,
        "as a full rebuild builds it"
    );
    runtime.shutdown().await;
}

async fn one_runtime_runs_a_subscription_and_another_takes_over_when_it_dies(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "shared").await.id);
    let node = Node::new();
    let seen_by_a: Seen = Arc::new(Mutex::new(Vec::new()));
    let a = {
        let (url, seen_by_a) = (db.url.clone(), seen_by_a.clone());
        node.run(async move {
            let runtime = Runtime::builder(&url).build().await.unwrap();
            let subscription = runtime
                .subscription("one at a time")
                .lease(LEASE)
                .handle(recorder(&seen_by_a));
            subscription
                .wait_for(|s| matches!(s, Status::Running { .. }))
                .await;
            std::mem::forget(runtime);
            subscription
        })
        .await
    };
    let seen_by_b: Seen = Arc::new(Mutex::new(Vec::new()));
    let b = runtime
        .subscription("one at a time")
        .takeover_interval(Duration::from_millis(20))
        .lease(LEASE)
        .handle(recorder(&seen_by_b));
    for amount in 1..=5 {
        counter.send_action(&ctx(), Add { amount }).await.unwrap();
    }
    seen_until(&seen_by_a, 6).await;
    caught_up(&runtime, &a).await;
    assert_eq!(b.status(), Status::Standby, "B stands by while A runs it");
    assert!(seen(&seen_by_b).is_empty());
    node.kill();
    status_until(&b, "running in B", |s| matches!(s, Status::Running { .. })).await;
    for amount in 6..=8 {
        counter.send_action(&ctx(), Add { amount }).await.unwrap();
    }
    let by_b = seen_until(&seen_by_b, 3).await;
    assert_eq!(
        seen(&seen_by_a),
        (1..=6).map(|v| (counter.id(), v)).collect::<Vec<_>>()
    );
    assert_eq!(
        by_b,
        (7..=9).map(|v| (counter.id(), v)).collect::<Vec<_>>(),
        "each event once, across both"
    );
    caught_up(&runtime, &b).await;
    runtime.shutdown().await;
}

async fn a_rebuild_while_writes_go_on_equals_the_incremental_read_model(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    totals_table(&runtime, "totals_rebuilt").await;
    totals_table(&runtime, "totals_incremental").await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(new_counter(&runtime, &format!("r{n}")).await.id);
    }
    let rebuilt = runtime
        .subscription("rebuilt")
        .page_size(3)
        .project(Totals {
            table: "totals_rebuilt",
            stall: None,
        });
    let incremental = runtime
        .subscription("incremental")
        .page_size(3)
        .project(Totals {
            table: "totals_incremental",
            stall: None,
        });
    let writers: Vec<_> = ids
        .iter()
        .map(|&id| {
            let counter = runtime.entity::<Counter>(id);
            tokio::spawn(async move {
                for amount in 1..=25 {
                    counter.send_action(&ctx(), Add { amount }).await.unwrap();
                }
            })
        })
        .collect();
    // Rebuilt twice while the writers write: each time from a cleared table.
    let mut rebuilds_saw_writes = 0;
    for _ in 0..2 {
        let before = runtime.metrics().actions_committed;
        rebuilt.rebuild().await.unwrap();
        if runtime.metrics().actions_committed > before {
            rebuilds_saw_writes += 1;
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(rebuilds_saw_writes > 0, "no write landed during a rebuild");
    caught_up(&runtime, &rebuilt).await;
    caught_up(&runtime, &incremental).await;
    let expected = expected_totals(&runtime, &ids).await;
    assert_eq!(expected.iter().map(|row| row.2).sum::<i64>(), 4 * 26);
    assert_eq!(totals(&runtime, "totals_incremental").await, expected);
    assert_eq!(totals(&runtime, "totals_rebuilt").await, expected);
    runtime.shutdown().await;
}

async fn a_subscription_started_now_skips_the_history(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "old").await.id);
    counter
        .send_action(&ctx(), Add { amount: 1 })
        .await
        .unwrap();
    // On Postgres the head may lag the last commit for a moment (another test's transaction).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while runtime
        .read_log::<Logged<Counter>>(LogPosition::START, 10)
        .await
        .unwrap()
        .len()
        < 2
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let events = Arc::new(Mutex::new(Vec::new()));
    let subscription = runtime
        .subscription("from now")
        .start_at(StartAt::Now)
        .handle(recorder(&events));
    status_until(&subscription, "running", |s| {
        matches!(s, Status::Running { .. })
    })
    .await;
    counter
        .send_action(&ctx(), Add { amount: 2 })
        .await
        .unwrap();
    assert_eq!(seen_until(&events, 1).await, [(counter.id(), 3)]);
    caught_up(&runtime, &subscription).await;
    assert_eq!(seen(&events).len(), 1);
    runtime.shutdown().await;
}

/// A projector that always fails at version 3 of any counter.
struct FailsAtThree;

impl Projector<Logged<Counter>> for FailsAtThree {
    async fn project(
        &mut self,
        _: &mut Tx<'_>,
        events: &[Logged<Counter>],
    ) -> Result<(), BoxError> {
        match events.iter().find(|event| event.version == 3) {
            Some(event) => Err(format!("cannot project version 3 of {}", event.entity_id).into()),
            None => Ok(()),
        }
    }

    async fn clear(&mut self, _: &mut Tx<'_>) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A rebuild replays into the event that stopped the projector: it stops there again, and the
/// rebuild says so instead of waiting for a checkpoint that will not come.
async fn a_rebuild_that_stops_at_a_failing_event_says_so(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "bad").await.id);
    counter
        .send_action(&ctx(), AddTwice { amount: 1 })
        .await
        .unwrap();
    let projector = runtime
        .subscription("fails at three")
        .max_failures(2)
        .retry_delays(Duration::from_millis(1), Duration::from_millis(2))
        .project(FailsAtThree);
    status_until(&projector, "stopped", |s| {
        matches!(s, Status::Stopped { .. })
    })
    .await;
    // The page of three failed, then version 3 alone, twice.
    assert_eq!(runtime.metrics().subscription_failures, 3);
    let rebuilt = tokio::time::timeout(Duration::from_secs(10), projector.rebuild())
        .await
        .expect("the rebuild answers");
    assert!(
        matches!(&rebuilt, Err(SubscriptionError::Stopped(error)) if error.contains("version 3")),
        "{rebuilt:?}"
    );
    assert_eq!(
        runtime.metrics().subscription_failures,
        5,
        "version 3 tried twice again after the reset"
    );
    runtime.shutdown().await;
}

/// An event that no longer decodes (a payload version its struct does not know) fails like a
/// handler: the typed subscription retries it, then stops at it, never past it. A raw reader of
/// the log, which decodes nothing, passes it.
async fn an_event_that_no_longer_decodes_stops_a_typed_subscription_at_it(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "old shape").await.id);
    counter
        .send_action(&ctx(), Add { amount: 1 })
        .await
        .unwrap();
    counter
        .send_action(&ctx(), Add { amount: 2 })
        .await
        .unwrap();
    exec(
        &runtime,
        &format!(
            "UPDATE {{entities}}entity_events SET payload_version = 9 \
             WHERE entity_id = {} AND entity_version = 2",
            counter.id()
        ),
    )
    .await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let typed = runtime
        .subscription("typed")
        .max_failures(2)
        .retry_delays(Duration::from_millis(1), Duration::from_millis(2))
        .handle(recorder(&events));
    let stopped = status_until(&typed, "stopped", |s| matches!(s, Status::Stopped { .. })).await;
    let Status::Stopped { event, error, .. } = stopped else {
        unreachable!()
    };
    assert!(error.contains("payload version 9"), "{error}");
    let log = runtime
        .read_log::<entities_runtime::LoggedEvent>(LogPosition::START, 10)
        .await
        .unwrap();
    assert_eq!(event, log[1].at, "stopped at version 2");
    assert_eq!(seen(&events), [(counter.id(), 1)], "nothing past it");
    assert_eq!(runtime.metrics().subscription_failures, 2);
    let raw = Arc::new(Mutex::new(Vec::new()));
    let raw_reader = {
        let raw = raw.clone();
        runtime
            .subscription("raw")
            .handle(move |event: entities_runtime::LoggedEvent| {
                raw.lock()
                    .unwrap()
                    .push((event.entity_id, event.record.version));
                std::future::ready(Ok::<_, BoxError>(()))
            })
    };
    assert_eq!(seen_until(&raw, 3).await.len(), 3);
    caught_up(&runtime, &raw_reader).await;
    runtime.shutdown().await;
}
