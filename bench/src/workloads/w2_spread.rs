//! W2, spread: `entities` lists x `actions` AddItems from `clients` concurrent clients, each
//! client working through its share of the lists in turn. Runtime and baseline each on a pool
//! of [`pool_size`]`(clients)` connections, on a fresh database; on Postgres at 1 and 32
//! clients, pgbench after them on the same lists (see [`crate::pgbench`]).

use entities_runtime::Backend;

use super::{
    Driven, create_baseline_lists, create_lists, drive_baseline, drive_runtime, pool_size,
};
use crate::db::BenchDb;
use crate::pgbench::{self, PgbenchRates};
use crate::workloads::Sizes;

/// The client counts at which pgbench runs too: the issue's.
pub const PGBENCH_CLIENTS: [usize; 2] = [1, 32];

pub struct W2 {
    pub runtime: Driven,
    pub baseline: Driven,
    pub pgbench: Option<PgbenchRates>,
}

pub async fn run(backend: Backend, sizes: &Sizes, clients: usize) -> W2 {
    let db = BenchDb::new(backend).await;
    let pool = pool_size(clients);

    let runtime = db.runtime(pool).await;
    let ids = create_lists(&runtime, sizes.w2_entities, "w2").await;
    let ours = drive_runtime(&runtime, &ids, sizes.w2_actions, clients, None, None).await;
    assert_eq!(ours.actions, sizes.w2_entities * sizes.w2_actions);
    runtime.shutdown().await;

    let baseline = db.baseline(pool).await;
    let lists = create_baseline_lists(&baseline, sizes.w2_entities, "w2 baseline").await;
    let theirs = drive_baseline(&baseline, lists, sizes.w2_actions, clients, None).await;
    let pgbench = if backend == Backend::Postgres && PGBENCH_CLIENTS.contains(&clients) {
        baseline.exec(pgbench::CEILING_TABLE.to_owned()).await;
        let first = baseline
            .scalar("SELECT min(id) FROM entities.entities")
            .await;
        let last = baseline
            .scalar("SELECT max(id) FROM entities.entities")
            .await;
        let count = baseline
            .scalar("SELECT count(*) FROM entities.entities")
            .await;
        let (first, last) = first.zip(last).expect("lists");
        assert_eq!(count, Some(last - first + 1), "list ids without gaps");
        let actions = sizes.w2_entities * sizes.w2_actions;
        Some(pgbench::measure(&db.url, (first, last), clients, actions).await)
    } else {
        None
    };
    baseline.close().await;
    db.drop_database().await;
    W2 {
        runtime: ours,
        baseline: theirs,
        pgbench,
    }
}
