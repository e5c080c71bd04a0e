//! A WebSocket's life on the server: the server pings it, keeps it while it answers (a
//! subscriber that only listens included), and drops it when it answers nothing for two pings.

mod support;

use std::time::Duration;

use entities_runtime::Backend;
use example::server::HttpLimits;
use serde_json::json;
use support::Server;
use support::ws::{self, next, send};

const PING: Duration = Duration::from_millis(200);

async fn server() -> Server {
    Server::start_with(
        Backend::Sqlite,
        HttpLimits {
            websocket_ping: PING,
            ..HttpLimits::default()
        },
    )
    .await
}

async fn create(server: &Server, name: &str) -> i64 {
    let (_, created) = server
        .graphql(
            &format!(r#"mutation {{ createShoppingList(name: "{name}") {{ id }} }}"#),
            &[],
        )
        .await;
    created["data"]["createShoppingList"]["id"]
        .as_i64()
        .unwrap()
}

/// A subscriber that sends nothing after subscribing, over many ping intervals, still gets
/// the change made after them (async-graphql's own keepalive, which counts only the client's
/// protocol messages, closed such a socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_only_listens_is_kept() {
    let server = server().await;
    let id = create(&server, "kept").await;
    let mut socket = ws::acknowledged(&server.base).await;
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": {
            "query": format!("subscription {{ shoppingListChanged(id: {id}) {{ name }} }}")
        } }),
    )
    .await;
    // Reading answers the server's pings; count them, to know many intervals went by.
    let mut pings = 0;
    while pings < 10 {
        match tokio::time::timeout(
            Duration::from_secs(10),
            futures::StreamExt::next(&mut socket),
        )
        .await
        .expect("a ping within 10 s")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(_))) => pings += 1,
            other => panic!("only pings while nothing changes: {other:?}"),
        }
    }
    server
        .graphql(
            &format!(
                r#"mutation {{ changeShoppingListName(shoppingListId: {id}, name: "still here") {{ id }} }}"#
            ),
            &[],
        )
        .await;
    let changed = next(&mut socket).await.unwrap();
    assert_eq!(
        changed["payload"]["data"]["shoppingListChanged"]["name"], "still here",
        "{changed}"
    );
}

/// A client that stops reading (so answers no ping) is dropped after two intervals, without a
/// close frame: nobody is there to read one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_no_ping_is_dropped() {
    let server = server().await;
    let mut socket = ws::acknowledged(&server.base).await;
    // Not reading: the pings pile up unanswered.
    tokio::time::sleep(PING * 10).await;
    assert_eq!(
        next(&mut socket).await,
        Err(None),
        "dropped, with no close frame"
    );
}

/// A socket runs at most `OPERATION_LIMIT` operations at once: one more is refused with an
/// `error` message for its id, and once one completes there is room for one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_runs_a_bounded_number_of_operations_at_once() {
    let server = server().await;
    let id = create(&server, "watched").await;
    let query = format!("subscription {{ shoppingListChanged(id: {id}) {{ name }} }}");
    let subscribe = |n: usize| json!({ "id": n.to_string(), "type": "subscribe", "payload": { "query": query } });
    let mut socket = ws::acknowledged(&server.base).await;
    let limit = example::api::OPERATION_LIMIT;
    for n in 0..=limit {
        send(&mut socket, subscribe(n)).await;
    }
    let refused = next(&mut socket).await.unwrap();
    assert_eq!(
        (&refused["type"], &refused["id"]),
        (&json!("error"), &json!(limit.to_string())),
        "{refused}"
    );
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "QUERY_TOO_COMPLEX"
    );
    // One completes: the next is let in, and the one after it is refused again.
    send(&mut socket, json!({ "id": "0", "type": "complete" })).await;
    assert_eq!(
        next(&mut socket).await.unwrap(),
        json!({ "id": "0", "type": "complete" }),
        "the server confirms"
    );
    send(&mut socket, subscribe(limit + 1)).await;
    send(&mut socket, subscribe(limit + 2)).await;
    let refused = next(&mut socket).await.unwrap();
    assert_eq!(
        (&refused["type"], &refused["id"]),
        (&json!("error"), &json!((limit + 2).to_string())),
        "{refused}"
    );
    // An operation the server ends (a query: its answer, then `complete`) gives its place back.
    send(&mut socket, json!({ "id": "1", "type": "complete" })).await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "complete");
    send(
        &mut socket,
        json!({ "id": "q", "type": "subscribe", "payload": { "query": "{ shoppingLists { id } }" } }),
    )
    .await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "next");
    assert_eq!(
        next(&mut socket).await.unwrap(),
        json!({ "id": "q", "type": "complete" })
    );
    send(&mut socket, subscribe(limit + 3)).await;
    send(&mut socket, subscribe(limit + 4)).await;
    let refused = next(&mut socket).await.unwrap();
    assert_eq!(
        (&refused["type"], &refused["id"]),
        (&json!("error"), &json!((limit + 4).to_string())),
        "{refused}"
    );
}

/// A WebSocket message is bounded as a request's body is: a 100 KiB `subscribe` closes the
/// socket instead of being run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_a_request_body_closes_the_socket() {
    let server = server().await;
    let mut socket = ws::acknowledged(&server.base).await;
    let padding = "#".repeat(100 * 1024);
    let query = format!("subscription {{ shoppingListChanged(id: 1) {{ name }} }}\n{padding}");
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }),
    )
    .await;
    assert!(next(&mut socket).await.is_err(), "closed");
}
