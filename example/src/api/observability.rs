//! What operators look at: `GET /metrics` in Prometheus's text format (the runtime's metrics
//! through the `metrics` facade, its totals, the pool's connections, and HTTP requests by status
//! and code), `GET /health/live` (the process answers) and `GET /health/ready` (and the database
//! answers too: take it out of a load balancer otherwise).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use entities_runtime::Runtime;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use super::error::Code;

/// The `extensions.code` a response carries (its first error's), for the request counter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseCode(pub Code);

/// Latency buckets, in seconds: 0.5 ms to 10 s.
const SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_SIZES: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// The process's Prometheus recorder, installed at first use.
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("seconds".into()), &SECONDS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full("entities_batch_actions".into()),
                    &BATCH_SIZES,
                )
            })
            .expect("buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed: /metrics shows nothing");
        }
        handle
    })
}

/// Installs the recorder now, so that what happens before the first scrape is counted.
pub fn install() {
    recorder();
}

/// `GET /metrics`.
pub(super) async fn metrics(Extension(runtime): Extension<Runtime>) -> Response {
    let totals = runtime.metrics();
    for (name, value) in [
        ("entities_db_transactions_total", totals.transactions),
        ("entities_actions_committed_total", totals.actions_committed),
        ("entities_commits_failed_total", totals.commits_failed),
        ("entities_conflicts_total", totals.conflicts),
        ("entities_deadlocks_total", totals.deadlocks),
        ("entities_loads_total", totals.loads),
        ("entities_catch_ups_total", totals.catch_ups),
        ("entities_passivations_total", totals.passivations),
        ("entities_snapshots_saved_total", totals.snapshots_saved),
        (
            "entities_idempotent_replays_total",
            totals.idempotent_replays,
        ),
        ("entities_follow_resyncs_total", totals.follow_resyncs),
        (
            "entities_notifications_sent_total",
            totals.notifications_sent,
        ),
        (
            "entities_subscription_events_total",
            totals.subscription_events,
        ),
        (
            "entities_subscription_failures_total",
            totals.subscription_failures,
        ),
    ] {
        metrics::counter!(name).absolute(value);
    }
    metrics::gauge!("entities_live_entities").set(runtime.live_entities() as f64);
    metrics::gauge!("entities_chains_waiting").set(totals.chains_waiting as f64);
    metrics::gauge!("entities_runtimes_listening").set(totals.runtimes_listening as f64);
    let pool = runtime.database().connections();
    metrics::gauge!("entities_pool_connections", "state" => "in_use").set(pool.in_use());
    metrics::gauge!("entities_pool_connections", "state" => "idle").set(pool.idle);
    metrics::gauge!("entities_pool_connections_max").set(pool.max);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        recorder().render(),
    )
        .into_response()
}

/// `GET /health/live`: the process serves.
pub(super) async fn live() -> Response {
    axum::Json(json!({ "status": "live" })).into_response()
}

/// How long readiness waits for the database.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// `GET /health/ready`: the database answers a query; else 503.
pub(super) async fn ready(Extension(runtime): Extension<Runtime>) -> Response {
    let started = Instant::now();
    let answered = tokio::time::timeout(
        READY_WITHIN,
        runtime
            .database()
            .query("SELECT CAST(1 AS BIGINT)")
            .fetch_one::<(i64,)>(),
    )
    .await;
    match answered {
        Ok(Ok(_)) => axum::Json(json!({
            "status": "ready",
            "database_ms": started.elapsed().as_secs_f64() * 1000.0,
        }))
        .into_response(),
        Ok(Err(error)) => unready(error.to_string()),
        Err(_) => unready(format!("no answer within {} s", READY_WITHIN.as_secs())),
    }
}

fn unready(reason: String) -> Response {
    tracing::warn!(reason, "not ready: the database does not answer");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "status": "unavailable", "reason": reason })),
    )
        .into_response()
}

/// Counts every request by its status and code: `http_requests_total{status, code}`.
pub(super) async fn count_requests(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let code = response
        .extensions()
        .get::<ResponseCode>()
        .map_or("none", |ResponseCode(code)| code.as_str());
    metrics::counter!(
        "http_requests_total",
        "status" => response.status().as_str().to_owned(),
        "code" => code,
    )
    .increment(1);
    response
}
