//! Live updates in the process (an entity's or a type's committed states) and freshness across
//! runtimes: another runtime's write reaches this one's `get` and watchers without a write here.

mod support;

use std::sync::Arc;
use std::time::Duration;

use entities_runtime::sqlx;
use entities_runtime::sqlx::postgres::PgListener;
use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Changes};
use support::*;

on_both_backends!(
    an_entity_s_changes_arrive_once_each_in_version_order,
    a_type_s_changes_name_every_live_entity_and_new_ones,
    a_watched_entity_stays_in_memory_and_its_watch_ends_at_shutdown,
    another_runtime_s_writes_reach_get_and_watchers_without_a_write_here,
);

/// The next state of `changes`; panics after 10 s.
async fn next(changes: &mut Changes<Counter>) -> Arc<Counter> {
    tokio::time::timeout(Duration::from_secs(10), changes.next())
        .await
        .expect("a change within 10 s")
        .expect("the watch goes on")
}

async fn an_entity_s_changes_arrive_once_each_in_version_order(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = runtime.entity::<Counter>(new_counter(&runtime, "watched").await.id);
    let mut changes = counter.changes().await.unwrap();
    counter
        .send_action(&ctx(), Add { amount: 1 })
        .await
        .unwrap();
    counter
        .send_action(&ctx(), AddTwice { amount: 2 })
        .await
        .unwrap();
    // A batch: one change per action, as another runtime catching up would see them.
    counter
        .send_actions(&ctx(), [Add { amount: 3 }, Add { amount: 4 }])
        .await
        .unwrap();
    // Refused: no change.
    assert!(
        counter
            .send_action(&ctx(), Add { amount: -1 })
            .await
            .is_err()
    );
    counter
        .send_action(&ctx(), Add { amount: 5 })
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let state = next(&mut changes).await;
        seen.push((state.version, state.total));
    }
    assert_eq!(seen, [(2, 1), (4, 5), (5, 8), (6, 12), (7, 17)]);
    assert_eq!(changes.skipped(), 0);
    // A second watcher starts from its own present.
    let mut later = counter.changes().await.unwrap();
    counter
        .send_action(&ctx(), Add { amount: 6 })
        .await
        .unwrap();
    assert_eq!(next(&mut later).await.version, 8);
    assert_eq!(next(&mut changes).await.version, 8);
    runtime.shutdown().await;
}

async fn a_type_s_changes_name_every_live_entity_and_new_ones(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let first = runtime.entity::<Counter>(new_counter(&runtime, "first").await.id);
    let mut changes = runtime.changes_of::<Counter>();
    let second = new_counter(&runtime, "second").await;
    first.send_action(&ctx(), Add { amount: 1 }).await.unwrap();
    let second = runtime.entity::<Counter>(second.id);
    second.send_action(&ctx(), Add { amount: 2 }).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let state = next(&mut changes).await;
        seen.push((state.id, state.version));
    }
    assert_eq!(
        seen,
        [(second.id(), 1), (first.id(), 2), (second.id(), 2)],
        "the new entity, then each change, in commit order"
    );
    runtime.shutdown().await;
}

async fn a_watched_entity_stays_in_memory_and_its_watch_ends_at_shutdown(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.idle_timeout(Duration::from_millis(20))).await;
    let watched = runtime.entity::<Counter>(new_counter(&runtime, "watched").await.id);
    let mut changes = watched.changes().await.unwrap();
    new_counter(&runtime, "idle").await;
    metrics_until(&runtime, "the unwatched counter leaving memory", |m| {
        m.passivations >= 1
    })
    .await;
    // Three more sweeps, and the watched one is still there.
    let before = runtime.metrics();
    metrics_until(&runtime, "three more sweeps", |m| {
        m.idle_sweeps >= before.idle_sweeps + 3
    })
    .await;
    assert_eq!(
        runtime.live_entities(),
        1,
        "only the watched counter is live"
    );
    let sweeps = runtime.metrics().passivations;
    assert_eq!(sweeps, before.passivations);
    watched
        .send_action(&ctx(), Add { amount: 1 })
        .await
        .unwrap();
    assert_eq!(next(&mut changes).await.version, 2);
    // Unwatched, it leaves like any other.
    drop(changes);
    metrics_until(&runtime, "the counter leaving once unwatched", |m| {
        m.passivations > sweeps
    })
    .await;
    assert_eq!(runtime.live_entities(), 0);
    let mut changes = watched.changes().await.unwrap();
    runtime.shutdown().await;
    assert!(
        tokio::time::timeout(Duration::from_secs(10), changes.next())
            .await
            .expect("the watch ends")
            .is_none()
    );
}

