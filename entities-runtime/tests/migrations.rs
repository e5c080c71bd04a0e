//! Upgrades: a database the runtime's first schema made (snapshots in the `entities` row) keeps
//! its snapshots when a newer runtime migrates it (snapshots in `entity_snapshots`).

mod support;

use std::borrow::Cow;

use entities_runtime::sqlx::migrate::{Migration, MigrationType, Migrator};
use entities_runtime::sqlx::{self, SqlSafeStr};
use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Database, Runtime};
use support::*;

on_both_backends!(snapshots_survive_the_move_to_their_own_table);

/// The state stored as the snapshot at version 3. No events are stored, so a load that does
/// not start from this snapshot fails: the entity row says version 3.
const SNAPSHOT: &str =
    r#"{"id": 1, "version": 3, "name": "upgraded", "total": 6, "adds": [1, 2, 3]}"#;

async fn snapshots_survive_the_move_to_their_own_table(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (sql, schema) = match backend {
        Backend::Postgres => (
            include_str!("../../migrations/postgres/0001_entities.sql"),
            "entities.",
        ),
        Backend::Sqlite => (
            include_str!("../../migrations/sqlite/0001_entities.sql"),
            "",
        ),
    };
    // What the first runtime did: migration 1, recorded in the runtime's own history table.
    let mut first = Migrator::with_migrations(vec![Migration::new(
        1,
        Cow::Borrowed("entities"),
        MigrationType::Simple,
        sql.into_sql_str(),
        false,
    )]);
    first.set_ignore_missing(true);
    let insert = format!(
        "INSERT INTO {schema}entities (id, type, version, snapshot, snapshot_version) \
         VALUES (1, 'counter', 3, '{SNAPSHOT}', 3)"
    );
    let database = Database::connect(&db.url, 1).await.unwrap();
    match backend {
        Backend::Postgres => {
            first.create_schema("entities");
            first.dangerous_set_table_name("entities._migrations");
            first.run(database.postgres().unwrap()).await
        }
        Backend::Sqlite => {
            first.dangerous_set_table_name("_entities_migrations");
            first.run(database.sqlite().unwrap()).await
        }
    }
    .expect("migration 1");
    database
        .execute_script(sqlx::AssertSqlSafe(insert))
        .await
        .unwrap();
    database.close().await;

    let runtime = Runtime::builder(&db.url)
        .migrations(MIGRATIONS)
        .build()
        .await
        .expect("the runtime migrates the old schema");
    assert_eq!(
        scalar(
            &runtime,
            "SELECT (SELECT version FROM {entities}entity_snapshots WHERE entity_id = 1)"
        )
        .await,
        Some(3)
    );
    let loaded = runtime.entity::<Counter>(1).get().await.expect("loads");
    assert_eq!(
        (loaded.name.as_str(), loaded.total, loaded.version),
        ("upgraded", 6, 3)
    );
    runtime.shutdown().await;
}
