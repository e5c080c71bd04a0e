//! The workloads W1-W5 of the issue, each timed on the runtime and on the baseline in the same
//! run, and what they share: the sizes, the set-up of many lists, and the clients that drive
//! actions at them.

pub mod w1_history;
pub mod w2_spread;
pub mod w3_reads;
pub mod w4_cold_load;
pub mod w5_footprint;
pub mod w6_moves;
pub mod w7_streams;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entities_runtime::{Context, EntityId, Runtime, Version};
use example::ShoppingList;
use example::shopping_list::AddItem;
use hdrhistogram::Histogram;

use crate::baseline::{self, Baseline};

/// The sizes of one run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sizes {
    pub w1_actions: usize,
    pub w2_entities: usize,
    pub w2_actions: usize,
    pub w2_clients: &'static [usize],
    pub w3_gets_per_entity: usize,
    pub w3_baseline_gets_per_entity: usize,
    pub w4_events: i64,
    pub w4_samples: usize,
    pub w5_entities: &'static [usize],
    pub w6_entities: usize,
    pub w6_moves: usize,
    pub w6_clients: usize,
    pub w7_entities: usize,
    pub w7_rounds: usize,
    pub w7_clients: usize,
}

impl Sizes {
    pub const FULL: Sizes = Sizes {
        w1_actions: 2_000,
        w2_entities: 1_000,
        w2_actions: 10,
        w2_clients: &[1, 8, 32, 128],
        w3_gets_per_entity: 1_000,
        w3_baseline_gets_per_entity: 20,
        w4_events: 10_000,
        w4_samples: 3,
        w5_entities: &[100_000, 1_000_000],
        w6_entities: 1_000,
        w6_moves: 4_000,
        w6_clients: 32,
        w7_entities: 1_000,
        w7_rounds: 100,
        w7_clients: 32,
    };
    pub const SMOKE: Sizes = Sizes {
        w1_actions: 50,
        w2_entities: 20,
        w2_actions: 3,
        w2_clients: &[1, 8],
        w3_gets_per_entity: 100,
        w3_baseline_gets_per_entity: 5,
        w4_events: 200,
        w4_samples: 1,
        w5_entities: &[1_000],
        w6_entities: 20,
        w6_moves: 40,
        w6_clients: 4,
        w7_entities: 20,
        w7_rounds: 3,
        w7_clients: 4,
    };
}

/// The pool size of both the runtime and the baseline for `clients` concurrent clients: a
/// connection per client up to 32 (a 2-core database gains nothing from more), plus two for
/// the runtime's own work (loads, snapshots) beside the writes.
pub fn pool_size(clients: usize) -> u32 {
    (clients.min(32) + 2) as u32
}

pub fn ctx() -> Context {
    Context::new("bench")
}

/// A latency histogram in nanoseconds, up to a minute.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    histogram.saturating_record(elapsed.as_nanos().clamp(1, u64::MAX as u128) as u64);
}

/// Runs `job(n)` for n in 0..count from `concurrency` tasks (set-up).
pub(crate) async fn concurrently<F, Fut, T>(count: usize, concurrency: usize, job: F) -> Vec<T>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, job) = (next.clone(), job.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return done;
                }
                done.push((n, job(n).await));
            }
        }));
    }
    let mut all = Vec::with_capacity(count);
    for task in tasks {
        all.extend(task.await.expect("set-up task"));
    }
    all.sort_by_key(|(n, _)| *n);
    all.into_iter().map(|(_, value)| value).collect()
}

/// Creates `count` lists through the runtime (set-up, not timed).
pub async fn create_lists(runtime: &Runtime, count: usize, label: &str) -> Vec<EntityId> {
    let (runtime, label) = (runtime.clone(), label.to_owned());
    let unique = uuid::Uuid::new_v4().simple().to_string();
    concurrently(count, 32, move |n| {
        let (runtime, name) = (runtime.clone(), format!("{label} {n} {unique}"));
        async move {
            runtime
                .create::<ShoppingList>(&ctx(), name)
                .await
                .expect("create")
                .id
        }
    })
    .await
}