/// Runtime B holds a counter live and watches it; runtime A, on the same database, writes to
/// it. B's watcher gets each of A's changes in order and its `get` returns A's state, with no
/// write through B (its catch-ups are counted; no conflict was needed).
async fn another_runtime_s_writes_reach_get_and_watchers_without_a_write_here(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let a = runtime(&db).await;
    let b = runtime_with(&db, |b| b.follow_interval(Duration::from_millis(20))).await;
    let id = new_counter(&a, "shared").await.id;
    let in_b = b.entity::<Counter>(id);
    let mut changes = in_b.changes().await.unwrap();
    let in_a = a.entity::<Counter>(id);
    in_a.send_action(&ctx(), Add { amount: 1 }).await.unwrap();
    in_a.send_action(&ctx(), AddTwice { amount: 2 })
        .await
        .unwrap();
    let last = in_a.send_action(&ctx(), Add { amount: 3 }).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next(&mut changes).await.version);
    }
    assert_eq!(seen, [2, 4, 5], "one change per action of A's, in order");
    assert_eq!(*in_b.get().await.unwrap(), *last);
    metrics_until(&b, "B's catch-up counted", |m| m.catch_ups >= 1).await;
    // B writes on A's state at once: its version check passes the first time.
    in_b.send_action(&ctx(), Add { amount: 4 }).await.unwrap();
    assert_eq!(b.metrics().conflicts, 0);
    b.shutdown().await;
    a.shutdown().await;
}

/// Postgres: the connection that hears other runtimes' commits is killed by the server. The
/// runtime connects again, catches every live entity up (a notification may have been lost
/// meanwhile) and goes on hearing commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listening_connection_catches_every_live_entity_up() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let a = runtime(&db).await;
    let b = runtime(&db).await;
    let id = new_counter(&a, "shared").await.id;
    let in_b = b.entity::<Counter>(id);
    in_b.get().await.unwrap();
    // Greeted: each knows the other listens, and B's catch-up on A's greeting is behind it.
    metrics_until(&a, "A knows B", |m| m.runtimes_listening == 1).await;
    metrics_until(&b, "B knows A", |m| m.runtimes_listening == 1).await;
    let resyncs = b.metrics().follow_resyncs;
    let killed = scalar(
        &a,
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'entities listener'",
    )
    .await;
    assert_eq!(killed, Some(2), "both runtimes' listening connections");
    metrics_until(&b, "B listening again and catching up", |m| {
        m.follow_resyncs > resyncs
    })
    .await;
    let last = a
        .entity::<Counter>(id)
        .send_action(&ctx(), Add { amount: 7 })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while in_b.get().await.unwrap().version < last.version {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B heard A's commit after reconnecting"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(*in_b.get().await.unwrap(), *last);
    b.shutdown().await;
    a.shutdown().await;
}

/// A raw listening connection on the runtimes' channel, speaking their greetings by hand: a
/// runtime sees it as another runtime.
struct FakePeer {
    listener: PgListener,
    id: &'static str,
}

impl FakePeer {
    async fn listen(db: &TestDatabase) -> Self {
        let mut listener = PgListener::connect(&db.url).await.unwrap();
        listener.listen("entities_log").await.unwrap();
        Self {
            listener,
            id: "fake-peer",
        }
    }

    async fn say(&mut self, what: &str) {
        sqlx::query("SELECT pg_notify('entities_log', $1)")
            .bind(format!("{} {what}", self.id))
            .execute(&mut self.listener)
            .await
            .unwrap();
    }

