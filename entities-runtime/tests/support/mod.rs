//! What the behaviour tests share: a small entity with every kind of outcome, real databases,
//! and raw reads of what is stored.
#![allow(dead_code, reason = "each test file uses its own part of the support")]

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use entities_runtime::sqlx;
use entities_runtime::testing::TestDatabase;
use entities_runtime::{
    Action, Apply, Backend, Change, Context, Create, EntityId, EntityRef, Event, Events, Handle,
    Metrics, Migration, Project, Projected, Runtime, RuntimeBuilder, Tx, Version, entity,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

#[allow(unused_imports, reason = "not every test file runs on both backends")]
pub use entities_runtime::testing::on_both_backends;

#[entity(
    type = "counter",
    actions(Open, Add, AddTwice, Rename, Explode, Nothing, Note),
    events(Opened, Added, Renamed, Noted),
    error = CounterError,
    derive(PartialEq)
)]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub id: EntityId,
    pub version: Version,
    pub name: String,
    pub total: i64,
    pub adds: Vec<i64>,
    /// Added after snapshots of the counter were stored (`tests/migrations.rs` keeps one):
    /// defaulted, so those still decode.
    #[serde(default)]
    pub notes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    #[error("amounts must be positive, not {0}")]
    NotPositive(i64),
    #[error("the name must not be blank")]
    BlankName,
    #[error("the counter is named `{0}` already")]
    SameName(String),
}

#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct Open {
    pub name: String,
}
#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct Add {
    pub amount: i64,
}
/// Two events from one action.
#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct AddTwice {
    pub amount: i64,
}
/// Renaming to `PANIC_IN_PROJECTION` makes the projection panic.
#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct Rename {
    pub name: String,
}
/// The handler panics.
#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct Explode;
/// Decides no events.
#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct Nothing;
/// Decides an event that no projection writes.
#[derive(Debug, Clone, PartialEq, Action, Serialize, Deserialize)]
pub struct Note;

#[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
pub struct Opened {
    pub name: String,
}
#[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
pub struct Added {
    pub amount: i64,
}
/// At payload version 2: version 1 called the name `new_name`.
#[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
#[event(version = 2, upcast(1 = RenamedV1))]
pub struct Renamed {
    pub name: String,
}
#[derive(Deserialize)]
pub struct RenamedV1 {
    pub new_name: String,
}
impl From<RenamedV1> for Renamed {
    fn from(old: RenamedV1) -> Self {
        Self { name: old.new_name }
    }
}
/// Without an `impl Project`: the read model does not see it.
#[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
pub struct Noted;

pub const PANIC_IN_PROJECTION: &str = "panic in projection";
/// Renaming to `SWALLOWED_FAILURE` makes the projection run a failing statement and go on as
/// if it had not failed (a bug in user code).
pub const SWALLOWED_FAILURE: &str = "swallowed failure";
/// Renaming to `FAILS_AT_COMMIT` makes the projection write a row that breaks a deferred
/// foreign key: every statement succeeds, and the transaction's `COMMIT` fails.
pub const FAILS_AT_COMMIT: &str = "fails at commit";
/// A counter created with this name is created by a `Nothing` action: it records no events.
pub const CREATE_NOTHING: &str = "create nothing";
/// `Create::create` itself refuses a counter of this name (before any handler runs).
pub const REFUSED_BY_CREATE: &str = "refused by create";
/// Adding `PANIC_IN_APPLY` makes `apply` of its event panic.
pub const PANIC_IN_APPLY: i64 = 666_666;
/// An add of this amount panics when projected together with others (`project_all`), not alone.
pub const PANIC_WHEN_TOGETHER: i64 = 777_777;

impl Create for Counter {
    type Args = String;
    fn create(_ctx: &Context, _id: EntityId, name: String) -> Result<CounterAction, CounterError> {
        if name == CREATE_NOTHING {
            return Ok(Nothing.into());
        }
        if name == REFUSED_BY_CREATE {
            return Err(CounterError::SameName(name));
        }
        Ok(Open { name }.into())
    }
}

