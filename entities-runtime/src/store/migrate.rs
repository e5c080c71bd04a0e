//! Schema migrations: the runtime's own (embedded from `migrations/`) and the application's.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{MigrateError, Migration as SqlxMigration, MigrationType, Migrator};

use super::Store;

/// One migration of the application's own tables (read models, say), in both dialects, so one
/// entity definition runs on both backends. Versions are the application's own: the runtime
/// tracks its migrations in a table of its own.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub postgres: &'static str,
    pub sqlite: &'static str,
}

/// The runtime's tables, embedded in the binary so a deployment needs no migration files.
const RUNTIME_POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "entities",
        include_str!("../../../migrations/postgres/0001_entities.sql"),
    ),
    (
        2,
        "entity snapshots",
        include_str!("../../../migrations/postgres/0002_entity_snapshots.sql"),
    ),
    (
        3,
        "payload versions and snapshot shapes",
        include_str!("../../../migrations/postgres/0003_shapes.sql"),
    ),
    (
        4,
        "idempotency keys",
        include_str!("../../../migrations/postgres/0004_idempotency_keys.sql"),
    ),
    (
        5,
        "event log order",
        include_str!("../../../migrations/postgres/0005_event_log.sql"),
    ),
    (
        6,
        "subscriptions",
        include_str!("../../../migrations/postgres/0006_subscriptions.sql"),
    ),
];
const RUNTIME_SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "entities",
        include_str!("../../../migrations/sqlite/0001_entities.sql"),
    ),
    (
        2,
        "entity snapshots",
        include_str!("../../../migrations/sqlite/0002_entity_snapshots.sql"),
    ),
    (
        3,
        "payload versions and snapshot shapes",
        include_str!("../../../migrations/sqlite/0003_shapes.sql"),
    ),
    (
        4,
        "idempotency keys",
        include_str!("../../../migrations/sqlite/0004_idempotency_keys.sql"),
    ),
    (
        5,
        "event log order",
        include_str!("../../../migrations/sqlite/0005_event_log.sql"),
    ),
    (
        6,
        "subscriptions",
        include_str!("../../../migrations/sqlite/0006_subscriptions.sql"),
    ),
];

fn migrator(migrations: impl Iterator<Item = (i64, &'static str, &'static str)>) -> Migrator {
    let migrations = migrations
        .map(|(version, description, sql)| {
            SqlxMigration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    // The runtime's and the application's migrations share the database but not a history.
    migrator.set_ignore_missing(true);
    migrator
}

pub(super) async fn run(store: &Store, user: &[Migration]) -> Result<(), MigrateError> {
    match store {
        Store::Postgres(pool) => {
            let mut runtime = migrator(RUNTIME_POSTGRES.iter().copied());
            runtime.create_schema("entities");
            runtime.dangerous_set_table_name("entities._migrations");
            runtime.run(pool).await?;
            migrator(user.iter().map(|m| (m.version, m.description, m.postgres)))
                .run(pool)
                .await
        }
        Store::Sqlite(pool) => {
            let mut runtime = migrator(RUNTIME_SQLITE.iter().copied());
            runtime.dangerous_set_table_name("_entities_migrations");
            runtime.run(pool).await?;
            migrator(user.iter().map(|m| (m.version, m.description, m.sqlite)))
                .run(pool)
                .await
        }
    }
}
