//! pgbench, the load generator that ships with PostgreSQL, as a reference beside the runtime and
//! the baseline (Postgres only): the baseline's per-action statements for an AddItem in one
//! transaction, sent one by one ("sequential") and as one pipeline (`\startpipeline`), and a
//! one-INSERT transaction, the commit ceiling of the server. It is a C client holding one
//! connection per client: what a program could reach without the runtime's group commit.

use std::path::{Path, PathBuf};

use tokio::process::Command;

/// The per-action statements of the baseline's AddItem, one round trip each: `BEGIN`, the version
/// bump, the action row (its id read back), the event row, the read-model row, `COMMIT`.
/// Payloads are JSON of the runtime's size for an AddItem.
const SEQUENTIAL: &str = r#"\set id random(:first, :last)
BEGIN;
UPDATE entities.entities SET version = version + 1, updated_at = now() WHERE id = :id RETURNING version AS v \gset
INSERT INTO entities.entity_actions (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id) VALUES (:id, 'shopping_list', :v, 'AddItem', '{"id": "8b1a9953-c461-4296-9d1a-7ef0b1a2c3d4", "name": "item 1", "quantity": 1}', 'anonymous', gen_random_uuid()::text, 'pgbench') RETURNING id AS action_id \gset
INSERT INTO entities.entity_events (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id) VALUES (:id, 'shopping_list', :v, 'ItemAdded', '{"id": "8b1a9953-c461-4296-9d1a-7ef0b1a2c3d4", "name": "item 1", "quantity": 1}', :action_id, 'anonymous', 'pgbench', 'pgbench');
INSERT INTO shopping_list_items (id, shopping_list_id, name, quantity, added_in_version) VALUES (gen_random_uuid()::text, :id, 'item 1', 1, :v);
COMMIT;
"#;

/// The same statements sent as one pipeline: one round trip for the whole transaction. What
/// was read back is read inside the statements instead (a pipeline cannot wait for a row).
const PIPELINED: &str = r#"\set id random(:first, :last)
\startpipeline
BEGIN;
UPDATE entities.entities SET version = version + 1, updated_at = now() WHERE id = :id;
INSERT INTO entities.entity_actions (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id) VALUES (:id, 'shopping_list', (SELECT version FROM entities.entities WHERE id = :id), 'AddItem', '{"id": "8b1a9953-c461-4296-9d1a-7ef0b1a2c3d4", "name": "item 1", "quantity": 1}', 'anonymous', gen_random_uuid()::text, 'pgbench');
INSERT INTO entities.entity_events (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id) VALUES (:id, 'shopping_list', (SELECT version FROM entities.entities WHERE id = :id), 'ItemAdded', '{"id": "8b1a9953-c461-4296-9d1a-7ef0b1a2c3d4", "name": "item 1", "quantity": 1}', currval('entities.entity_actions_id_seq'), 'anonymous', 'pgbench', 'pgbench');
INSERT INTO shopping_list_items (id, shopping_list_id, name, quantity, added_in_version) VALUES (gen_random_uuid()::text, :id, 'item 1', 1, (SELECT version FROM entities.entities WHERE id = :id));
COMMIT;
\endpipeline
"#;

/// W1's action by hand, one round trip per statement: a ChangeQuantity of item `:item` on list
/// `:first`.
const CHANGE_QUANTITY: &str = r#"BEGIN;
UPDATE entities.entities SET version = version + 1, updated_at = now() WHERE id = :first RETURNING version AS v \gset
INSERT INTO entities.entity_actions (entity_id, entity_type, entity_version, type, payload, created_by, request_id, correlation_id) VALUES (:first, 'shopping_list', :v, 'ChangeQuantity', '{"item_id": "8b1a9953-c461-4296-9d1a-7ef0b1a2c3d4", "quantity": 2}', 'anonymous', gen_random_uuid()::text, 'pgbench') RETURNING id AS action_id \gset
INSERT INTO entities.entity_events (entity_id, entity_type, entity_version, type, payload, action_id, created_by, request_id, correlation_id) VALUES (:first, 'shopping_list', :v, 'QuantityChanged', '{"item_id": "8b1a9953-c461-4296-9d1a-7ef0b1a2c3d4", "quantity": 2}', :action_id, 'anonymous', 'pgbench', 'pgbench');
UPDATE shopping_list_items SET quantity = quantity + 1 WHERE id = :item;
COMMIT;
"#;

