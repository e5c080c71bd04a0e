//! `GET /metrics` in Prometheus's text format, counting what the requests did, and the health
//! checks. (The database going away, and readiness with it, is in `outage.rs`.)

mod support;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Runtime};
use example::MIGRATIONS;
use serde_json::{Value, json};
use support::{Server, on_both_backends};

on_both_backends!(
    metrics_count_calls_by_outcome_and_requests_by_status_and_code,
    health_checks_answer
);

async fn scrape(server: &Server) -> String {
    let response = server.get("/metrics").await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text().await.unwrap()
}

/// The value of the sample of `name` whose labels include every one of `labels`; 0 if none.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name && labels.iter().all(|label| rest.contains(label))
        })
        .map(|(_, value)| value.parse::<f64>().unwrap())
        .sum()
}

async fn metrics_count_calls_by_outcome_and_requests_by_status_and_code(backend: Backend) {
    let server = Server::start(backend).await;
    let before = scrape(&server).await;
    let (_, created) = server
        .graphql(
            r#"mutation { createShoppingList(name: "counted") { id } }"#,
            &[],
        )
        .await;
    let id = created["data"]["createShoppingList"]["id"]
        .as_i64()
        .unwrap();
    for quantity in [1, 0] {
        server
            .graphql(
                &format!(r#"mutation {{ addItem(shoppingListId: {id}, name: "x", quantity: {quantity}) {{ id }} }}"#),
                &[],
            )
            .await;
    }
    let bad = server.post_raw("not json", &[]).await;
    assert_eq!(bad.status().as_u16(), 400);
    let after = scrape(&server).await;
    let delta =
        |name: &str, labels: &[&str]| sample(&after, name, labels) - sample(&before, name, labels);
    let list = r#"entity_type="shopping_list""#;
    assert_eq!(
        delta("entities_calls_total", &[list, r#"outcome="ok""#]),
        2.0,
        "{after}"
    );
    assert_eq!(
        delta("entities_calls_total", &[list, r#"outcome="rejected""#]),
        1.0
    );
    assert_eq!(delta("entities_call_duration_seconds_count", &[list]), 3.0);
    assert!(delta("entities_commit_duration_seconds_count", &[]) >= 2.0);
    assert!(delta("entities_batch_actions_sum", &[]) >= 2.0);
    assert_eq!(
        delta(
            "http_requests_total",
            &[r#"status="200""#, r#"code="none""#]
        ),
        3.0,
        "the first scrape (counted once answered), the create and the first add"
    );
    assert_eq!(
        delta(
            "http_requests_total",
            &[r#"status="200""#, r#"code="VALIDATION""#]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "http_requests_total",
            &[r#"status="400""#, r#"code="BAD_REQUEST""#]
        ),
        1.0
    );
    assert_eq!(sample(&after, "entities_live_entities", &[]), 1.0);
    assert!(after.contains("entities_pool_connections{state=\"in_use\"}"));
    assert!(after.contains("entities_pool_connections{state=\"idle\"}"));
    assert!(sample(&after, "entities_pool_connections_max", &[]) >= 1.0);
    assert!(sample(&after, "entities_actions_committed_total", &[]) >= 2.0);
}

/// A request that finds no idle connection in the pool is counted in `entities_pool_waiting`
/// while it waits, and no longer once it has one. On Postgres, whose subscriptions (the
/// example's projector and outbox) read on connections of their own, so only the request waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_a_pooled_connection_are_counted() {
    let db = TestDatabase::postgres().await;
    let runtime = Runtime::builder(&db.url)
        .migrations(MIGRATIONS)
        .max_connections(1)
        .build()
        .await
        .unwrap();
    let server = Server::over(runtime, &db.url).await;
    let held = server.runtime.database().acquire().await.unwrap();
    let request = tokio::spawn({
        let (client, base) = (server.client.clone(), server.base.clone());
        async move {
            client
                .post(format!("{base}/api"))
                .header("content-type", "application/json")
                .body(json!({ "query": "{ shoppingLists { id } }" }).to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while sample(&scrape(&server).await, "entities_pool_waiting", &[]) != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never counted as waiting"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(held);
    assert_eq!(request.await.unwrap(), 200);
    assert_eq!(
        sample(&scrape(&server).await, "entities_pool_waiting", &[]),
        0.0
    );
    server.runtime.shutdown().await;
}

async fn health_checks_answer(backend: Backend) {
    let server = Server::start(backend).await;
    for (path, status) in [("/health/live", "live"), ("/health/ready", "ready")] {
        let response = server.get(path).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], json!(status), "{path}: {body}");
    }
}
