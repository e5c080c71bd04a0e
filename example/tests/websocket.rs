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

/// A subscriber that sends nothing after subscribing, over many ping intervals, still gets
/// the change made after them (async-graphql's own keepalive, which counts only the client's
/// protocol messages, closed such a socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_only_listens_is_kept() {
    let server = server().await;
    let (_, created) = server
        .graphql(
            r#"mutation { createShoppingList(name: "kept") { id } }"#,
            &[],
        )
        .await;
    let id = created["data"]["createShoppingList"]["id"]
        .as_i64()
        .unwrap();
    let mut socket = ws::connect(&server.base, &[]).await;
    send(&mut socket, json!({ "type": "connection_init" })).await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "connection_ack");
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
    let mut socket = ws::connect(&server.base, &[]).await;
    send(&mut socket, json!({ "type": "connection_init" })).await;
    assert_eq!(next(&mut socket).await.unwrap()["type"], "connection_ack");
    // Not reading: the pings pile up unanswered.
    tokio::time::sleep(PING * 10).await;
    assert_eq!(
        next(&mut socket).await,
        Err(None),
        "dropped, with no close frame"
    );
}