/// One INSERT, committed on its own: the most commits a second the server makes.
const ONE_INSERT: &str = "INSERT INTO pgbench_ceiling DEFAULT VALUES;\n";
pub const CEILING_TABLE: &str = "CREATE TABLE IF NOT EXISTS pgbench_ceiling (id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// What pgbench measured at one client count, in transactions (actions) a second.
#[derive(Debug, Clone, Copy)]
pub struct PgbenchRates {
    pub sequential: f64,
    pub pipelined: f64,
    pub one_insert: f64,
}

/// The pgbench binary: `$PG_BINDIR/pgbench` (as `scripts/bench` sets it), else the newest
/// `/usr/lib/postgresql/*/bin/pgbench`, else `pgbench` on the `PATH`.
pub fn binary() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        let bin = Path::new(&dir).join("pgbench");
        if bin.exists() {
            return bin;
        }
    }
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin/pgbench"))
        .filter(|bin| bin.exists())
        .collect();
    installed.sort_by_key(|bin| {
        bin.components()
            .nth(4)
            .and_then(|version| version.as_os_str().to_str()?.parse::<u32>().ok())
    });
    installed.pop().unwrap_or_else(|| PathBuf::from("pgbench"))
}

/// Runs the three scripts against the database of `url`, whose entities are lists `first..=last`
/// (all of them, with no gaps) and which has [`CEILING_TABLE`]; `transactions` in all, spread
/// over `clients` connections.
pub async fn measure(
    url: &str,
    lists: (i64, i64),
    clients: usize,
    transactions: usize,
) -> PgbenchRates {
    let per_client = transactions.div_ceil(clients).max(1);
    let defines = [format!("first={}", lists.0), format!("last={}", lists.1)];
    PgbenchRates {
        sequential: pgbench(url, SEQUENTIAL, &defines, clients, per_client).await,
        pipelined: pgbench(url, PIPELINED, &defines, clients, per_client).await,
        one_insert: pgbench(url, ONE_INSERT, &defines, clients, per_client).await,
    }
}

/// W1's reference: `transactions` ChangeQuantitys of `item` on list `list`, from one client,
/// one statement at a time; transactions a second.
pub async fn change_quantity(url: &str, list: i64, item: &str, transactions: usize) -> f64 {
    let defines = [format!("first={list}"), format!("item={item}")];
    pgbench(url, CHANGE_QUANTITY, &defines, 1, transactions).await
}

/// One pgbench run of `script` with the variables `defines` (`name=value`); its rate in
/// transactions a second (connections excluded).
async fn pgbench(
    url: &str,
    script: &str,
    defines: &[String],
    clients: usize,
    per_client: usize,
) -> f64 {
    let file = std::env::temp_dir().join(format!("pgbench-{}.sql", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, script).expect("script written");
    let threads = clients.min(2).to_string();
    let (clients, per_client) = (clients.to_string(), per_client.to_string());
    let mut command = Command::new(binary());
    command
        .args(["--no-vacuum", "--protocol=prepared", "--client", &clients])
        .args(["--jobs", &threads, "--transactions", &per_client]);
    for define in defines {
        command.args(["--define", define]);
    }
    let output = command
        .arg("--file")
        .arg(&file)
        .arg(url)
        .output()
        .await
        .expect("pgbench runs");
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no tps in pgbench's report: {stdout}"))
}