impl Handle<Open> for Counter {
    fn handle(&self, _ctx: &Context, action: &Open) -> Events<Self> {
        if action.name.trim().is_empty() {
            return Err(CounterError::BlankName);
        }
        Ok(vec![
            Opened {
                name: action.name.clone(),
            }
            .into(),
        ])
    }
}
impl Handle<Add> for Counter {
    fn handle(&self, _ctx: &Context, action: &Add) -> Events<Self> {
        if action.amount <= 0 {
            return Err(CounterError::NotPositive(action.amount));
        }
        Ok(vec![
            Added {
                amount: action.amount,
            }
            .into(),
        ])
    }
}
impl Handle<AddTwice> for Counter {
    fn handle(&self, _ctx: &Context, action: &AddTwice) -> Events<Self> {
        if action.amount <= 0 {
            return Err(CounterError::NotPositive(action.amount));
        }
        Ok(vec![
            Added {
                amount: action.amount,
            }
            .into(),
            Added {
                amount: action.amount,
            }
            .into(),
        ])
    }
}
impl Handle<Rename> for Counter {
    fn handle(&self, _ctx: &Context, action: &Rename) -> Events<Self> {
        if action.name.trim().is_empty() {
            return Err(CounterError::BlankName);
        }
        if action.name == self.name {
            return Err(CounterError::SameName(self.name.clone()));
        }
        Ok(vec![
            Renamed {
                name: action.name.clone(),
            }
            .into(),
        ])
    }
}
impl Handle<Explode> for Counter {
    fn handle(&self, _ctx: &Context, _action: &Explode) -> Events<Self> {
        panic!("the handler blew up")
    }
}
impl Handle<Note> for Counter {
    fn handle(&self, ctx: &Context, _action: &Note) -> Events<Self> {
        assert!(
            ctx.request_id().is_some(),
            "a call's context has a request id"
        );
        Ok(vec![Noted.into()])
    }
}
impl Handle<Nothing> for Counter {
    fn handle(&self, _ctx: &Context, _action: &Nothing) -> Events<Self> {
        Ok(vec![])
    }
}

impl Apply<Opened> for Counter {
    fn apply(&mut self, event: &Opened) {
        self.name = event.name.clone();
    }
}
impl Apply<Added> for Counter {
    fn apply(&mut self, event: &Added) {
        assert_ne!(event.amount, PANIC_IN_APPLY, "apply blew up");
        self.total += event.amount;
        self.adds.push(event.amount);
    }
}
impl Apply<Noted> for Counter {
    fn apply(&mut self, _event: &Noted) {
        self.notes += 1;
    }
}
impl Apply<Renamed> for Counter {
    fn apply(&mut self, event: &Renamed) {
        self.name = event.name.clone();
    }
}

impl Project<Opened> for Counter {
    async fn project(tx: &mut Tx<'_>, change: Change<'_, Self, Opened>) -> Projected<Self> {
        let Change { event, after, .. } = change;
        tx.query("INSERT INTO counters (id, name, total, version) VALUES ($1, $2, 0, $3)")
            .bind(after.id)
            .bind(&event.name)
            .bind(after.version)
            .execute()
            .await?;
        if let Some(gate) = Gate::named(&event.name) {
            gate.await;
        }
        Ok(())
    }
}
impl Project<Added> for Counter {
    async fn project(tx: &mut Tx<'_>, change: Change<'_, Self, Added>) -> Projected<Self> {
        let Change {
            before,
            event,
            after,
            ..
        } = change;
        // Checks that the projection sees the states on either side of its own event.
        assert_eq!(before.total + event.amount, after.total);
        assert_eq!(before.version + 1, after.version);
        tx.query("UPDATE counters SET total = total + $2, version = $3 WHERE id = $1")
            .bind(after.id)
            .bind(event.amount)
            .bind(after.version)
            .execute()
            .await?;
        Ok(())
    }
    /// Neighbouring adds in one statement (one counter may be added to more than once): what
    /// the runtime hands it is recorded in [`ADDS_PROJECTED_TOGETHER`].
    async fn project_all(tx: &mut Tx<'_>, changes: &[Change<'_, Self, Added>]) -> Projected<Self> {
        if let Some(first) = changes.first() {
            ADDS_PROJECTED_TOGETHER.lock().unwrap().push((
                first.ctx.user_id().to_owned(),
                changes.iter().map(|change| change.after.id).collect(),
            ));
        }
        for Change {
            before,
            event,
            after,
            ..
        } in changes
        {
            assert_eq!(before.total + event.amount, after.total);
            assert_eq!(before.version + 1, after.version);
        }
        if changes.len() > 1
            && changes
                .iter()
                .any(|change| change.event.amount == PANIC_WHEN_TOGETHER)
        {
            panic!("the projection of adds together blew up");
        }
        let adds: Vec<_> = changes
            .iter()
            .map(|Change { event, after, .. }| {
                serde_json::json!({ "id": after.id, "amount": event.amount, "version": after.version })
            })
            .collect();
        let sql = match tx.backend() {
            Backend::Postgres => {
                "UPDATE counters SET total = counters.total + added.amount, version = added.version \
                 FROM (SELECT id, sum(amount)::BIGINT AS amount, max(version) AS version \
                       FROM jsonb_to_recordset($1::jsonb) AS add(id BIGINT, amount BIGINT, version BIGINT) \
                       GROUP BY id) AS added \
                 WHERE counters.id = added.id"
            }
            Backend::Sqlite => {
                "UPDATE counters SET total = counters.total + added.amount, version = added.version \
                 FROM (SELECT value ->> 'id' AS id, sum(value ->> 'amount') AS amount, \
                              max(value ->> 'version') AS version \
                       FROM json_each($1) GROUP BY 1) AS added \
                 WHERE counters.id = added.id"
            }
        };
        tx.query(sql)
            .bind(serde_json::Value::Array(adds).to_string())
            .execute()
            .await?;
        Ok(())
    }
}

