//! What the behaviour tests share: a small entity with every kind of outcome, real databases,
//! and raw reads of what is stored.
#![allow(dead_code, reason = "each test file uses its own part of the support")]

use std::sync::Arc;

use entities_runtime::sqlx;
use entities_runtime::testing::TestDatabase;
use entities_runtime::{
    Action, Apply, Backend, Context, Create, EntityId, Event, Handle, Migration, Project,
    ProjectionError, Runtime, RuntimeBuilder, Tx, Version, entity,
};
use serde::{Deserialize, Serialize};

/// Runs each named `async fn(Backend)` once on SQLite and once on Postgres, as `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(entities_runtime::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(entities_runtime::Backend::Postgres).await
            }
        }
    )*};
}

#[entity(
    type = "counter",
    actions(Open, Add, AddTwice, Rename, Explode, Nothing),
    events(Opened, Added, Renamed),
    project(Opened, Added, Renamed),
    error = CounterError
)]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub id: EntityId,
    pub version: Version,
    pub name: String,
    pub total: i64,
    pub adds: Vec<i64>,
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

#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct Open {
    pub name: String,
}
#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct Add {
    pub amount: i64,
}
/// Two events from one action.
#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct AddTwice {
    pub amount: i64,
}
/// Renaming to `PANIC_IN_PROJECTION` makes the projection panic.
#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct Rename {
    pub name: String,
}
/// The handler panics.
#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct Explode;
/// Decides no events.
#[derive(Debug, Clone, Action, Serialize, Deserialize)]
pub struct Nothing;

#[derive(Debug, Clone, Event, Serialize, Deserialize)]
pub struct Opened {
    pub name: String,
}
#[derive(Debug, Clone, Event, Serialize, Deserialize)]
pub struct Added {
    pub amount: i64,
}
#[derive(Debug, Clone, Event, Serialize, Deserialize)]
pub struct Renamed {
    pub name: String,
}

pub const PANIC_IN_PROJECTION: &str = "panic in projection";
/// Renaming to `SWALLOWED_FAILURE` makes the projection run a failing statement and go on as
/// if it had not failed (a bug in user code).
pub const SWALLOWED_FAILURE: &str = "swallowed failure";
/// Renaming to `SLOW_PROJECTION` holds the transaction open for `SLOW_PROJECTION_TIME`.
pub const SLOW_PROJECTION: &str = "slow projection";
pub const SLOW_PROJECTION_TIME: std::time::Duration = std::time::Duration::from_millis(800);

impl Create for Counter {
    type Args = String;
    fn create(_ctx: &Context, _id: EntityId, name: String) -> Result<CounterAction, CounterError> {
        Ok(Open { name }.into())
    }
}

impl Handle<Open> for Counter {
    fn handle(&self, _ctx: &Context, action: &Open) -> Result<Vec<CounterEvent>, CounterError> {
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
    fn handle(&self, _ctx: &Context, action: &Add) -> Result<Vec<CounterEvent>, CounterError> {
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
    fn handle(&self, _ctx: &Context, action: &AddTwice) -> Result<Vec<CounterEvent>, CounterError> {
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
    fn handle(&self, _ctx: &Context, action: &Rename) -> Result<Vec<CounterEvent>, CounterError> {
        if action.name.trim().is_empty() {
            return Err(CounterError::BlankName);
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
    fn handle(&self, _ctx: &Context, _action: &Explode) -> Result<Vec<CounterEvent>, CounterError> {
        panic!("the handler blew up")
    }
}
impl Handle<Nothing> for Counter {
    fn handle(&self, _ctx: &Context, _action: &Nothing) -> Result<Vec<CounterEvent>, CounterError> {
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
        self.total += event.amount;
        self.adds.push(event.amount);
    }
}
impl Apply<Renamed> for Counter {
    fn apply(&mut self, event: &Renamed) {
        self.name = event.name.clone();
    }
}

impl Project<Opened> for Counter {
    async fn project(
        tx: &mut Tx<'_>,
        _ctx: &Context,
        _before: &Self,
        event: &Opened,
        after: &Self,
    ) -> Result<(), ProjectionError<CounterError>> {
        tx.query("INSERT INTO counters (id, name, total, version) VALUES ($1, $2, 0, $3)")
            .bind(after.id)
            .bind(&event.name)
            .bind(after.version)
            .execute()
            .await?;
        Ok(())
    }
}
impl Project<Added> for Counter {
    async fn project(
        tx: &mut Tx<'_>,
        _ctx: &Context,
        before: &Self,
        event: &Added,
        after: &Self,
    ) -> Result<(), ProjectionError<CounterError>> {
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
}
impl Project<Renamed> for Counter {
    async fn project(
        tx: &mut Tx<'_>,
        _ctx: &Context,
        _before: &Self,
        event: &Renamed,
        after: &Self,
    ) -> Result<(), ProjectionError<CounterError>> {
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
        if event.name == SLOW_PROJECTION {
            tokio::time::sleep(SLOW_PROJECTION_TIME).await;
        }
        Ok(())
    }
}

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "counters read model",
    postgres: "CREATE TABLE counters (id BIGINT PRIMARY KEY, name TEXT NOT NULL CONSTRAINT counters_name_key UNIQUE, \
               total BIGINT NOT NULL, version BIGINT NOT NULL)",
    sqlite: "CREATE TABLE counters (id INTEGER PRIMARY KEY, name TEXT NOT NULL CONSTRAINT counters_name_key UNIQUE, \
             total INTEGER NOT NULL, version INTEGER NOT NULL)",
}];

/// A runtime on `db` with the counters read model, configured by `configure`.
pub async fn runtime_with(
    db: &TestDatabase,
    configure: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder,
) -> Runtime {
    configure(Runtime::builder(&db.url).migrations(MIGRATIONS))
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

/// Runs one raw statement, written for both backends (the runtime's tables are in schema
/// `entities` on Postgres: write `{entities}` where a table name needs it).
pub async fn exec(runtime: &Runtime, sql: &str) {
    let sql = qualify(runtime, sql);
    let result = match runtime.backend() {
        Backend::Postgres => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(runtime.postgres_pool().expect("postgres"))
            .await
            .map(|_| ()),
        Backend::Sqlite => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(runtime.sqlite_pool().expect("sqlite"))
            .await
            .map(|_| ()),
    };
    result.expect("raw statement runs");
}

/// One `i64` (or NULL) from a raw query, written as for [`exec`].
pub async fn scalar(runtime: &Runtime, sql: &str) -> Option<i64> {
    let sql = qualify(runtime, sql);
    match runtime.backend() {
        Backend::Postgres => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(runtime.postgres_pool().expect("postgres"))
            .await
            .expect("raw query runs"),
        Backend::Sqlite => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(runtime.sqlite_pool().expect("sqlite"))
            .await
            .expect("raw query runs"),
    }
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

fn qualify(runtime: &Runtime, sql: &str) -> String {
    let schema = match runtime.backend() {
        Backend::Postgres => "entities.",
        Backend::Sqlite => "",
    };
    sql.replace("{entities}", schema)
}

/// The read-model row of a counter: (name, total, version).
pub async fn read_model(runtime: &Runtime, id: EntityId) -> Option<(String, i64, i64)> {
    let sql = "SELECT name, total, version FROM counters WHERE id = $1";
    match runtime.backend() {
        Backend::Postgres => sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(runtime.postgres_pool().expect("postgres"))
            .await
            .expect("read model query"),
        Backend::Sqlite => sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(runtime.sqlite_pool().expect("sqlite"))
            .await
            .expect("read model query"),
    }
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
