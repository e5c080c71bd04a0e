//! What follows the event log in the example: `shoppingListChanged` over a WebSocket (also for
//! writes made through another server process), `popularItems` kept by a projector and rebuilt
//! by `example rebuild popular-items`, and the outbox of renamed lists (at least once, no
//! duplicate rows).

mod support;

use std::process::Stdio;
use std::time::Duration;

use entities_runtime::testing::{TestDatabase, on_both_backends};
use entities_runtime::{Backend, LogPosition, Logged};
use example::ShoppingList;
use futures::StreamExt;
use serde_json::{Value, json};
use support::Server;
use support::ws::{self, Socket, send};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

on_both_backends!(
    a_websocket_client_gets_each_change_made_through_another_server_process,
    popular_items_follow_the_lists_and_survive_a_rebuild_while_the_server_runs,
    a_rename_writes_one_outbox_row_however_often_it_is_delivered,
);

/// A server binary on `url`, its address read from its first log line.
struct Process {
    child: tokio::process::Child,
    base: String,
}

impl Process {
    async fn start(url: &str) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_example"))
            .args(["--port", "0", "--database-url", url])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the server starts");
        let mut log = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let line = log.next_line().await.expect("readable").expect("a line");
                if line.contains("listening on") {
                    return line;
                }
            }
        })
        .await
        .expect("the line naming the address within a minute");
        let address = first
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("the address in {first}"))
            .to_owned();
        // Keep reading, so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
        Self {
            child,
            base: format!("http://{address}"),
        }
    }

    async fn graphql(&self, query: &str) -> Value {
        reqwest::Client::new()
            .post(format!("{}/api", self.base))
            .header("content-type", "application/json")
            .body(json!({ "query": query }).to_string())
            .send()
            .await
            .expect("the server answers")
            .json()
            .await
            .expect("JSON")
    }
}

/// A `graphql-transport-ws` client at `base`'s `/api`, subscribed to `query`.
async fn subscribe(base: &str, query: &str) -> Socket {
    let mut socket = ws::connect(base, &[]).await;
    send(&mut socket, json!({ "type": "connection_init" })).await;
    assert_eq!(
        receive(&mut socket, Duration::from_secs(10)).await.unwrap()["type"],
        "connection_ack"
    );
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }),
    )
    .await;
    socket
}

