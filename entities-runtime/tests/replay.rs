//! Property: whatever the actions, the live state equals a cold replay of every event, and
//! equals a load from the snapshot plus the events after it.

mod support;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Error, Runtime};
use proptest::prelude::*;
use support::*;

#[derive(Debug, Clone)]
enum Step {
    Add(i64),
    AddTwice(i64),
    /// To one of a few names, so that renaming to the current name (refused) comes up.
    Rename(u8),
    Nothing,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (-2i64..50).prop_map(Step::Add),
        2 => (-1i64..20).prop_map(Step::AddTwice),
        2 => (0u8..3).prop_map(Step::Rename),
        1 => Just(Step::Nothing),
    ]
}

/// The counter as the steps should leave it, worked out without the runtime.
#[derive(Debug, Clone, PartialEq)]
struct Model {
    name: String,
    total: i64,
    adds: Vec<i64>,
    version: i64,
}

impl Model {
    /// Takes `step` as the handler should: `Ok` when it stores its events (or none), else the
    /// refusal it must give, leaving the model as it was.
    fn take(&mut self, step: &Step, case: usize) -> Result<(), CounterError> {
        match *step {
            Step::Add(amount) | Step::AddTwice(amount) if amount <= 0 => {
                return Err(CounterError::NotPositive(amount));
            }
            Step::Add(amount) => {
                self.total += amount;
                self.adds.push(amount);
                self.version += 1;
            }
            Step::AddTwice(amount) => {
                self.total += 2 * amount;
                self.adds.extend([amount, amount]);
                self.version += 2;
            }
            Step::Rename(n) => {
                let name = rename_to(case, n);
                if name == self.name {
                    return Err(CounterError::SameName(name));
                }
                self.name = name;
                self.version += 1;
            }
            Step::Nothing => {}
        }
        Ok(())
    }

    fn of(counter: &Counter) -> Self {
        Self {
            name: counter.name.clone(),
            total: counter.total,
            adds: counter.adds.clone(),
            version: counter.version,
        }
    }
}

fn rename_to(case: usize, n: u8) -> String {
    format!("case {case} name {n}")
}

async fn check(runtime: &Runtime, db: &TestDatabase, case: usize, steps: &[Step]) {
    let name = format!("case {case}");
    let id = new_counter(runtime, &name).await.id;
    let entity = runtime.entity::<Counter>(id);
    let mut model = Model {
        name,
        total: 0,
        adds: Vec::new(),
        version: 1,
    };
    for (n, step) in steps.iter().enumerate() {
        let result = match step {
            Step::Add(amount) => entity.send_action(&ctx(), Add { amount: *amount }).await,
            Step::AddTwice(amount) => {
                entity
                    .send_action(&ctx(), AddTwice { amount: *amount })
                    .await
            }
            Step::Rename(to) => {
                entity
                    .send_action(
                        &ctx(),
                        Rename {
                            name: rename_to(case, *to),
                        },
                    )
                    .await
            }
            Step::Nothing => entity.send_action(&ctx(), Nothing).await,
        };
        // Refusals are part of the sequence: each must be the one expected, and change nothing.
        match (result, model.take(step, case)) {
            (Ok(state), Ok(())) => assert_eq!(Model::of(&state), model, "step {n}: {step:?}"),
            (Err(Error::Rejected(refusal)), Err(expected)) => {
                assert_eq!(refusal, expected, "step {n}: {step:?}")
            }
            (got, expected) => {
                panic!("step {n}: {step:?} gave {got:?}; expected {expected:?}")
            }
        }
    }
    let live = (*entity.get().await.unwrap()).clone();
    assert_eq!(Model::of(&live), model, "live == model");

    // Snapshots are written in the background whenever 3 events passed since the last.
    let snapshot_sql =
        format!("SELECT (SELECT version FROM {{entities}}entity_snapshots WHERE entity_id = {id})");
    if live.version >= SNAPSHOT_EVERY {
        let snapshot = scalar_eventually(runtime, &snapshot_sql, |version| {
            version.is_some_and(|version| version > live.version - SNAPSHOT_EVERY)
        })
        .await;
        assert!(snapshot <= Some(live.version));
    } else {
        assert_eq!(snapshot_version(runtime, id).await, None);
    }
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

const SNAPSHOT_EVERY: i64 = 3;

fn property(backend: Backend) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = tokio.block_on(TestDatabase::new(backend));
    // A snapshot every 3 events, so most loads start from a snapshot and replay a tail.
    let runtime = tokio.block_on(runtime_with(&db, |b| {
        b.snapshot_every(SNAPSHOT_EVERY as u64)
    }));
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
