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
//! - `entities_pool_waiting`: the runtime's statements and transactions waiting for a pooled
//!   connection now (none idle: the pool is at its size, or opening one), over every runtime of
//!   the process. A pool that keeps callers waiting is too small, or the database is away.
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

/// A connection of `pool`: an idle one at once, else counted in `entities_pool_waiting` while
/// it waits.
pub(crate) async fn connection<DB: Database>(
    pool: &Pool<DB>,
) -> Result<PoolConnection<DB>, sqlx::Error> {
    match pool.try_acquire() {
        Some(connection) => Ok(connection),
        None => waiting(pool.acquire()).await,
    }
}

/// A transaction begun with `statement` on a connection of `pool`, counted as [`connection`]
/// is while no connection is idle.
pub(crate) async fn transaction<DB: Database>(
    pool: &Pool<DB>,
    statement: &'static str,
) -> Result<Transaction<'static, DB>, sqlx::Error> {
    match pool.try_begin_with(statement).await? {
        Some(transaction) => Ok(transaction),
        None => waiting(pool.begin_with(statement)).await,
    }
}

/// Runs `wait`, counted in `entities_pool_waiting` until it ends or is dropped.
async fn waiting<T>(wait: impl Future<Output = T>) -> T {
    struct Waiting;
    impl Drop for Waiting {
        fn drop(&mut self) {
            metrics::gauge!(POOL_WAITING).decrement(1.0);
        }
    }
    metrics::gauge!(POOL_WAITING).increment(1.0);
    let _waiting = Waiting;
    wait.await
}
