//! Crash consistency of the real server binary: clients write while the server is killed with
//! SIGKILL at random moments and started again, a few times. Afterwards every acknowledged
//! action is stored exactly once, none more than once, and the read model equals what the
//! events say. Short enough for CI: three kills per backend.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Runtime};
use example::{MIGRATIONS, ShoppingList, read_model};
use serde_json::{Value, json};
use support::on_both_backends;
use tokio::io::{AsyncBufReadExt, BufReader};

on_both_backends!(acknowledged_actions_survive_kill_9_exactly_once);

const CLIENTS: usize = 4;
const KILLS: usize = 3;

/// A number in `0..bound` from the system's randomness.
fn random(bound: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(bound)) as u64
}

#[derive(Clone)]
struct Clients {
    /// The server's base URL now; empty while it is down.
    base: Arc<Mutex<String>>,
    /// Item names whose `addItem` was answered with data: acknowledged.
    acknowledged: Arc<Mutex<BTreeSet<String>>>,
    /// Every item name sent.
    sent: Arc<Mutex<BTreeSet<String>>>,
}

async fn write_until(clients: &Clients, lists: &[i64], stop: Arc<tokio::sync::Notify>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for (client, &list) in lists.iter().enumerate() {
        let (base, acknowledged, sent, http, stop) = (
            clients.base.clone(),
            clients.acknowledged.clone(),
            clients.sent.clone(),
            http.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            loop {
                let base = base.lock().unwrap().clone();
                if base.is_empty() {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(5)) => continue,
                        () = stop.notified() => return,
                    }
                }
                n += 1;
                let name = format!("c{client}-{n}");
                sent.lock().unwrap().insert(name.clone());
                let query = format!(
                    r#"mutation {{ addItem(shoppingListId: {list}, name: "{name}", quantity: 1) {{ version }} }}"#
                );
                let answer = http
                    .post(format!("{base}/api"))
                    .header("content-type", "application/json")
                    .body(json!({ "query": query }).to_string())
                    .send();
                let answered = tokio::select! {
                    answered = answer => answered,
                    () = stop.notified() => return,
                };
                if let Ok(response) = answered
                    && let Ok(body) = response.json::<Value>().await
                    && body["data"]["addItem"]["version"].is_i64()
                {
                    acknowledged.lock().unwrap().insert(name);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

async fn acknowledged_actions_survive_kill_9_exactly_once(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (mut server, base) = start_logged(&db.url).await;
    let http = reqwest::Client::new();
    let mut lists = Vec::new();
    for client in 0..CLIENTS {
        let body: Value = http
            .post(format!("{base}/api"))
            .header("content-type", "application/json")
            .body(json!({ "query": format!(r#"mutation {{ createShoppingList(name: "list {client}") {{ id }} }}"#) }).to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        lists.push(body["data"]["createShoppingList"]["id"].as_i64().unwrap());
    }
    let clients = Clients {
        base: Arc::new(Mutex::new(base)),
        acknowledged: Arc::default(),
        sent: Arc::default(),
    };
    let stop = Arc::new(tokio::sync::Notify::new());
    let writers = {
        let clients = clients.clone();
        let (lists, stop) = (lists.clone(), stop.clone());
        tokio::spawn(async move { write_until(&clients, &lists, stop).await })
    };
    let mut kills = 0;
    while kills < KILLS {
        // Let some writes be acknowledged, then kill at a random moment.
        let before = clients.acknowledged.lock().unwrap().len();
        while clients.acknowledged.lock().unwrap().len() < before + 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(random(200))).await;
        server.start_kill().unwrap();
        server.wait().await.unwrap();
        kills += 1;
        clients.base.lock().unwrap().clear();
        let (restarted, base) = start_logged(&db.url).await;
        server = restarted;
        *clients.base.lock().unwrap() = base;
    }
    stop.notify_waiters();
    clients.base.lock().unwrap().clear();
    // `notify_waiters` reaches only those waiting: end the others as they next look.
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            stop.notify_waiters();
            if writers.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(writers.is_finished(), "the writers stopped");
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    assert_eq!(kills, KILLS);

    // What the database holds, read by a fresh runtime (a replay of every list).
    let runtime = Runtime::builder(&db.url)
        .migrations(MIGRATIONS)
        .build()
        .await
        .unwrap();
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for &list in &lists {
        let state = runtime.entity::<ShoppingList>(list).get().await.unwrap();
        for item in &state.items {
            *stored.entry(item.name.clone()).or_default() += 1;
        }
        let projected = read_model::items(&runtime, list).await.unwrap();
        assert_eq!(
            projected, state.items,
            "the read model of list {list} equals its events"
        );
    }
    let acknowledged = clients.acknowledged.lock().unwrap().clone();
    let sent = clients.sent.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= KILLS * 20,
        "{} acknowledged",
        acknowledged.len()
    );
    for name in &acknowledged {
        assert_eq!(
            stored.get(name),
            Some(&1),
            "acknowledged `{name}` stored exactly once"
        );
    }
    for (name, count) in &stored {
        assert_eq!(*count, 1, "`{name}` stored once at most");
        assert!(sent.contains(name), "`{name}` was sent");
    }
    runtime.shutdown().await;
}

/// The server binary at `info`, so that its first log line gives the address.
async fn start_logged(url: &str) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_example"))
        .args(["--port", "0", "--database-url", url])
        .env("RUST_LOG", "info,sqlx=warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the server starts");
    let mut log = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), log.next_line())
        .await
        .expect("a log line within a minute")
        .unwrap()
        .expect("one line");
    let address = first
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("the address in {first:?}"))
        .to_owned();
    // Keep reading, so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    (child, format!("http://{address}"))
}
