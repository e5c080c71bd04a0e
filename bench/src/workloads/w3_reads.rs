//! W3, reads: after W2 (1,000 lists x 10 actions from 32 clients), `get` of each list many
//! times from 32 tasks, while 8 clients keep adding items to 1,000 other lists. The baseline
//! reads the same state from the read model (the list row and its items), fewer times, while
//! 8 baseline clients write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use entities_runtime::Backend;
use example::ShoppingList;
use hdrhistogram::Histogram;

use super::{
    Driven, Sizes, create_baseline_lists, create_lists, drive_baseline, drive_runtime, histogram,
    pool_size, record,
};
use crate::db::BenchDb;

const READERS: usize = 32;
const WRITERS: usize = 8;

/// What the readers did, and the writes beside them.
pub struct Reads {
    pub gets: usize,
    pub elapsed: Duration,
    pub latencies: Histogram<u64>,
    pub writes: Driven,
}

impl Reads {
    pub fn rate(&self) -> f64 {
        self.gets as f64 / self.elapsed.as_secs_f64()
    }
}

pub struct W3 {
    pub runtime: Reads,
    pub baseline: Reads,
}

pub async fn run(backend: Backend, sizes: &Sizes) -> W3 {
    let db = BenchDb::new(backend).await;
    let pool = pool_size(READERS);
    let lists = sizes.w2_entities;
    let items = sizes.w2_actions;

    let runtime = db.runtime(pool).await;
    let ids = create_lists(&runtime, lists, "w3").await;
    drive_runtime(&runtime, &ids, items, 32, None, None).await;
    let others = create_lists(&runtime, lists, "w3 written").await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = {
        let (runtime, stop) = (runtime.clone(), stop.clone());
        tokio::spawn(async move {
            drive_runtime(&runtime, &others, usize::MAX, WRITERS, Some(stop), None).await
        })
    };
    let refs: Arc<Vec<_>> = Arc::new(
        ids.iter()
            .map(|&id| runtime.entity::<ShoppingList>(id))
            .collect(),
    );
    let total = lists * sizes.w3_gets_per_entity;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for reader in 0..READERS {
        let refs = refs.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = histogram();
            let mut n = reader;
            while n < total {
                let at = Instant::now();
                let list = refs[n % refs.len()].get().await.expect("get");
                record(&mut latencies, at.elapsed());
                debug_assert_eq!(list.items.len(), items);
                n += READERS;
                // A live entity's `get` never waits, so a reader would keep its worker thread
                // for ever and starve the writers: let them in now and then.
                if (n / READERS).is_multiple_of(32) {
                    tokio::task::yield_now().await;
                }
            }
            latencies
        }));
    }
    let ours = reads(started, total, tasks, stop, writers).await;
    runtime.shutdown().await;

    let baseline = db.baseline(pool).await;
    let entities = create_baseline_lists(&baseline, lists, "w3 baseline").await;
    let ids: Arc<Vec<_>> = Arc::new(entities.iter().map(|entity| entity.id).collect());
    drive_baseline(&baseline, entities, items, 32, None).await;
    let others = create_baseline_lists(&baseline, lists, "w3 baseline written").await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = {
        let (baseline, stop) = (baseline.clone(), stop.clone());
        tokio::spawn(async move {
            drive_baseline(&baseline, others, usize::MAX, WRITERS, Some(stop)).await
        })
    };
    // One read per reader first, untimed: the pool opens its connections and prepares the
    // statements now, not in the measured reads.
    let warm_up: Vec<_> = (0..READERS)
        .map(|n| {
            let (ids, baseline) = (ids.clone(), baseline.clone());
            tokio::spawn(async move { baseline.read(ids[n % ids.len()]).await })
        })
        .collect();
    for read in warm_up {
        read.await.expect("warm-up read");
    }
    let total = lists * sizes.w3_baseline_gets_per_entity;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for reader in 0..READERS {
        let (ids, baseline) = (ids.clone(), baseline.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = histogram();
            let mut n = reader;
            while n < total {
                let at = Instant::now();
                let list = baseline.read(ids[n % ids.len()]).await;
                record(&mut latencies, at.elapsed());
                debug_assert_eq!(list.items.len(), items);
                n += READERS;
            }
            latencies
        }));
    }
    let theirs = reads(started, total, tasks, stop, writers).await;
    baseline.close().await;
    db.drop_database().await;
    W3 {
        runtime: ours,
        baseline: theirs,
    }
}

/// Waits for the readers, then stops the writers.
async fn reads(
    started: Instant,
    gets: usize,
    readers: Vec<tokio::task::JoinHandle<Histogram<u64>>>,
    stop: Arc<AtomicBool>,
    writers: tokio::task::JoinHandle<Driven>,
) -> Reads {
    let mut latencies = histogram();
    for reader in readers {
        latencies
            .add(reader.await.expect("reader"))
            .expect("same bounds");
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    Reads {
        gets,
        elapsed,
        latencies,
        writes: writers.await.expect("writers"),
    }
}