    /// The next payload on the channel that is not its own; panics after 10 s.
    async fn next(&mut self) -> String {
        loop {
            let notification = tokio::time::timeout(Duration::from_secs(10), self.listener.recv())
                .await
                .expect("a notification within 10 s")
                .unwrap();
            if !notification.payload().starts_with(self.id) {
                return notification.payload().to_owned();
            }
        }
    }
}

/// Postgres: a runtime sends no notification of its commits while no other runtime listens;
/// from another's greeting until its goodbye it notifies of each. The fake peer hears every
/// notification sent: none names the entity written while it was not greeted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_notifies_of_its_commits_only_while_another_listens() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let mut peer = FakePeer::listen(&db).await;
    let a = runtime(&db).await;
    let a_id = peer.next().await.strip_suffix(" hello").unwrap().to_owned();
    let unheard = new_counter(&a, "unheard").await.id;
    let heard = new_counter(&a, "heard").await.id;
    let add = |id| {
        let counter = a.entity::<Counter>(id);
        async move { counter.send_action(&ctx(), Add { amount: 1 }).await }
    };
    add(unheard).await.unwrap();
    assert_eq!(a.metrics().runtimes_listening, 0);

    for round in 1..=2 {
        peer.say("hello").await;
        assert_eq!(peer.next().await, format!("{a_id} here fake-peer"));
        assert_eq!(a.metrics().runtimes_listening, 1);
        add(heard).await.unwrap();
        // Notices go out in commit order: one for `unheard` would come first.
        assert_eq!(
            peer.next().await,
            format!("{a_id} {heard}"),
            "round {round}"
        );
        metrics_until(&a, "the notification counted", |m| {
            m.notifications_sent == round
        })
        .await;

        peer.say("bye").await;
        metrics_until(&a, "A forgot the peer", |m| m.runtimes_listening == 0).await;
        add(unheard).await.unwrap();
    }
    a.shutdown().await;
}

/// Postgres: runtime A holds a counter live when a write it was not told of lands (by hand
/// here; in life, a commit by a runtime that did not know yet that A listens). The writer's
/// greeting `here <A>`, sent once it knows, makes A catch every live entity up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greeting_catches_up_what_was_written_before_the_writer_knew() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let mut peer = FakePeer::listen(&db).await;
    let a = runtime(&db).await;
    let a_id = peer.next().await.strip_suffix(" hello").unwrap().to_owned();
    let id = new_counter(&a, "shared").await.id;
    let in_a = a.entity::<Counter>(id);
    assert_eq!(in_a.get().await.unwrap().version, 1);
    exec(
        &a,
        &format!(
            "WITH action AS (INSERT INTO entities.entity_actions (entity_id, entity_type, \
                 entity_version, type, payload, created_by, request_id, correlation_id) \
                 VALUES ({id}, 'counter', 2, 'Add', '{{\"amount\": 5}}', 'elsewhere', 'r', 'c') \
                 RETURNING id) \
             INSERT INTO entities.entity_events (entity_id, entity_type, entity_version, type, \
                 payload, action_id, created_by, request_id, correlation_id) \
             SELECT {id}, 'counter', 2, 'Added', '{{\"amount\": 5}}', id, 'elsewhere', 'r', 'c' \
             FROM action; \
             UPDATE entities.entities SET version = 2 WHERE id = {id};"
        ),
    )
    .await;
    assert_eq!(in_a.get().await.unwrap().version, 1, "nobody told A");
    let resyncs = a.metrics().follow_resyncs;

    peer.say(&format!("here {a_id}")).await;
    // A did not know the peer: it answers, so the peer would catch up on A's past commits too.
    assert_eq!(peer.next().await, format!("{a_id} here fake-peer"));
    metrics_until(&a, "A caught up", |m| m.follow_resyncs > resyncs).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while in_a.get().await.unwrap().version < 2 {
        assert!(tokio::time::Instant::now() < deadline, "A read the write");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(in_a.get().await.unwrap().total, 5);
    a.shutdown().await;
}
