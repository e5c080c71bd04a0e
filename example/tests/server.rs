//! The server binary as a user runs it: one log line at start naming the address, the database
//! and GraphiQL; SIGINT (Ctrl-C) and SIGTERM finish the requests in flight, snapshot the live
//! lists and exit cleanly; an open WebSocket is told goodbye (1001) first.

use std::process::Stdio;
use std::time::Duration;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Runtime, sqlx};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_logs_where_it_listens_and_shuts_down_gracefully_on_ctrl_c() {
    shuts_down_gracefully_on("INT", Backend::Sqlite).await;
}

/// Containers and systemd stop a service with SIGTERM. Here on Postgres, with a request in
/// flight when the signal comes: it is answered, then the server snapshots and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_requests_in_flight_snapshots_and_exits_cleanly() {
    shuts_down_gracefully_on("TERM", Backend::Postgres).await;
}

async fn shuts_down_gracefully_on(signal: &str, backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_example"))
        .args(["--port", "0", "--database-url", &db.url])
        .env("RUST_LOG", "info,sqlx=warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server starts");
    let mut log = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), log.next_line())
        .await
        .expect("a log line within a minute")
        .expect("readable")
        .expect("one line");
    assert!(first.contains("GraphiQL at http://127.0.0.1:"), "{first}");
    let address = first
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the address in the log line")
        .to_owned();
    if backend == Backend::Sqlite {
        assert!(
            first.contains(&format!("with database {}", db.url)),
            "{first}"
        );
    }

    let client = reqwest::Client::new();
    let post = |query: String| {
        let request = client
            .post(format!("http://{address}/api"))
            .header("content-type", "application/json")
            .body(json!({ "query": query }).to_string());
        async move {
            let response = request.send().await.expect("the server answers");
            let status = response.status().as_u16();
            (
                status,
                response.json::<serde_json::Value>().await.expect("JSON"),
            )
        }
    };
    let (_, created) = post(
        r#"mutation { createShoppingList(name: "before the signal") { id version } }"#.to_owned(),
    )
    .await;
    let id = created["data"]["createShoppingList"]["id"]
        .as_i64()
        .expect("an id");
    let page = client
        .get(format!("http://{address}/graphiql"))
        .send()
        .await
        .expect("GraphiQL");
    assert_eq!(page.status().as_u16(), 200);

    // A subscriber of the list, open when the signal comes.
    let mut subscriber = {
        let mut request = format!("ws://{address}/api").into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        tokio_tungstenite::connect_async(request).await.unwrap().0
    };
    for message in [
        json!({ "type": "connection_init" }),
        json!({ "id": "1", "type": "subscribe", "payload": {
            "query": format!("subscription {{ shoppingListChanged(id: {id}) {{ version }} }}")
        } }),
    ] {
        subscriber
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    // On Postgres: a rename held at the list's row lock, seen waiting, while the signal comes.
    let in_flight = if backend == Backend::Postgres {
        let mut blocker = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
        sqlx::query("SELECT 1 FROM entities.entities WHERE id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut blocker)
            .await
            .unwrap();
        let rename = tokio::spawn(post(format!(
            r#"mutation {{ changeShoppingListName(shoppingListId: {id}, name: "renamed in flight") {{ name version }} }}"#
        )));
        let mut watcher = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut watcher)
            .await
            .unwrap();
            if waiting == 1 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the rename never waited"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Some((blocker, rename))
    } else {
        None
    };

    let pid = server.id().expect("running").to_string();
    let signalled = tokio::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(signalled.success());
    let goodbye = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(message) = subscriber.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|frame| u16::from(frame.code)),
                Ok(_) => {}
                Err(error) => panic!("the socket failed before a close frame: {error}"),
            }
        }
        panic!("the socket ended without a close frame");
    })
    .await
    .expect("the subscriber is told within 30 s");
    assert_eq!(goodbye, Some(example::api::CLOSE_GOING_AWAY));
    let mut snapshot_version = 1;
    if let Some((mut blocker, rename)) = in_flight {
        // The shutdown has begun (logged) while the rename waits; then it is let through.
        let shutting_down = format!("SIG{signal}: shutting down");
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = log.next_line().await.unwrap() {
                if line.contains(&shutting_down) {
                    return;
                }
            }
            panic!("the log ended before `{shutting_down}`");
        })
        .await
        .expect("the shutdown logged");
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
        let (status, renamed) = rename.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            renamed["data"]["changeShoppingListName"],
            json!({ "name": "renamed in flight", "version": 2 })
        );
        snapshot_version = 2;
    }
    let status = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("the server stops within 30 s")
        .expect("exit status");
    assert!(status.success(), "exit status {status}");
    let mut rest = Vec::new();
    while let Ok(Some(line)) = log.next_line().await {
        rest.push(line);
    }
    assert!(rest.iter().any(|line| line.contains("stopped")), "{rest:?}");

    // The live list was snapshotted on the way out.
    let runtime = Runtime::builder(&db.url)
        .migrate(false)
        .build()
        .await
        .expect("reopen");
    let table = match backend {
        Backend::Postgres => "entities.entity_snapshots",
        Backend::Sqlite => "entity_snapshots",
    };
    let (snapshot,): (Option<i64>,) = runtime
        .database()
        .query(sqlx::AssertSqlSafe(format!(
            "SELECT (SELECT version FROM {table} WHERE entity_id = $1)"
        )))
        .bind(id)
        .fetch_one()
        .await
        .expect("the row");
    assert_eq!(snapshot, Some(snapshot_version));
    runtime.shutdown().await;
}

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_example"))
        .arg("--help")
        .output()
        .expect("the binary runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for (flag, env, default) in [
        ("--bind", "BIND", "127.0.0.1"),
        ("--port", "PORT", "4000"),
        (
            "--database-url",
            "DATABASE_URL",
            "sqlite://shopping_list.db",
        ),
        ("--idle-timeout", "IDLE_TIMEOUT", "60"),
        ("--auth", "AUTH", "open"),
        ("--db-acquire-timeout", "DB_ACQUIRE_TIMEOUT", "2"),
        ("--header-timeout", "HEADER_TIMEOUT", "10"),
        ("--body-timeout", "BODY_TIMEOUT", "10"),
        ("--request-timeout", "REQUEST_TIMEOUT", "30"),
        ("--write-timeout", "WRITE_TIMEOUT", "10"),
        ("--websocket-ping", "WEBSOCKET_PING", "30"),
        ("--max-connections", "MAX_CONNECTIONS", "512"),
        ("--shutdown-grace", "SHUTDOWN_GRACE", "10"),
    ] {
        // Each option's entry: its flag's line, then its description with env and default.
        let entry = help
            .lines()
            .skip_while(|line| !line.trim_start().starts_with(&format!("{flag} <")))
            .nth(1)
            .unwrap_or_else(|| panic!("{flag} in:\n{help}"));
        assert!(entry.contains(&format!("[env: {env}")), "{env} in {entry}");
        assert!(
            entry.contains(&format!("[default: {default}]")),
            "{default} in {entry}"
        );
    }
}
