//! GraphiQL in a real browser: headless Chromium opens /graphiql, runs a `createShoppingList`
//! mutation through the page, and the page shows the result. The screenshot is kept as a test
//! artifact (`$TEST_ARTIFACTS/graphiql.png`).
//!
//! Needs Node.js, Chromium (`/usr/bin/chromium`, or `$CHROMIUM`) and the script's npm packages
//! (`npm ci --prefix example/tests/browser`; `scripts/test` runs it). Without them this test
//! fails: it never skips.

mod support;

use std::path::PathBuf;

use entities_runtime::Backend;
use serde_json::json;
use support::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_a_mutation_and_shows_the_result() {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        here.join("node_modules/playwright-core").is_dir(),
        "the browser script's packages are missing: run `npm ci --prefix example/tests/browser`"
    );
    let artifacts = std::env::var_os("TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts")
        });
    std::fs::create_dir_all(&artifacts).expect("artifacts directory");
    let screenshot = artifacts.join("graphiql.png");
    let _ = std::fs::remove_file(&screenshot);

    let server = Server::start(Backend::Sqlite).await;
    let name = format!("browser list {}", std::process::id());
    let output = tokio::process::Command::new("node")
        .arg(here.join("graphiql.mjs"))
        .arg(&server.base)
        .arg(&name)
        .arg(&screenshot)
        .output()
        .await
        .expect("node runs (install Node.js)");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "the page did not show the result\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains(&name) && stdout.contains("\"version\": 1"),
        "the result pane showed: {stdout}"
    );
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|file| file.len() > 10_000),
        "a screenshot at {}",
        screenshot.display()
    );

    // The mutation went through the page to the database.
    let (_, lists) = server
        .graphql("{ shoppingLists { name version } }", &[])
        .await;
    assert_eq!(
        lists["data"]["shoppingLists"],
        json!([{ "name": name, "version": 1 }])
    );
}
