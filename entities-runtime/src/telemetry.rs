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
//!   answer of `COMMIT`; `entities_batch_actions`: how many actions it held.
//!
//! [`Runtime::metrics`](crate::Runtime::metrics) keeps the totals besides, whatever the exporter.

use std::time::Instant;

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
