//! Property: whatever the actions, the live state equals a cold replay of every event, and
//! equals a load from the snapshot plus the events after it.

mod support;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Runtime};
use proptest::prelude::*;
use support::*;

#[derive(Debug, Clone)]
enum Step {
    Add(i64),
    AddTwice(i64),
    Rename(u8),
    Nothing,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (-2i64..50).prop_map(Step::Add),
        2 => (-1i64..20).prop_map(Step::AddTwice),
        1 => any::<u8>().prop_map(Step::Rename),
        1 => Just(Step::Nothing),
    ]
}

async fn check(runtime: &Runtime, db: &TestDatabase, case: usize, steps: &[Step]) {
    let id = new_counter(runtime, &format!("case {case}")).await.id;
    let entity = runtime.entity::<Counter>(id);
    for step in steps {
        // Rejections (amounts <= 0) are part of the sequence: they must change nothing.
        let _ = match step {
            Step::Add(amount) => entity.send_action(&ctx(), Add { amount: *amount }).await,
            Step::AddTwice(amount) => {
                entity
                    .send_action(&ctx(), AddTwice { amount: *amount })
                    .await
            }
            Step::Rename(n) => {
                entity
                    .send_action(
                        &ctx(),
                        Rename {
                            name: format!("case {case} name {n}"),
                        },
                    )
                    .await
            }
            Step::Nothing => entity.send_action(&ctx(), Nothing).await,
        };
    }
    let live = (*entity.get().await.unwrap()).clone();

    let from_snapshot = cold_load(db, id).await;
    assert_eq!(from_snapshot, live, "snapshot + tail == live");
    exec(
        runtime,
        &format!("DELETE FROM {{entities}}entity_snapshots WHERE entity_id = {id}"),
    )
    .await;
    let replayed = cold_load(db, id).await;
    assert_eq!(replayed, live, "full replay == live");
    let read_model = read_model(runtime, id).await.expect("read model row");
    assert_eq!(
        read_model,
        (live.name.clone(), live.total, live.version),
        "read model == replay"
    );
}

fn property(backend: Backend) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = tokio.block_on(TestDatabase::new(backend));
    // A snapshot every 3 events, so most loads start from a snapshot and replay a tail.
    let runtime = tokio.block_on(runtime_with(&db, |b| b.snapshot_every(3)));
    let case = std::sync::atomic::AtomicUsize::new(0);
    proptest!(ProptestConfig::with_cases(24), |(steps in prop::collection::vec(step(), 0..30))| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio.block_on(check(&runtime, &db, case, &steps));
    });
    tokio.block_on(runtime.shutdown());
}

#[test]
fn live_equals_cold_replay_equals_snapshot_plus_tail_on_sqlite() {
    property(Backend::Sqlite);
}

#[test]
fn live_equals_cold_replay_equals_snapshot_plus_tail_on_postgres() {
    property(Backend::Postgres);
}
