//! The workloads W1-W5, each timed on the runtime and on the baseline in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use entities_runtime::testing::TestDatabase;
use entities_runtime::{
    Action, Apply, Backend, Context, EntityId, Event, Handle, Runtime, Version, entity,
};
use example::shopping_list::{AddItem, ChangeQuantity, ShoppingListAction};
use example::{MIGRATIONS, ShoppingList};
use serde::{Deserialize, Serialize};

use crate::baseline::Baseline;

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub w1_actions: usize,
    pub w2_entities: usize,
    pub w2_actions: usize,
    pub w2_clients: &'static [usize],
    pub w3_gets_per_entity: usize,
    pub w4_events: i64,
    pub w5_entities: &'static [usize],
}

impl Sizes {
    pub const FULL: Sizes = Sizes {
        w1_actions: 2_000,
        w2_entities: 1_000,
        w2_actions: 10,
        w2_clients: &[1, 8, 32, 128],
        w3_gets_per_entity: 1_000,
        w4_events: 10_000,
        w5_entities: &[100_000, 1_000_000],
    };
    pub const SMOKE: Sizes = Sizes {
        w1_actions: 50,
        w2_entities: 20,
        w2_actions: 3,
        w2_clients: &[1, 8],
        w3_gets_per_entity: 50,
        w4_events: 200,
        w5_entities: &[1_000],
    };
}

/// A fresh database with the runtime's and the read model's tables, and a runtime on it whose
/// pool is `pool` connections.
pub async fn fresh(backend: Backend, pool: u32) -> (TestDatabase, Runtime) {
    let db = TestDatabase::new(backend).await;
    let runtime = Runtime::builder(&db.url)
        .migrations(MIGRATIONS)
        .max_connections(pool)
        .build()
        .await
        .expect("runtime");
    (db, runtime)
}

fn ctx() -> Context {
    Context::new("bench")
}

/// W1: one entity, `n` sequential AddItems. Per-action latencies, runtime then baseline.
pub async fn w1(backend: Backend, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let (_db, runtime) = fresh(backend, 4).await;
    let list = runtime
        .create::<ShoppingList>(&ctx(), "w1".into())
        .await
        .expect("create");
    let entity = runtime.entity::<ShoppingList>(list.id);
    let mut ours = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        entity
            .send_action(&ctx(), AddItem::new(format!("item {i}"), 1))
            .await
            .expect("AddItem");
        ours.push(started.elapsed());
    }
    let baseline = Baseline::of(&runtime);
    let mut entity = baseline.create("w1 baseline").await;
    let mut theirs = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        baseline
            .add_item(&mut entity, &format!("item {i}"), 1)
            .await;
        theirs.push(started.elapsed());
    }
    runtime.shutdown().await;
    (ours, theirs)
}