/// Each run of adds the runtime projected together, in order: the user of its first call (so
/// that a test finds its own among those of tests running beside it), and the counters.
pub static ADDS_PROJECTED_TOGETHER: Mutex<Vec<(String, Vec<EntityId>)>> = Mutex::new(Vec::new());
impl Project<Renamed> for Counter {
    async fn project(tx: &mut Tx<'_>, change: Change<'_, Self, Renamed>) -> Projected<Self> {
        let Change { event, after, .. } = change;
        tx.query("UPDATE counters SET name = $2, version = $3 WHERE id = $1")
            .bind(after.id)
            .bind(&event.name)
            .bind(after.version)
            .execute()
            .await?;
        if event.name == PANIC_IN_PROJECTION {
            panic!("the projection blew up after writing");
        }
        if event.name == SWALLOWED_FAILURE {
            let _ignored = tx
                .query("INSERT INTO counters (id, name, total, version) VALUES (NULL, NULL, 0, 0)")
                .execute()
                .await;
        }
        if event.name == FAILS_AT_COMMIT {
            tx.query("INSERT INTO counter_notes (counter_id) VALUES ($1)")
                .bind(-after.id)
                .execute()
                .await?;
        }
        if let Some(gate) = Gate::named(&event.name) {
            gate.await;
        }
        Ok(())
    }
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "counters read model",
        postgres: "CREATE TABLE counters (id BIGINT PRIMARY KEY, name TEXT NOT NULL CONSTRAINT counters_name_key UNIQUE, \
                   total BIGINT NOT NULL, version BIGINT NOT NULL)",
        sqlite: "CREATE TABLE counters (id INTEGER PRIMARY KEY, name TEXT NOT NULL CONSTRAINT counters_name_key UNIQUE, \
                 total INTEGER NOT NULL, version INTEGER NOT NULL)",
    },
    // Checked at COMMIT only: a row that breaks it fails the commit, not its statement.
    Migration {
        version: 2,
        description: "notes on counters, checked at commit",
        postgres: "CREATE TABLE counter_notes (counter_id BIGINT NOT NULL REFERENCES counters (id) \
                   DEFERRABLE INITIALLY DEFERRED)",
        sqlite: "CREATE TABLE counter_notes (counter_id INTEGER NOT NULL REFERENCES counters (id) \
                 DEFERRABLE INITIALLY DEFERRED)",
    },
];

/// A runtime on `db` with the counters read model, configured by `configure`.
pub async fn runtime_with(
    db: &TestDatabase,
    configure: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder,
) -> Runtime {
    runtime_at(&db.url, configure).await
}

/// [`runtime_with`] on the database at `url`: a test database through a `CommitCutter`, say.
pub async fn runtime_at(
    url: &str,
    configure: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder,
) -> Runtime {
    configure(Runtime::builder(url).migrations(MIGRATIONS))
        .build()
        .await
        .expect("runtime starts")
}