/// The next JSON message within `wait`, answering pings; `None` if none came.
async fn receive(socket: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()?;
        match message.expect("the socket stays open").expect("a message") {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                if value["type"] == "ping" {
                    send(socket, json!({ "type": "pong" })).await;
                    continue;
                }
                return Some(value);
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The list of a `next` message of subscription 1.
fn changed(message: &Value) -> &Value {
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(message["id"], "1");
    &message["payload"]["data"]["shoppingListChanged"]
}

/// Server 1 serves the subscription; every write goes through server 2, another process on the
/// same database. Until the subscription is in place, the test renames through server 2 and
/// waits a little for a message; from the first message on, every change arrives, once, in
/// version order.
async fn a_websocket_client_gets_each_change_made_through_another_server_process(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let one = Process::start(&db.url).await;
    let two = Process::start(&db.url).await;
    let created = two
        .graphql(r#"mutation { createShoppingList(name: "party") { id } }"#)
        .await;
    let id = created["data"]["createShoppingList"]["id"]
        .as_i64()
        .unwrap();
    let mut socket = subscribe(
        &one.base,
        &format!("subscription {{ shoppingListChanged(id: {id}) {{ id name version items {{ name quantity }} }} }}"),
    )
    .await;
    let mut first = None;
    for attempt in 0..50 {
        let renamed = two
            .graphql(&format!(
                r#"mutation {{ changeShoppingListName(shoppingListId: {id}, name: "party {attempt}") {{ version }} }}"#
            ))
            .await;
        assert!(renamed["errors"].is_null(), "{renamed}");
        if let Some(message) = receive(&mut socket, Duration::from_millis(200)).await {
            first = Some(message);
            break;
        }
    }
    let first = first.expect("the subscription got a change within 50 renames");
    let mut version = changed(&first)["version"].as_i64().unwrap();
    // Anything of the attempts still on its way comes first, in order.
    let last_rename: Value = two
        .graphql(&format!("{{ shoppingList(id: {id}) {{ version }} }}"))
        .await;
    let renamed_to = last_rename["data"]["shoppingList"]["version"]
        .as_i64()
        .unwrap();
    while version < renamed_to {
        let message = receive(&mut socket, Duration::from_secs(10))
            .await
            .expect("the next rename");
        let next = changed(&message)["version"].as_i64().unwrap();
        assert_eq!(next, version + 1, "in version order, none skipped");
        version = next;
    }
    for (name, quantity) in [("cups", 20), ("cake", 1)] {
        let added = two
            .graphql(&format!(
                r#"mutation {{ addItem(shoppingListId: {id}, name: "{name}", quantity: {quantity}) {{ version }} }}"#
            ))
            .await;
        assert!(added["errors"].is_null(), "{added}");
    }
    let renamed = two
        .graphql(&format!(
            r#"mutation {{ changeShoppingListName(shoppingListId: {id}, name: "birthday") {{ version }} }}"#
        ))
        .await;
    assert!(renamed["errors"].is_null(), "{renamed}");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let message = receive(&mut socket, Duration::from_secs(10))
            .await
            .expect("a change");
        seen.push(changed(&message).clone());
    }
    assert_eq!(
        seen,
        [
            json!({ "id": id, "name": format!("party {}", renamed_to - 2), "version": version + 1,
                    "items": [{ "name": "cups", "quantity": 20 }] }),
            json!({ "id": id, "name": format!("party {}", renamed_to - 2), "version": version + 2,
                    "items": [{ "name": "cups", "quantity": 20 }, { "name": "cake", "quantity": 1 }] }),
            json!({ "id": id, "name": "birthday", "version": version + 3,
                    "items": [{ "name": "cups", "quantity": 20 }, { "name": "cake", "quantity": 1 }] }),
        ]
    );
    // A list that does not exist: an error, and the subscription is complete.
    send(
        &mut socket,
        json!({ "id": "2", "type": "subscribe", "payload": { "query": "subscription { shoppingListChanged(id: 999999) { id } }" } }),
    )
    .await;
    let error = receive(&mut socket, Duration::from_secs(10)).await.unwrap();
    assert_eq!(error["id"], "2");
    assert_eq!(error["type"], "next", "{error}");
    assert_eq!(
        error["payload"]["errors"][0]["extensions"]["code"],
        "NOT_FOUND"
    );
    drop((one.child, two.child));
}

/// Waits until `popularItems` answers `expected`; panics after 10 s.
async fn popular_until(server: &Server, query: &str, expected: Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = server.graphql(query, &[]).await;
        if body["data"]["popularItems"] == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "popularItems is {body}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn popular_items_follow_the_lists_and_survive_a_rebuild_while_the_server_runs(
    backend: Backend,
) {
    let server = Server::start(backend).await;
    let mut lists = Vec::new();
    for name in ["a", "b", "c"] {
        let (_, body) = server
            .graphql(
                &format!(r#"mutation {{ createShoppingList(name: "{name}") {{ id }} }}"#),
                &[],
            )
            .await;
        lists.push(body["data"]["createShoppingList"]["id"].as_i64().unwrap());
    }
    let add = |list: i64, name: &str| {
        format!(
            r#"mutation {{ addItem(shoppingListId: {list}, name: "{name}", quantity: 1) {{ items {{ id name }} }} }}"#
        )
    };
    for &list in &lists {
        server.graphql(&add(list, "milk"), &[]).await;
    }
    // Twice on one list counts once.
    server.graphql(&add(lists[0], "eggs"), &[]).await;
    let (_, body) = server.graphql(&add(lists[0], "eggs"), &[]).await;
    let eggs = body["data"]["addItem"]["items"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.graphql(&add(lists[1], "bread"), &[]).await;
    // Moved: off one list, onto another.
    let moved = server
        .graphql(
            &format!(r#"mutation {{ moveItem(fromListId: {}, toListId: {}, itemId: "{eggs}") {{ to {{ version }} }} }}"#, lists[0], lists[2]),
            &[],
        )
        .await;
    assert!(moved.1["errors"].is_null(), "{}", moved.1);
    let query = "{ popularItems { name lists } }";
    let expected = json!([
        { "name": "milk", "lists": 3 },
        { "name": "eggs", "lists": 2 },
        { "name": "bread", "lists": 1 },
    ]);
    popular_until(&server, query, expected.clone()).await;
    popular_until(
        &server,
        "{ popularItems(limit: 1) { name lists } }",
        json!([{ "name": "milk", "lists": 3 }]),
    )
    .await;
    let (status, code, message) = server.error("{ popularItems(limit: 0) { name } }").await;
    assert_eq!((status, code.as_str()), (200, "VALIDATION"), "{message}");

    // The read model damaged by hand, then rebuilt by the command while the server runs (and
    // runs the projector: it does the replay, the command waits for it).
    server
        .runtime
        .database()
        .execute_script("UPDATE popular_items SET lists = 99")
        .await
        .unwrap();
    let rebuild = tokio::process::Command::new(env!("CARGO_BIN_EXE_example"))
        .args([
            "--database-url",
            server.database_url(),
            "rebuild",
            "popular-items",
        ])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("the command runs");
    assert!(
        rebuild.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuild.stderr)
    );
    let (_, body) = server.graphql(query, &[]).await;
    assert_eq!(
        body["data"]["popularItems"], expected,
        "rebuilt before the command ended"
    );
    let progress = server.streams.popular_items.progress().await.unwrap();
    assert_eq!(progress.error, None);
    let unknown = tokio::process::Command::new(env!("CARGO_BIN_EXE_example"))
        .args([
            "--database-url",
            server.database_url(),
            "rebuild",
            "no-such-model",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(
        unknown.status.code(),
        Some(2),
        "an unknown read model is a usage error"
    );
}

async fn a_rename_writes_one_outbox_row_however_often_it_is_delivered(backend: Backend) {
    let server = Server::start(backend).await;
    let (_, body) = server
        .graphql(
            r#"mutation { createShoppingList(name: "old") { id } }"#,
            &[],
        )
        .await;
    let id = body["data"]["createShoppingList"]["id"].as_i64().unwrap();
    for name in ["new", "newer"] {
        server
            .graphql(&format!(r#"mutation {{ changeShoppingListName(shoppingListId: {id}, name: "{name}") {{ version }} }}"#), &[])
            .await;
    }
    let rows = || async {
        let rows: Vec<(i64, String, String)> = server
            .runtime
            .database()
            .query(
                "SELECT list_id, name, renamed_by FROM renamed_lists_outbox ORDER BY log_position",
            )
            .fetch_all()
            .await
            .unwrap();
        rows
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rows().await.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the outbox rows");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        rows().await,
        [
            (id, "new".to_owned(), "anonymous".to_owned()),
            (id, "newer".to_owned(), "anonymous".to_owned())
        ]
    );
    // Delivered again (as after a crash before the checkpoint moved): no second row.
    let events = server
        .runtime
        .read_log::<Logged<ShoppingList>>(LogPosition::START, 100)
        .await
        .unwrap();
    for event in events {
        example::outbox::handle(server.runtime.database(), event)
            .await
            .unwrap();
    }
    assert_eq!(rows().await.len(), 2);
}
