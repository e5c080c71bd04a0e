//! GraphiQL in a real browser: headless Chromium opens /graphiql, loads the schema, runs a
//! `createShoppingList` mutation through the page, and the page shows the result. The screenshot
//! is kept as a test artifact: `$TEST_ARTIFACTS/graphiql.png`, else
//! `target/test-artifacts/graphiql.png`.
//!
//! Needs Node.js and Chromium (`/usr/bin/chromium`, or `$CHROMIUM`): `apt-get install chromium
//! nodejs npm`. The script's npm package (playwright-core, pinned by its lock file) is installed
//! with `npm ci` when missing. Without any of them this test fails: it never skips.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use entities_runtime::Backend;
use serde_json::json;
use support::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_a_mutation_and_a_subscription_and_shows_their_results() {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.is_file(),
        "no Chromium at {}: install it (`apt-get install chromium`) or set CHROMIUM",
        chromium.display()
    );
    let script_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    install_packages(&script_dir).await;
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
    let run = tokio::process::Command::new("node")
        .arg(script_dir.join("graphiql.mjs"))
        .arg(&server.base)
        .arg(&name)
        .arg(&screenshot)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser script finishes within 2 minutes")
        .expect("node runs (install Node.js: `apt-get install nodejs`)");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "the page did not show the result (screenshot: {})\nstdout: {stdout}\nstderr: {stderr}",
        screenshot.display()
    );
    assert!(
        stdout.contains(&format!("\"name\": \"{name}\"")) && stdout.contains("\"version\": 1"),
        "the result pane showed: {stdout}"
    );
    assert!(
        stdout.contains("\"shoppingListChanged\"") && stdout.contains(&format!("{name} renamed")),
        "the subscription's pane showed: {stdout}"
    );
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|file| file.len() > 10_000),
        "a screenshot at {}",
        screenshot.display()
    );

    // The mutation went through the page to the database, as the anonymous user.
    let (_, lists) = server
        .graphql("{ shoppingLists { id name version } }", &[])
        .await;
    let stored = lists["data"]["shoppingLists"][0]["name"].as_str().unwrap();
    assert!(stored.starts_with(&format!("{name} renamed")), "{stored}");
    let id = lists["data"]["shoppingLists"][0]["id"].as_i64().unwrap();
    let (_, history) = server
        .graphql(
            &format!("{{ shoppingListHistory(id: {id}) {{ createdBy }} }}"),
            &[],
        )
        .await;
    assert_eq!(
        history["data"]["shoppingListHistory"][0],
        json!({ "createdBy": "anonymous" })
    );
}

/// `npm ci` in the script's directory unless playwright-core is there already (`.ci/run`
/// installs it beforehand).
async fn install_packages(dir: &Path) {
    if dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return;
    }
    let status = tokio::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(300), status)
        .await
        .expect("npm ci finishes within 5 minutes")
        .expect("npm runs (install it: `apt-get install npm`)");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}
