//! What the runtime reports through the `metrics` facade, for whatever exporter the application
//! installs (none: nothing is recorded). Names follow Prometheus's conventions:
//!
//! - `entities_calls_total{entity_type, outcome}`: answered calls (`send_action`,
//!   `send_actions`, creates), by outcome: `ok`, `rejected`, `conflict`, `not_found`,
//!   `storage`, `outcome_unknown`... (see `Error`);
//! - `entities_call_duration_seconds{entity_type}`: from the call's queueing to its answer;
//! - `entities_transactions_total{outcome}` and `entities_transaction_duration_seconds`:
//!   `Runtime::transaction` runs over several entities;
//! - `entities_commit_duration_seconds`: one batch's database transaction, `BEGIN` to the
//!   answer of `COMMIT`; `entities_batch_actions`: how many actions it held;
//! - `entities_pool_waiting`: calls' statements and transactions (loads, reads, commits,
//!   creates, log reads, [`Database`](crate::Database)'s) waiting now for a pooled connection
//!   that was not idle when asked for (the pool at its size, or opening one), over every
//!   runtime of the process; a transaction's wait includes its `BEGIN` (on SQLite, `BEGIN
//!   IMMEDIATE` waiting for the write lock). A pool that keeps callers waiting is too small, or
//!   the database is away. Subscriptions' own connections are not counted.
//!
//! [`Runtime::metrics`](crate::Runtime::metrics) keeps the totals besides, whatever the exporter.

use std::future::Future;
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool, Transaction};

const POOL_WAITING: &str = "entities_pool_waiting";

pub(crate) fn call_answered(entity_type: &'static str, outcome: &'static str, started: Instant) {
    metrics::counter!("entities_calls_total", "entity_type" => entity_type, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("entities_call_duration_seconds", "entity_type" => entity_type)
        .record(started.elapsed());
}

pub(crate) fn transaction_answered(outcome: &'static str, started: Instant) {
    metrics::counter!("entities_transactions_total", "outcome" => outcome).increment(1);
    metrics::histogram!("entities_transaction_duration_seconds").record(started.elapsed());
}

pub(crate) fn batch_written(actions: usize, started: Instant) {
    metrics::histogram!("entities_commit_duration_seconds").record(started.elapsed());
    metrics::histogram!("entities_batch_actions").record(actions as f64);
}

/// A connection of `pool`, counted in `entities_pool_waiting` while it waits when none was
/// idle. Always sqlx's `acquire`, so its check of an idle connection (`test_before_acquire`)
/// still replaces one the server closed; whether one is idle is only read, racily, to count.
pub(crate) async fn connection<DB: Database>(
    pool: &Pool<DB>,
) -> Result<PoolConnection<DB>, sqlx::Error> {
    counted(pool, pool.acquire()).await
}

/// A transaction begun with `statement` on a connection of `pool`, counted as [`connection`]
/// is (its `BEGIN` within the count: sqlx begins a `'static` transaction only from the pool).
pub(crate) async fn transaction<DB: Database>(
    pool: &Pool<DB>,
    statement: &'static str,
) -> Result<Transaction<'static, DB>, sqlx::Error> {
    counted(pool, pool.begin_with(statement)).await
}

/// Runs `wait`, counted in `entities_pool_waiting` until it ends or is dropped when `pool` has
/// no idle connection now.
async fn counted<DB: Database, T>(pool: &Pool<DB>, wait: impl Future<Output = T>) -> T {
    if pool.num_idle() > 0 {
        return wait.await;
    }
    /// Holds the gauge it raised, so that it lowers the same one.
    struct Waiting(metrics::Gauge);
    impl Drop for Waiting {
        fn drop(&mut self) {
            self.0.decrement(1.0);
        }
    }
    let gauge = metrics::gauge!(POOL_WAITING);
    gauge.increment(1.0);
    let _waiting = Waiting(gauge);
    wait.await
}
