//! The server binary as a user runs it: one log line at start naming the address, the database
//! and GraphiQL; Ctrl-C (SIGINT) finishes, snapshots the live lists and exits cleanly.

use std::process::Stdio;
use std::time::Duration;

use entities_runtime::Runtime;
use entities_runtime::testing::TestDatabase;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_logs_where_it_listens_and_shuts_down_gracefully_on_ctrl_c() {
    let db = TestDatabase::sqlite();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_example"))
        .args(["--port", "0", "--database-url", &db.url])
        .env("RUST_LOG", "info")
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
    assert!(
        first.contains(&format!("with database {}", db.url)),
        "{first}"
    );
    let address = first
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the address in the log line")
        .to_owned();

    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("http://{address}/api"))
        .header("content-type", "application/json")
        .body(json!({ "query": r#"mutation { createShoppingList(name: "before ctrl-c") { id version } }"# }).to_string())
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("JSON");
    let id = created["data"]["createShoppingList"]["id"]
        .as_i64()
        .expect("an id");
    let page = client
        .get(format!("http://{address}/graphiql"))
        .send()
        .await
        .expect("GraphiQL");
    assert_eq!(page.status().as_u16(), 200);

    let pid = server.id().expect("running").to_string();
    let signalled = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(signalled.success());
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
    let (snapshot,): (Option<i64>,) = runtime
        .database()
        .query("SELECT (SELECT version FROM entity_snapshots WHERE entity_id = $1)")
        .bind(id)
        .fetch_one()
        .await
        .expect("the row");
    assert_eq!(snapshot, Some(1));
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
    ] {
        assert!(help.contains(flag), "{flag} in:\n{help}");
        assert!(help.contains(&format!("[env: {env}")), "{env} in:\n{help}");
        assert!(
            help.contains(&format!("[default: {default}]")),
            "{default} in:\n{help}"
        );
    }
}
