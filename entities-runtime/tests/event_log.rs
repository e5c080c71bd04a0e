//! The event log: every event in one order, read from a checkpoint, never past an event still
//! in flight.

mod support;

use std::time::Duration;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, LogPosition, Logged, LoggedEvent, Runtime};
use support::*;

on_both_backends!(
    the_log_holds_every_event_once_in_order_and_reads_in_pages,
    a_reader_never_passes_an_event_still_in_flight,
);

/// Reads the log after `after` until it holds `count` events, in pages of `page`; panics after
/// 10 seconds. (On Postgres the log stops below the oldest transaction running in the whole
/// server: another test's open transaction holds it back for a while.)
async fn read_eventually(
    runtime: &Runtime,
    after: LogPosition,
    count: usize,
    page: usize,
) -> Vec<LoggedEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut read = Vec::new();
    let mut at = after;
    loop {
        let next = runtime
            .read_log::<LoggedEvent>(at, page)
            .await
            .expect("the log reads");
        if let Some(last) = next.last() {
            at = last.at;
        }
        let got = next.len();
        read.extend(next);
        if read.len() >= count {
            return read;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "read {} of {count} events",
            read.len()
        );
        if got == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn the_log_holds_every_event_once_in_order_and_reads_in_pages(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let counter = runtime.entity::<Counter>(new_counter(&runtime, &format!("c{n}")).await.id);
        counter
            .send_action(&ctx(), AddTwice { amount: n + 1 })
            .await
            .unwrap();
        ids.push(counter.id());
    }
    // 3 counters x (1 Opened + 2 Added).
    let all = read_eventually(&runtime, LogPosition::START, 9, 100).await;
    assert_eq!(all.len(), 9);
    assert!(
        all.windows(2).all(|pair| pair[0].at < pair[1].at),
        "in log order"
    );
    for &id in &ids {
        let versions: Vec<i64> = all
            .iter()
            .filter(|event| event.entity_id == id)
            .map(|event| event.record.version)
            .collect();
        assert_eq!(versions, [1, 2, 3]);
        assert!(all.iter().all(|event| event.entity_type == "counter"));
    }
    assert_eq!(
        all[1].record.payload,
        serde_json::json!({ "amount": 1 }),
        "the record as stored"
    );
    // Pages of 2 give the same events; past the last, nothing.
    let paged = read_eventually(&runtime, LogPosition::START, 9, 2).await;
    assert_eq!(paged, all);
    assert!(
        runtime
            .read_log::<LoggedEvent>(all[8].at, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let typed = runtime
        .read_log::<Logged<Counter>>(all[2].at, 100)
        .await
        .unwrap();
    assert_eq!(
        typed
            .iter()
            .map(|event| (event.at, event.entity_id, event.version))
            .collect::<Vec<_>>(),
        all[3..]
            .iter()
            .map(|event| (event.at, event.entity_id, event.record.version))
            .collect::<Vec<_>>()
    );
    assert!(
        matches!(
            &typed[1].event,
            CounterEvent::Added(Added { amount: 2, .. })
        ),
        "decoded into the entity's event enum: {:?}",
        typed[1].event
    );
    assert_eq!(runtime.log_head().await.unwrap(), all[8].at);
    // A raw event decodes into its entity's event enum.
    assert!(matches!(
        all[1].decode::<Counter>(),
        Some(Ok(CounterEvent::Added(Added { amount: 1 })))
    ));
}

/// A rename is held inside its open transaction (its projection waits at a gate): its event has
/// a position already. Meanwhile another counter's add commits through the second committer
/// (on Postgres; SQLite's one writer makes it wait). The reader gets neither while the rename is
/// in flight, although on Postgres the add is committed (counted in the table); once the rename
/// commits, it gets both, the rename first, each once.
async fn a_reader_never_passes_an_event_still_in_flight(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime_with(&db, |b| b.committers(2)).await;
    let other = runtime.entity::<Counter>(new_counter(&runtime, "other").await.id);
    let gate = Gate::new();
    let blocker = hold_the_committer(&runtime, &gate).await;
    let before = read_eventually(&runtime, LogPosition::START, 2, 100).await;
    assert_eq!(before.len(), 2, "the two Opened events");
    let checkpoint = before[1].at;
    let add = {
        let other = other.clone();
        tokio::spawn(async move { other.send_action(&ctx(), Add { amount: 5 }).await })
    };
    if backend == Backend::Postgres {
        let committed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let rows = scalar(
                    &runtime,
                    &format!(
                        "SELECT count(*) FROM entities.entity_events WHERE entity_id = {} AND entity_version = 2",
                        other.id()
                    ),
                )
                .await;
                if rows == Some(1) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            committed.is_ok(),
            "the add committed beside the held rename"
        );
    }
    assert!(
        runtime
            .read_log::<LoggedEvent>(checkpoint, 100)
            .await
            .unwrap()
            .is_empty(),
        "nothing past the rename still in flight"
    );
    gate.open();
    blocker.await.unwrap();
    add.await.unwrap().unwrap();
    let after = read_eventually(&runtime, checkpoint, 2, 100).await;
    let seen: Vec<(&str, i64)> = after
        .iter()
        .map(|event| (event.record.event_type.as_str(), event.entity_id))
        .collect();
    assert_eq!(
        seen,
        [("Renamed", before[1].entity_id), ("Added", other.id())]
    );
    assert!(
        runtime
            .read_log::<LoggedEvent>(after[1].at, 100)
            .await
            .unwrap()
            .is_empty()
    );
}