pub async fn runtime(db: &TestDatabase) -> Runtime {
    runtime_with(db, |builder| builder).await
}

pub fn ctx() -> Context {
    Context::new("tester")
}

pub async fn new_counter(runtime: &Runtime, name: &str) -> Arc<Counter> {
    runtime
        .create::<Counter>(&ctx(), name.to_owned())
        .await
        .expect("counter created")
}

/// Runs raw statements, written for both backends (the runtime's tables are in schema
/// `entities` on Postgres: write `{entities}` where a table name needs it).
pub async fn exec(runtime: &Runtime, sql: &str) {
    let sql = qualify(runtime, sql);
    runtime
        .database()
        .execute_script(sqlx::AssertSqlSafe(sql))
        .await
        .expect("raw statement runs");
}

/// One `i64` from a raw query, written as for [`exec`]; `None` for NULL or no row.
pub async fn scalar(runtime: &Runtime, sql: &str) -> Option<i64> {
    let sql = qualify(runtime, sql);
    let row: Option<(Option<i64>,)> = runtime
        .database()
        .query(sqlx::AssertSqlSafe(sql))
        .fetch_optional()
        .await
        .expect("raw query runs");
    row.and_then(|(value,)| value)
}

/// Polls [`scalar`] until its value passes `expected` (for what the runtime writes in the
/// background, such as periodic snapshots) and returns it; panics after 10 seconds.
pub async fn scalar_eventually(
    runtime: &Runtime,
    sql: &str,
    expected: impl Fn(Option<i64>) -> bool,
) -> Option<i64> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let value = scalar(runtime, sql).await;
        if expected(value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`{sql}` is still {value:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// `sql` with `{entities}` made the runtime's schema (`entities.` on Postgres).
pub fn qualify(runtime: &Runtime, sql: &str) -> String {
    let schema = match runtime.backend() {
        Backend::Postgres => "entities.",
        Backend::Sqlite => "",
    };
    sql.replace("{entities}", schema)
}

/// The version of the snapshot stored for entity `id`, if there is one.
pub async fn snapshot_version(runtime: &Runtime, id: EntityId) -> Option<i64> {
    scalar(
        runtime,
        &format!(
            "SELECT (SELECT version FROM {{entities}}entity_snapshots WHERE entity_id = {id})"
        ),
    )
    .await
}

/// The read-model row of a counter: (name, total, version).
pub async fn read_model(runtime: &Runtime, id: EntityId) -> Option<(String, i64, i64)> {
    runtime
        .database()
        .query("SELECT name, total, version FROM counters WHERE id = $1")
        .bind(id)
        .fetch_optional()
        .await
        .expect("read model query")
}

/// Everything stored about a counter: its row's version, its event versions, its action count
/// and its read-model row. Equal before and after a failed call.
#[derive(Debug, PartialEq)]
pub struct Stored {
    pub version: Option<i64>,
    pub event_versions: Vec<i64>,
    pub actions: Option<i64>,
    pub read_model: Option<(String, i64, i64)>,
}

/// What a failed call must leave as it was: the counter's state in memory and all it stored.
pub async fn memory_and_database(
    runtime: &Runtime,
    counter: &EntityRef<Counter>,
) -> (Arc<Counter>, Stored) {
    (
        counter.get().await.unwrap(),
        stored(runtime, counter.id()).await,
    )
}

pub async fn stored(runtime: &Runtime, id: EntityId) -> Stored {
    Stored {
        version: scalar(
            runtime,
            &format!("SELECT version FROM {{entities}}entities WHERE id = {id}"),
        )
        .await,
        event_versions: runtime
            .history::<Counter>(id)
            .await
            .expect("history")
            .iter()
            .map(|event| event.version)
            .collect(),
        actions: scalar(
            runtime,
            &format!("SELECT count(*) FROM {{entities}}entity_actions WHERE entity_id = {id}"),
        )
        .await,
        read_model: read_model(runtime, id).await,
    }
}

/// The counter as a runtime that never saw it would load it.
pub async fn cold_load(db: &TestDatabase, id: EntityId) -> Counter {
    let fresh = runtime_with(db, |builder| builder.migrate(false)).await;
    let state = fresh.entity::<Counter>(id).get().await.expect("cold load");
    fresh.shutdown().await;
    (*state).clone()
}

/// Where a projection waits until the test opens it. A projection of `Opened` or `Renamed`
/// whose name is a gate's stops there, inside its transaction, so a test knows the transaction
/// is open (and, with one committer, that the committer is busy) instead of guessing how long a
/// sleep takes. Dropping the gate opens it, so a failing test never leaves a projection waiting.
pub struct Gate {
    name: String,
    reached: Arc<Notify>,
    open: watch::Sender<bool>,
}

#[derive(Clone)]
struct GateState {
    reached: Arc<Notify>,
    open: watch::Receiver<bool>,
}

static GATES: LazyLock<Mutex<HashMap<String, GateState>>> = LazyLock::new(Default::default);

impl Gate {
    pub fn new() -> Self {
        let name = format!("gate {}", uuid::Uuid::new_v4().simple());
        let (open, opened) = watch::channel(false);
        let reached = Arc::new(Notify::new());
        GATES.lock().unwrap().insert(
            name.clone(),
            GateState {
                reached: reached.clone(),
                open: opened,
            },
        );
        Self {
            name,
            reached,
            open,
        }
    }

    /// Rename a counter to this to make its projection stop at the gate.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until a projection stops at the gate; panics after 10 s.
    pub async fn reached(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.reached.notified())
            .await
            .expect("no projection reached the gate in 10 s");
    }

    /// Lets every projection waiting at the gate, and any that comes later, go on.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// The projection's side: a future that resolves once the gate named `name` is open, or
    /// `None` when no gate has that name.
    fn named(name: &str) -> Option<impl Future<Output = ()> + use<>> {
        let state = GATES.lock().unwrap().get(name).cloned()?;
        Some(async move {
            state.reached.notify_one();
            let mut open = state.open;
            let _ = open.wait_for(|open| *open).await;
        })
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
        GATES.lock().unwrap().remove(&self.name);
    }
}

/// Waits until `condition` holds of the runtime's metrics and returns them; panics after 10 s.
/// A condition, not a duration: the test goes on as soon as the runtime got there.
pub async fn metrics_until(
    runtime: &Runtime,
    what: &str,
    condition: impl Fn(&Metrics) -> bool,
) -> Metrics {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = runtime.metrics();
        if condition(&metrics) {
            return metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 10 s for {what}: {metrics:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Holds a runtime of one committer busy: a rename of a new counter stops at `gate` inside its
/// transaction. Returns once it is there; the rename's task ends when the gate opens.
pub async fn hold_the_committer(runtime: &Runtime, gate: &Gate) -> tokio::task::JoinHandle<()> {
    let blocker = runtime.entity::<Counter>(
        new_counter(runtime, &format!("blocker of {}", gate.name()))
            .await
            .id,
    );
    let name = gate.name().to_owned();
    let handle = tokio::spawn(async move {
        blocker
            .send_action(&ctx(), Rename { name })
            .await
            .expect("the rename held at the gate commits");
    });
    gate.reached().await;
    handle
}

/// Another connection, whose transaction keeps the runtime from writing snapshots while it is
/// held: on Postgres it locks the snapshot table, on SQLite it holds the database's one write
/// lock (so the runtime's snapshot waits out its busy timeout). Connected up front, so that
/// holding takes one statement.
pub enum SnapshotBlocker {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl SnapshotBlocker {
    pub async fn connect(db: &TestDatabase) -> Self {
        use sqlx::Connection;
        match db.backend {
            Backend::Postgres => {
                Self::Postgres(sqlx::PgConnection::connect(&db.url).await.unwrap())
            }
            Backend::Sqlite => {
                Self::Sqlite(sqlx::SqliteConnection::connect(&db.url).await.unwrap())
            }
        }
    }

    pub async fn hold(&mut self) {
        self.run(
            "BEGIN; LOCK TABLE entities.entity_snapshots IN EXCLUSIVE MODE",
            "BEGIN IMMEDIATE",
        )
        .await;
    }

    pub async fn release(&mut self) {
        self.run("ROLLBACK", "ROLLBACK").await;
    }

    async fn run(&mut self, postgres: &'static str, sqlite: &'static str) {
        match self {
            Self::Postgres(conn) => sqlx::raw_sql(postgres).execute(conn).await.map(drop),
            Self::Sqlite(conn) => sqlx::raw_sql(sqlite).execute(conn).await.map(drop),
        }
        .unwrap();
    }
}
