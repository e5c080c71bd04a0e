//! W7, event streams: under the W2 load (`clients` clients adding items to `entities` lists,
//! `rounds` each), the delay from an action's commit (its caller's answer) to the delivery of
//! its event to a durable subscriber, and to a watcher of the list in another runtime; then the
//! rate at which a projector (the example's `popular_items`) replays the whole log from the
//! start, against the rate the load wrote it.
//!
//! On Postgres the subscriber and the watchers run in a second runtime on the database, so what
//! is timed is the cross-runtime path (the writer's `NOTIFY`, the listener, a log read). On
//! SQLite they run in the writing runtime (a SQLite database is one process's): what is timed is
//! the in-process wake-up and the log read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use entities_runtime::{Backend, Logged, StartAt};
use example::ShoppingList;
use example::popular_items::PopularItems;
use hdrhistogram::Histogram;

use super::{Driven, create_lists, drive_runtime, histogram, pool_size, record};
use crate::db::BenchDb;
use crate::workloads::Sizes;

pub struct W7 {
    /// The load's writes.
    pub writes: Driven,
    /// Commit (the caller's answer) to the subscriber's handler.
    pub delivery: Histogram<u64>,
    /// Commit to a watcher of the list (`EntityRef::changes`) in the subscriber's runtime.
    pub freshness: Histogram<u64>,
    /// Events the projector replayed, and how long it took.
    pub replayed: u64,
    pub replay: Duration,
}

impl W7 {
    pub fn replay_rate(&self) -> f64 {
        self.replayed as f64 / self.replay.as_secs_f64()
    }
}

/// When each (list, version) was answered, or seen.
type Times = super::Answered;

/// How many lists the other runtime watches.
const WATCHED: usize = 50;

pub async fn run(backend: Backend, sizes: &Sizes) -> W7 {
    let db = BenchDb::new(backend).await;
    let clients = sizes.w7_clients;
    let writer = db.runtime(pool_size(clients)).await;
    let reader = match backend {
        Backend::Postgres => db.runtime(4).await,
        Backend::Sqlite => writer.clone(),
    };
    let ids = create_lists(&writer, sizes.w7_entities, "w7").await;

    let delivered: Times = Arc::default();
    let subscriber = {
        let delivered = delivered.clone();
        reader
            .subscription("w7 delivery")
            .start_at(StartAt::Now)
            .handle(move |event: Logged<ShoppingList>| {
                delivered
                    .lock()
                    .unwrap()
                    .insert((event.entity_id, event.version), Instant::now());
                std::future::ready(Ok::<_, entities_runtime::BoxError>(()))
            })
    };
    subscriber
        .wait_for(|status| matches!(status, entities_runtime::Status::Running { .. }))
        .await;
    let seen: Times = Arc::default();
    let mut watchers = Vec::new();
    for &id in ids.iter().step_by((ids.len() / WATCHED).max(1)) {
        let mut changes = reader
            .entity::<ShoppingList>(id)
            .changes()
            .await
            .expect("watch");
        let seen = seen.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(state) = changes.next().await {
                seen.lock()
                    .unwrap()
                    .insert((state.id, state.version), Instant::now());
            }
        }));
    }

    let answered: Times = Arc::default();
    let writes = drive_runtime(
        &writer,
        &ids,
        sizes.w7_rounds,
        clients,
        None,
        Some(&answered),
    )
    .await;
    let expected = writes.actions;
    let answered = answered.lock().unwrap().clone();
    // Every answered action's event delivered (within a minute: a bench that hangs reports
    // nothing). The subscriber may also get a few creates: those are not counted.
    let deadline = Instant::now() + Duration::from_secs(60);
    let all_delivered = || {
        let delivered = delivered.lock().unwrap();
        answered.keys().all(|key| delivered.contains_key(key))
    };
    while !all_delivered() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delays = |times: &Times| {
        let mut delays = histogram();
        for (key, at) in times.lock().unwrap().iter() {
            if let Some(answered) = answered.get(key) {
                record(&mut delays, at.saturating_duration_since(*answered));
            }
        }
        delays
    };
    let delivery = delays(&delivered);
    let freshness = delays(&seen);
    assert_eq!(delivery.len() as usize, expected, "every event delivered");
    subscriber.stop().await;
    for watcher in watchers {
        watcher.abort();
    }
    if backend == Backend::Postgres {
        reader.shutdown().await;
    }
    writer.shutdown().await;

    // The replay: a projector new to the log, from its start.
    let replayer = db.runtime(4).await;
    let head = replayer.log_head().await.expect("head");
    let count = match backend {
        Backend::Postgres => "SELECT count(*) FROM entities.entity_events",
        Backend::Sqlite => "SELECT count(*) FROM entity_events",
    };
    let (events,): (i64,) = replayer
        .database()
        .query(count)
        .fetch_one()
        .await
        .expect("the log's length");
    let events = events as u64;
    let started = Instant::now();
    let projector = replayer
        .subscription("w7 replay")
        .page_size(2_000)
        .project::<Logged<ShoppingList>, _>(PopularItems);
    projector.caught_up_to(head).await.expect("caught up");
    let replay = started.elapsed();
    projector.stop().await;
    replayer.shutdown().await;
    db.drop_database().await;
    W7 {
        writes,
        delivery,
        freshness,
        replayed: events,
        replay,
    }
}
