//! The database handle user code reads the read models with: one query shape on both
//! backends, on the pool, on one connection, or in a transaction of its own.

mod support;

use entities_runtime::sqlx;
use entities_runtime::testing::TestDatabase;
use entities_runtime::{Backend, Database};
use support::*;

on_both_backends!(
    rows_come_back_typed_on_both_backends,
    a_transaction_keeps_its_writes_only_when_committed,
    a_runtime_shares_its_pool_with_its_database,
);

async fn notes(backend: Backend) -> (TestDatabase, Database) {
    let db = TestDatabase::new(backend).await;
    let database = Database::connect(&db.url, 2).await.expect("connects");
    database
        .execute_script(
            "CREATE TABLE notes (id BIGINT PRIMARY KEY, text TEXT NOT NULL, stars INTEGER);
             INSERT INTO notes (id, text, stars) VALUES (1, 'one', 3), (2, 'two', NULL);",
        )
        .await
        .expect("set-up");
    (db, database)
}

async fn rows_come_back_typed_on_both_backends(backend: Backend) {
    let (_db, database) = notes(backend).await;
    assert_eq!(database.backend(), backend);
    let all: Vec<(i64, String, Option<i32>)> = database
        .query("SELECT id, text, stars FROM notes ORDER BY id")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(all, [(1, "one".into(), Some(3)), (2, "two".into(), None)]);
    let (text,): (String,) = database
        .query("SELECT text FROM notes WHERE id = $1")
        .bind(2_i64)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(text, "two");
    let missing: Option<(String,)> = database
        .query("SELECT text FROM notes WHERE id = $1")
        .bind(3_i64)
        .fetch_optional()
        .await
        .unwrap();
    assert_eq!(missing, None);
    let none = database
        .query("SELECT text FROM notes WHERE id = $1")
        .bind(3_i64)
        .fetch_one::<(String,)>()
        .await;
    assert!(matches!(none, Err(sqlx::Error::RowNotFound)), "{none:?}");
    // A row that does not decode into the type asked for is an error, not a panic.
    let wrong = database
        .query("SELECT text FROM notes WHERE id = 1")
        .fetch_one::<(i64,)>()
        .await;
    assert!(wrong.is_err(), "{wrong:?}");
    // Several statements on one connection.
    let mut conn = database.acquire().await.unwrap();
    let changed = conn
        .query("UPDATE notes SET stars = $1 WHERE stars IS NULL")
        .bind(1_i32)
        .execute()
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let (stars,): (i64,) = conn
        .query("SELECT CAST(SUM(stars) AS BIGINT) FROM notes")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(stars, 4);
    drop(conn);
    database.close().await;
}

async fn a_transaction_keeps_its_writes_only_when_committed(backend: Backend) {
    let (_db, database) = notes(backend).await;
    let count = async |database: &Database| {
        let (count,): (i64,) = database
            .query("SELECT COUNT(*) FROM notes")
            .fetch_one()
            .await
            .unwrap();
        count
    };
    let insert = "INSERT INTO notes (id, text) VALUES ($1, $2)";
    let mut rolled_back = database.begin().await.unwrap();
    rolled_back
        .query(insert)
        .bind(10_i64)
        .bind("no")
        .execute()
        .await
        .unwrap();
    rolled_back.rollback().await.unwrap();
    let mut dropped = database.begin().await.unwrap();
    dropped
        .query(insert)
        .bind(11_i64)
        .bind("no")
        .execute()
        .await
        .unwrap();
    drop(dropped);
    assert_eq!(count(&database).await, 2);
    let mut committed = database.begin().await.unwrap();
    committed
        .query(insert)
        .bind(12_i64)
        .bind("yes")
        .execute()
        .await
        .unwrap();
    let (seen,): (String,) = committed
        .query("SELECT text FROM notes WHERE id = 12")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(seen, "yes");
    committed.commit().await.unwrap();
    assert_eq!(count(&database).await, 3);
    // A failed statement is the caller's error; the pool goes on.
    let duplicate = database
        .query(insert)
        .bind(12_i64)
        .bind("again")
        .execute()
        .await;
    assert!(duplicate.is_err());
    assert_eq!(count(&database).await, 3);
    database.close().await;
}

async fn a_runtime_shares_its_pool_with_its_database(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let runtime = runtime(&db).await;
    let counter = new_counter(&runtime, "shared").await;
    assert_eq!(runtime.database().backend(), backend);
    let (name,): (String,) = runtime
        .database()
        .query("SELECT name FROM counters WHERE id = $1")
        .bind(counter.id)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(name, "shared");
    assert_eq!(
        (
            runtime.database().postgres().is_some(),
            runtime.database().sqlite().is_some()
        ),
        (backend == Backend::Postgres, backend == Backend::Sqlite)
    );
    let handle = runtime.database().clone();
    runtime.shutdown().await;
    // The runtime's own pool: closed with it.
    let closed = match backend {
        Backend::Postgres => handle.postgres().unwrap().is_closed(),
        Backend::Sqlite => handle.sqlite().unwrap().is_closed(),
    };
    assert!(closed, "the handle shares the runtime's pool");
}
