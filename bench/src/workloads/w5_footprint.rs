//! W5, footprint: resident memory per live idle entity, beyond its state. Each size runs in a
//! child process of its own (the benchmark binary with `--w5-child`), so memory freed by the
//! other workloads, and kept by the allocator, cannot hide what the entities take.
//!
//! The child inserts `count` (plus a warm-up share) `tally` rows with a snapshot, so a load is
//! the entity row and no events; loads the warm-up share (connections, statement caches and
//! the allocator settle); reads the resident set; `get`s each of the `count` entities, with an
//! idle timeout of an hour so none leaves; reads the resident set again.

use std::time::{Duration, Instant};

use entities_runtime::{Backend, EntityId, Runtime};
use serde::{Deserialize, Serialize};

use crate::db::BenchDb;
use crate::tally::Tally;

/// What a child measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Footprint {
    pub live: usize,
    pub rss_before: u64,
    pub rss_after: u64,
    /// (after - before) / live - the state's own allocation.
    pub bytes_per_entity: f64,
    /// Loads per second while making them live.
    pub loads_per_second: f64,
}

/// The state's own heap allocation: the `Arc`'s two counters and the struct.
pub const STATE_BYTES: usize = std::mem::size_of::<Tally>() + 16;

/// Runs the measurement of `count` live entities in a child process.
pub fn run(backend: Backend, count: usize) -> Footprint {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let output = std::process::Command::new(exe)
        .arg("--w5-child")
        .arg(count.to_string())
        .arg("--backend")
        .arg(crate::backend_name(backend))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("the W5 child process");
    assert!(
        output.status.success(),
        "the W5 child failed: {}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the W5 child's answer")
}

/// The child's side: measures and prints a [`Footprint`] as one line of JSON.
pub async fn child(backend: Backend, count: usize) {
    let warm = (count / 20).max(1_000);
    let total = warm + count;
    let db = BenchDb::new(backend).await;
    let runtime = db
        .builder(4)
        .idle_timeout(Duration::from_secs(3600))
        .build()
        .await
        .expect("runtime");
    let snapshot = r#"'{"id":' || v || ',"version":1,"n":0}'"#;
    let sql = match backend {
        Backend::Postgres => format!(
            "INSERT INTO entities.entities (id, type, version) \
             SELECT v, 'tally', 1 FROM generate_series(1, {total}) AS v;
             INSERT INTO entities.entity_snapshots (entity_id, version, snapshot) \
             SELECT v, 1, ({snapshot})::jsonb FROM generate_series(1, {total}) AS v;
             SELECT setval(pg_get_serial_sequence('entities.entities', 'id'), {total});"
        ),
        Backend::Sqlite => format!(
            "WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s WHERE v < {total}) \
             INSERT INTO entities (id, type, version) SELECT v, 'tally', 1 FROM s;
             WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s WHERE v < {total}) \
             INSERT INTO entity_snapshots (entity_id, version, snapshot) SELECT v, 1, {snapshot} FROM s;"
        ),
    };
    let baseline = db.baseline(1).await;
    baseline.exec(sql).await;
    baseline.close().await;

    load(&runtime, 1, warm as EntityId).await;
    let rss_before = resident_bytes();
    let started = Instant::now();
    load(&runtime, warm as EntityId + 1, total as EntityId).await;
    let loads_per_second = count as f64 / started.elapsed().as_secs_f64();
    let rss_after = resident_bytes();
    assert_eq!(
        runtime.live_entities(),
        total,
        "every loaded entity is live"
    );
    let footprint = Footprint {
        live: count,
        rss_before,
        rss_after,
        bytes_per_entity: rss_after.saturating_sub(rss_before) as f64 / count as f64
            - STATE_BYTES as f64,
        loads_per_second,
    };
    println!("{}", serde_json::to_string(&footprint).expect("JSON"));
    // No shutdown: the process ends here, and a million tasks need not stop one by one.
    db.drop_database().await;
}

/// `get`s entities `first..=last` from 64 tasks.
async fn load(runtime: &Runtime, first: EntityId, last: EntityId) {
    const LOADERS: EntityId = 64;
    let mut tasks = Vec::new();
    for loader in 0..LOADERS {
        let runtime = runtime.clone();
        tasks.push(tokio::spawn(async move {
            let mut id = first + loader;
            while id <= last {
                let tally = runtime.entity::<Tally>(id).get().await.expect("load");
                assert_eq!(tally.id, id);
                id += LOADERS;
            }
        }));
    }
    for task in tasks {
        task.await.expect("loader");
    }
}

/// The resident set size: `VmRSS` of /proc/self/status (the resident pages of
/// /proc/self/statm times the page size, in kB).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
