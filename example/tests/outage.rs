//! The database away: requests fail fast with `UNAVAILABLE` (HTTP 503, `Retry-After`) within
//! the pool's acquire timeout, lists in memory still answer reads, and once the database is back
//! the same server serves again, with no restart. On a PostgreSQL server of the test's own,
//! stopped and started by it. And a commit whose answer is lost: `UNKNOWN_OUTCOME`, then the
//! same request with its `Idempotency-Key` applies it exactly once.

mod support;

use std::time::{Duration, Instant};

use entities_runtime::Runtime;
use entities_runtime::testing::{CommitCutter, TestDatabase};
use example::MIGRATIONS;
use serde_json::{Value, json};
use support::Server;
use support::cluster::Cluster;

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

async fn post(server: &Server, query: &str) -> (u16, Option<String>, Value) {
    post_with(server, query, &[]).await
}

async fn post_with(
    server: &Server,
    query: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let response = server
        .post_raw(json!({ "query": query }).to_string(), headers)
        .await;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_away_requests_fail_fast_and_recover_without_a_restart() {
    let cluster = Cluster::start();
    let runtime = Runtime::builder(cluster.url())
        .migrations(MIGRATIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .build()
        .await
        .unwrap();
    let server = Server::over(runtime, &cluster.url()).await;
    let (_, _, created) = post(
        &server,
        r#"mutation { createShoppingList(name: "before") { id } }"#,
    )
    .await;
    let id = created["data"]["createShoppingList"]["id"]
        .as_i64()
        .unwrap();

    cluster.stop();
    let started = Instant::now();
    let (status, retry_after, body) = post(
        &server,
        &format!(
            r#"mutation {{ addItem(shoppingListId: {id}, name: "milk", quantity: 1) {{ id }} }}"#
        ),
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAVAILABLE",
        "{body}"
    );
    // Fail fast: the acquire timeout and a margin for a loaded machine, not the 30 s of before.
    assert!(
        waited < ACQUIRE_TIMEOUT + Duration::from_secs(5),
        "answered after {waited:?}"
    );
    let (status, _, body) = post(
        &server,
        r#"mutation { createShoppingList(name: "during") { id } }"#,
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAVAILABLE",
        "{body}"
    );
    // Not ready while the database is away; alive all the same.
    let ready = server.get("/health/ready").await;
    assert_eq!(ready.status().as_u16(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "unavailable", "{ready}");
    let live = server.get("/health/live").await;
    assert_eq!(live.status().as_u16(), 200);
    // The list in memory still answers.
    let (status, _, body) =
        post(&server, &format!("{{ shoppingList(id: {id}) {{ name }} }}")).await;
    assert_eq!(
        (status, &body["data"]["shoppingList"]["name"]),
        (200, &json!("before"))
    );

    cluster.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    let added = loop {
        let (status, _, body) = post(
            &server,
            &format!(r#"mutation {{ addItem(shoppingListId: {id}, name: "milk", quantity: 1) {{ version }} }}"#),
        )
        .await;
        if status == 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "not back after 30 s: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        added["data"]["addItem"]["version"], 2,
        "nothing was applied during the outage"
    );
    let ready = server.get("/health/ready").await;
    assert_eq!(ready.status().as_u16(), 200, "ready again");
    server.runtime.shutdown().await;
}

/// Postgres commits a rename and its answer is lost on the way (a proxy drops it and closes the
/// connection): the client hears `UNKNOWN_OUTCOME` (503, `Retry-After`), not a failure; the
/// same request with the same `Idempotency-Key` then answers with the committed rename, and the
/// list holds one rename, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_unknown_outcome_and_its_retry_applies_it_once() {
    let db = TestDatabase::postgres().await;
    let proxy = CommitCutter::start(&db.url).await;
    let runtime = Runtime::builder(&proxy.url)
        .migrations(MIGRATIONS)
        .build()
        .await
        .unwrap();
    let server = Server::over(runtime, &proxy.url).await;
    let (_, _, created) = post(
        &server,
        r#"mutation { createShoppingList(name: "before") { id } }"#,
    )
    .await;
    let id = created["data"]["createShoppingList"]["id"]
        .as_i64()
        .unwrap();
    let rename = format!(
        r#"mutation {{ changeShoppingListName(shoppingListId: {id}, name: "answer lost") {{ name version }} }}"#
    );
    let key = [("idempotency-key", "rename-1")];

    proxy.arm_for("answer lost");
    let (status, retry_after, body) = post_with(&server, &rename, &key).await;
    assert_eq!(
        proxy.cuts(),
        1,
        "the answer to the rename's COMMIT was lost"
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNKNOWN_OUTCOME",
        "{body}"
    );
    assert!(body["data"].is_null() || body["data"]["changeShoppingListName"].is_null());

    let (status, _, again) = post_with(&server, &rename, &key).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["data"]["changeShoppingListName"],
        json!({ "name": "answer lost", "version": 2 })
    );
    let (_, _, history) = post(
        &server,
        &format!("{{ shoppingListHistory(id: {id}) {{ version type }} }}"),
    )
    .await;
    assert_eq!(
        history["data"]["shoppingListHistory"],
        json!([
            { "version": 1, "type": "ShoppingListCreated" },
            { "version": 2, "type": "NameChanged" },
        ]),
        "one rename stored"
    );
    server.runtime.shutdown().await;
}

/// Connections the server closed while they sat idle in the pool (a restart, a failover, a
/// proxy's idle timeout) are replaced as they are taken: the next requests succeed, none fails
/// on a dead connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_the_server_closed_are_replaced_without_a_failed_request() {
    let db = TestDatabase::postgres().await;
    let runtime = Runtime::builder(&db.url)
        .migrations(MIGRATIONS)
        .build()
        .await
        .unwrap();
    let server = Server::over(runtime, &db.url).await;
    let read = "{ shoppingLists { id } }";
    // Several at once, so that the pool holds several connections, idle afterwards.
    let reads: Vec<_> = (0..4)
        .map(|_| post(&server, read))
        .collect::<futures::future::JoinAll<_>>()
        .await;
    assert!(reads.iter().all(|(status, _, _)| *status == 200));
    let idle = server.runtime.database().connections().idle;
    assert!(idle >= 1, "idle connections in the pool");

    let mut admin = sqlx_connect(&db.url).await;
    let (terminated,): (i64,) = entities_runtime::sqlx::query_as(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND state = 'idle' AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(
        terminated >= i64::from(idle),
        "the pool's idle connections were closed: {terminated}"
    );
    for _ in 0..idle + 1 {
        let (status, _, body) = post(&server, read).await;
        assert_eq!(status, 200, "{body}");
    }
    server.runtime.shutdown().await;
}

async fn sqlx_connect(url: &str) -> entities_runtime::sqlx::PgConnection {
    use entities_runtime::sqlx::Connection;
    entities_runtime::sqlx::PgConnection::connect(url)
        .await
        .unwrap()
}