/// W2: `entities` entities x `actions` AddItems from `clients` concurrent clients, each client
/// working through its share of the entities. Actions per second, runtime then baseline.
pub async fn w2(
    backend: Backend,
    sizes: &Sizes,
    clients: usize,
) -> (f64, f64, Runtime, Vec<EntityId>, TestDatabase) {
    let pool = (clients.min(32) + 2) as u32;
    let (db, runtime) = fresh(backend, pool).await;
    let mut ids = Vec::with_capacity(sizes.w2_entities);
    for n in 0..sizes.w2_entities {
        ids.push(
            runtime
                .create::<ShoppingList>(&ctx(), format!("w2 {n}"))
                .await
                .expect("create")
                .id,
        );
    }
    let total = (sizes.w2_entities * sizes.w2_actions) as f64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let runtime = runtime.clone();
        let mine: Vec<EntityId> = ids.iter().copied().skip(client).step_by(clients).collect();
        let actions = sizes.w2_actions;
        tasks.push(tokio::spawn(async move {
            for id in mine {
                let entity = runtime.entity::<ShoppingList>(id);
                for i in 0..actions {
                    entity
                        .send_action(&ctx(), AddItem::new(format!("item {i}"), 1))
                        .await
                        .expect("AddItem");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    let ours = total / started.elapsed().as_secs_f64();

    let baseline = Baseline::of(&runtime);
    let mut entities = Vec::with_capacity(sizes.w2_entities);
    for n in 0..sizes.w2_entities {
        entities.push(baseline.create(&format!("w2 baseline {n}")).await);
    }
    let mut shares: Vec<Vec<_>> = (0..clients).map(|_| Vec::new()).collect();
    for (n, entity) in entities.into_iter().enumerate() {
        shares[n % clients].push(entity);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for share in shares {
        let baseline = baseline.clone();
        let actions = sizes.w2_actions;
        tasks.push(tokio::spawn(async move {
            for mut entity in share {
                for i in 0..actions {
                    baseline
                        .add_item(&mut entity, &format!("item {i}"), 1)
                        .await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    let theirs = total / started.elapsed().as_secs_f64();
    (ours, theirs, runtime, ids, db)
}

/// W3, after W2: `gets` reads of each of `ids` from 32 tasks while a writer adds items to other
/// entities. Gets per second and p99 latency (µs), runtime then baseline.
pub async fn w3(runtime: &Runtime, ids: &[EntityId], gets: usize) -> ((f64, f64), (f64, f64)) {
    const READERS: usize = 32;
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let runtime = runtime.clone();
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut others = Vec::new();
            for n in 0..8 {
                others.push(
                    runtime
                        .create::<ShoppingList>(&ctx(), format!("w3 writer {n}"))
                        .await
                        .expect("create")
                        .id,
                );
            }
            let mut i = 0usize;
            while writing.load(Ordering::Relaxed) {
                let entity = runtime.entity::<ShoppingList>(others[i % others.len()]);
                entity
                    .send_action(&ctx(), writer_action(&entity, i).await)
                    .await
                    .ok();
                i += 1;
            }
        })
    };
    let reader = runtime.clone();
    let ours = read_load(ids, gets, READERS, move |id| {
        let entity = reader.entity::<ShoppingList>(id);
        async move {
            entity.get().await.expect("get");
        }
    })
    .await;
    // Hand-written reads cost a round trip each: a thousandth of the runtime's count is plenty.
    let baseline = Baseline::of(runtime);
    let theirs = read_load(ids, (gets / 1000).max(1), READERS, move |id| {
        let baseline = baseline.clone();
        async move {
            baseline.read(id).await;
        }
    })
    .await;
    writing.store(false, Ordering::Relaxed);
    writer.await.expect("writer");
    (ours, theirs)
}

/// `gets` reads of each id from `readers` tasks: (reads per second, p99 in µs).
async fn read_load<F, Fut>(ids: &[EntityId], gets: usize, readers: usize, read: F) -> (f64, f64)
where
    F: Fn(EntityId) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let ids: Arc<Vec<EntityId>> = Arc::new(ids.to_vec());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for reader in 0..readers {
        let (ids, read) = (ids.clone(), read.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = reader;
            let total = ids.len() * gets;
            while n < total {
                let at = Instant::now();
                read(ids[n % ids.len()]).await;
                // Sampled: timing every read would cost more than the reads.
                if n % 64 == reader % 64 {
                    latencies.push(at.elapsed());
                }
                n += readers;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("reader"));
    }
    let rate = (ids.len() * gets) as f64 / started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let p99 = latencies
        .get(latencies.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or_default();
    (rate, p99.as_secs_f64() * 1e6)
}

/// W4: a list with `events` events, written with SQL: its cold load from the first event and
/// from a snapshot, a 10-event list's load from a snapshot, and the baseline's hand-written read
/// of the events. Milliseconds: (full replay, from snapshot, 10 events from snapshot, baseline).
pub async fn w4(backend: Backend, events: i64) -> (f64, f64, f64, f64) {
    let (db, runtime) = fresh(backend, 4).await;
    let long = write_history(&runtime, "long", events).await;
    let short = write_history(&runtime, "short", 10).await;
    let warm_up = write_history(&runtime, "warm-up", 10).await;
    runtime.shutdown().await;
    let replay = cold_load(&db, long, warm_up).await;
    // The runtime that loaded it snapshotted it at shutdown; now loads start from there.
    let from_snapshot = cold_load(&db, long, warm_up).await;
    cold_load(&db, short, warm_up).await;
    let short_from_snapshot = cold_load(&db, short, warm_up).await;
    let runtime = Runtime::builder(&db.url)
        .migrate(false)
        .build()
        .await
        .expect("runtime");
    let baseline = Baseline::of(&runtime);
    baseline.read_events(warm_up).await;
    let started = Instant::now();
    baseline.read_events(long).await;
    let baseline = started.elapsed().as_secs_f64() * 1e3;
    runtime.shutdown().await;
    (replay, from_snapshot, short_from_snapshot, baseline)
}

/// Milliseconds to load `id` into a fresh runtime, whose connection and prepared statements
/// are first warmed on `warm_up`: the load is timed, not the connecting.
async fn cold_load(db: &TestDatabase, id: EntityId, warm_up: EntityId) -> f64 {
    let runtime = Runtime::builder(&db.url)
        .migrate(false)
        .max_connections(1)
        .build()
        .await
        .expect("runtime");
    runtime
        .entity::<ShoppingList>(warm_up)
        .get()
        .await
        .expect("warm-up load");
    let started = Instant::now();
    let list = runtime
        .entity::<ShoppingList>(id)
        .get()
        .await
        .expect("load");
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(list.items.len(), 1);
    runtime.shutdown().await;
    elapsed
}

/// A list with `events` events (created, one item, then its quantity changed back and forth),
/// inserted with SQL: writing 10,000 through the runtime would time the writes, not the load.
async fn write_history(runtime: &Runtime, name: &str, events: i64) -> EntityId {
    let list = runtime
        .create::<ShoppingList>(&ctx(), format!("w4 {name}"))
        .await
        .expect("create");
    let added = runtime
        .entity::<ShoppingList>(list.id)
        .send_action(&ctx(), AddItem::new("tea", 1))
        .await
        .expect("AddItem");
    let item = &added.items[0].id;
    let (id, schema) = (
        list.id,
        if runtime.backend() == Backend::Postgres {
            "entities."
        } else {
            ""
        },
    );
    let series = match runtime.backend() {
        Backend::Postgres => format!("SELECT v FROM generate_series(3, {events}) AS v"),
        Backend::Sqlite => format!(
            "WITH RECURSIVE s(v) AS (SELECT 3 UNION ALL SELECT v + 1 FROM s WHERE v < {events}) SELECT v FROM s"
        ),
    };
    let payload = format!(r#"'{{"item_id":"{item}","quantity":' || (v % 2 + 1) || '}}'"#);
    let payload = match runtime.backend() {
        Backend::Postgres => format!("({payload})::jsonb"),
        Backend::Sqlite => payload,
    };
    Baseline::of(runtime)
        .exec(format!(
            "INSERT INTO {schema}entity_actions (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id) \
             VALUES ({id}, 'shopping_list', {events}, 'ChangeQuantity', '{{}}', 'bench', 'r', 'c');
             INSERT INTO {schema}entity_events (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id) \
             SELECT {id}, 'shopping_list', v, 'QuantityChanged', {payload}, \
                    (SELECT max(id) FROM {schema}entity_actions WHERE entity_id = {id}), 'bench', 'r', 'c' FROM ({series}) AS series;
             UPDATE {schema}entities SET version = {events} WHERE id = {id};"
        ))
        .await;
    id
}

/// W5's entity: the smallest state there is beside its id and version.
#[entity(type = "tally", actions(Bump), events(Bumped))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    pub id: EntityId,
    pub version: Version,
    pub n: i64,
}

#[derive(Action, Serialize, Deserialize)]
pub struct Bump;

#[derive(Event, Serialize, Deserialize)]
pub struct Bumped;

impl Handle<Bump> for Tally {
    fn handle(&self, _: &Context, _: &Bump) -> Result<Vec<TallyEvent>, entities_runtime::Rejected> {
        Ok(vec![Bumped.into()])
    }
}

impl Apply<Bumped> for Tally {
    fn apply(&mut self, _: &Bumped) {
        self.n += 1;
    }
}

/// W5: bytes of resident memory per live idle entity beyond its state, with `count` live.
pub async fn w5(count: usize) -> f64 {
    let db = TestDatabase::sqlite();
    let runtime = Runtime::builder(&db.url)
        .idle_timeout(Duration::from_secs(3600))
        .max_connections(8)
        .build()
        .await
        .expect("runtime");
    // Rows with a snapshot, so each load is one row and no events.
    Baseline::of(&runtime)
        .exec(format!(
            "WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s WHERE v < {count}) \
             INSERT INTO entities (id, type, version, snapshot, snapshot_version) \
             SELECT v, 'tally', 1, '{{\"id\":' || v || ',\"version\":1,\"n\":1}}', 1 FROM s"
        ))
        .await;
    // Warm the allocator and the pool on entities not counted.
    let before = resident_bytes();
    let loaders = 16;
    let mut tasks = Vec::new();
    for loader in 0..loaders {
        let runtime = runtime.clone();
        tasks.push(tokio::spawn(async move {
            let mut id = loader + 1;
            while id <= count {
                runtime
                    .entity::<Tally>(id as i64)
                    .get()
                    .await
                    .expect("load");
                id += loaders;
            }
        }));
    }
    for task in tasks {
        task.await.expect("loader");
    }
    assert_eq!(runtime.live_entities(), count);
    let after = resident_bytes();
    // The state itself: its allocation behind the `Arc` (two counters and the struct).
    let state = (std::mem::size_of::<Tally>() + 16) as f64;
    let per_entity = (after.saturating_sub(before)) as f64 / count as f64 - state;
    drop(runtime);
    per_entity
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The W3 writer's next action: add an item to an empty list, else change its quantity.
async fn writer_action(
    entity: &entities_runtime::EntityRef<ShoppingList>,
    i: usize,
) -> ShoppingListAction {
    let state = entity.get().await.expect("get");
    match state.items.first() {
        Some(item) => ChangeQuantity {
            item_id: item.id.clone(),
            quantity: (i % 5 + 1) as i32,
        }
        .into(),
        None => AddItem::new("w3", 1).into(),
    }
}