/// Creates `count` lists by hand (set-up, not timed).
pub async fn create_baseline_lists(
    baseline: &Baseline,
    count: usize,
    label: &str,
) -> Vec<baseline::Entity> {
    let (baseline, label) = (baseline.clone(), label.to_owned());
    let unique = uuid::Uuid::new_v4().simple().to_string();
    concurrently(count, 32, move |n| {
        let (baseline, name) = (baseline.clone(), format!("{label} {n} {unique}"));
        async move { baseline.create(&ctx(), &name).await }
    })
    .await
}

/// What a set of clients did: how long, how many actions, their latencies.
pub struct Driven {
    pub elapsed: Duration,
    pub actions: usize,
    pub latencies: Histogram<u64>,
}

impl Driven {
    pub fn rate(&self) -> f64 {
        self.actions as f64 / self.elapsed.as_secs_f64()
    }
}

/// When each (list, version) was answered to its client.
pub type Answered = Arc<Mutex<HashMap<(EntityId, Version), Instant>>>;

/// `clients` concurrent clients, each working through its share of `ids` (every
/// `clients`-th), `rounds` AddItems on each of its lists in turn, or until `stop` is set;
/// each answer's time kept in `answered`, when given (W7).
pub async fn drive_runtime(
    runtime: &Runtime,
    ids: &[EntityId],
    rounds: usize,
    clients: usize,
    stop: Option<Arc<AtomicBool>>,
    answered: Option<&Answered>,
) -> Driven {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mine: Vec<_> = ids
            .iter()
            .skip(client)
            .step_by(clients)
            .map(|&id| runtime.entity::<ShoppingList>(id))
            .collect();
        let (stop, answered) = (stop.clone(), answered.cloned());
        tasks.push(tokio::spawn(async move {
            let (ctx, mut latencies, mut actions) = (ctx(), histogram(), 0);
            let mut mine_answered = Vec::new();
            'rounds: for round in 0..rounds {
                for entity in &mine {
                    if stop
                        .as_ref()
                        .is_some_and(|stop| stop.load(Ordering::Relaxed))
                    {
                        break 'rounds;
                    }
                    let at = Instant::now();
                    let after = entity
                        .send_action(&ctx, AddItem::new(format!("item {round}"), 1))
                        .await
                        .expect("AddItem");
                    let now = Instant::now();
                    record(&mut latencies, now - at);
                    if answered.is_some() {
                        mine_answered.push(((after.id, after.version), now));
                    }
                    actions += 1;
                }
            }
            if let Some(answered) = answered {
                answered.lock().unwrap().extend(mine_answered);
            }
            (actions, latencies)
        }));
    }
    collect(started, tasks).await
}

/// [`drive_runtime`] for the baseline.
pub async fn drive_baseline(
    baseline: &Baseline,
    entities: Vec<baseline::Entity>,
    rounds: usize,
    clients: usize,
    stop: Option<Arc<AtomicBool>>,
) -> Driven {
    let mut shares: Vec<Vec<baseline::Entity>> = (0..clients).map(|_| Vec::new()).collect();
    for (n, entity) in entities.into_iter().enumerate() {
        shares[n % clients].push(entity);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut mine in shares {
        let (baseline, stop) = (baseline.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (ctx, mut latencies, mut actions) = (ctx(), histogram(), 0);
            for round in 0..rounds {
                for entity in &mut mine {
                    if stop
                        .as_ref()
                        .is_some_and(|stop| stop.load(Ordering::Relaxed))
                    {
                        return (actions, latencies);
                    }
                    let at = Instant::now();
                    baseline
                        .add_item(&ctx, entity, AddItem::new(format!("item {round}"), 1))
                        .await;
                    record(&mut latencies, at.elapsed());
                    actions += 1;
                }
            }
            (actions, latencies)
        }));
    }
    collect(started, tasks).await
}

pub(crate) async fn collect(
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<(usize, Histogram<u64>)>>,
) -> Driven {
    let mut driven = Driven {
        elapsed: Duration::ZERO,
        actions: 0,
        latencies: histogram(),
    };
    for task in tasks {
        let (actions, latencies) = task.await.expect("client");
        driven.actions += actions;
        driven.latencies.add(&latencies).expect("same bounds");
    }
    driven.elapsed = started.elapsed();
    driven
}
